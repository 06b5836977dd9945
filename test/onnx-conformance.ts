// ONNX's own node tests (Debian's libonnx-testdata: a model.onnx and input/output
// TensorProtos per case) run through the ONNX frontend and the CPU reference interpreter.
// A case belongs to the op of its model's single node; an `_expanded` case (the op written
// out as its function body) belongs to its base case's op. Every case of a supported op is
// run and reported: passed, or failed with the reason (a CompileError's message, or the
// first element that differs).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isCompileError } from '../compiler/ir/errors';
import { interpret, materializeParameters } from '../compiler/ir/interpret';
import { BFLOAT16, decodeModel, decodeTensor, DOUBLE, FLOAT16, isIntegerType, tensorValues, type ModelProto, type TensorValue } from '../compiler/frontends/onnx/proto';
import { bf16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../runtime/f16';
import type { TensorData } from '../runtime/session';
import { importOnnxModel, SUPPORTED_OPS, type LoadedOnnxModel } from '../compiler/frontends/onnx/load';

const UINT16 = 4;

export const NODE_TESTS = '/usr/share/libonnx-testdata/data/node';

// ONNX's backend tests compare with rtol 1e-3, atol 1e-7: float, double (computed in f32:
// inputs rounded to f32, so results carry f32's error, far inside it) and float16 (one f16
// ulp is 2^-10 relative: the plan rounds f32 results to f16, so they equal the reference or
// are one ulp off where the f32 and f16 computations round apart). bfloat16: one ulp, 2^-7.
const ONNX_TOLERANCE = { rtol: 1e-3, atol: 1e-7 };
const BFLOAT16_TOLERANCE = { rtol: 2 ** -7, atol: 1e-7 };
const toleranceOf = (dataType: number) => (dataType === BFLOAT16 ? BFLOAT16_TOLERANCE : ONNX_TOLERANCE);

/**
 * The test data stores bfloat16 tensors as uint16 bit patterns (numpy has no bfloat16): a
 * value the model declares bfloat16 is read as those bits' values.
 */
function asDeclared(v: TensorValue, declared: number | undefined): TensorValue {
  return declared === BFLOAT16 && v.dataType === UINT16 ? { ...v, dataType: BFLOAT16, data: v.data.map(bf16BitsToF32) } : v;
}

/** An input as a caller of the runtime gives it: Float64Array for double, the bit patterns for float16 and bfloat16. */
function hostArray(v: TensorValue): TensorData {
  if (v.dataType === DOUBLE) return Float64Array.from(v.data);
  if (v.dataType === FLOAT16) return Uint16Array.from(v.data, f32ToF16Bits);
  if (v.dataType === BFLOAT16) return Uint16Array.from(v.data, f32ToBf16Bits);
  return Float32Array.from(v.data);
}

export interface CaseResult {
  name: string;
  op: string;
  passed: boolean;
  /** why it failed */
  reason?: string;
  /** its integer inputs were given at compile time (they give shapes, axes or indices the op needs known) */
  boundInputs?: boolean;
}

function singleOp(model: ModelProto): string | undefined {
  const nodes = model.graph?.node ?? [];
  return nodes.length === 1 ? nodes[0].opType : undefined;
}

/** The cases of supported ops, by name, with their op. */
export function conformanceCases(root = NODE_TESTS): { name: string; op: string }[] {
  if (!existsSync(root)) return [];
  const names = readdirSync(root).sort();
  const opOf = new Map<string, string | undefined>();
  for (const name of names) {
    const file = join(root, name, 'model.onnx');
    if (!existsSync(file) || name.endsWith('_expanded')) continue;
    try {
      opOf.set(name, singleOp(decodeModel(readFileSync(file), file)));
    } catch {
      opOf.set(name, undefined);
    }
  }
  const supported = new Set(SUPPORTED_OPS);
  const cases: { name: string; op: string }[] = [];
  for (const name of names) {
    const op = opOf.get(name.replace(/_expanded$/, ''));
    if (op && supported.has(op) && existsSync(join(root, name, 'model.onnx'))) cases.push({ name, op });
  }
  return cases;
}

/** A case imported and its data read, ready to run on the CPU reference or a plan. */
export interface PreparedCase {
  graph: LoadedOnnxModel['graph'];
  outputs: LoadedOnnxModel['outputs'];
  /** the plan's inputs, typed as the plan takes them (f32, or i32 for integer inputs) */
  inputs: Record<string, Float32Array | Int32Array>;
  /** the same inputs as a runtime caller gives them (Float64Array for double, Uint16Array bit patterns for float16 and bfloat16) */
  hostInputs: Record<string, TensorData>;
  expected: TensorValue[];
  boundInputs: boolean;
}

/** Imports a case and reads its data, or the failure that stopped it. */
export function prepareCase(name: string, op: string, root = NODE_TESTS): PreparedCase | CaseResult {
  const dir = join(root, name);
  const file = join(dir, 'model.onnx');
  let boundInputs = false;
  try {
    const model = decodeModel(readFileSync(file), file);
    const data = join(dir, 'test_data_set_0');
    const read = (f: string) => tensorValues(decodeTensor(readFileSync(join(data, f)), f), join(data, f), f);
    const initializers = new Set((model.graph?.initializer ?? []).map((t) => t.name));
    const infos = (model.graph?.input ?? []).filter((i) => !initializers.has(i.name));
    const notTensor = infos.find((i) => !i.type?.tensorType);
    if (notTensor) return { name, op, passed: false, reason: `input '${notTensor.name}' is not a tensor (sequence, optional and map types are not supported)` };
    const given = infos.map((info, i) => ({ name: info.name ?? '', value: asDeclared(read(`input_${i}.pb`), info.type?.tensorType?.elemType) }));
    // dynamic dimensions bound from the case's data, as --shape binds them
    const shapesOf = (gs: typeof given) => Object.fromEntries(gs.map((g) => [g.name, g.value.shape]));
    let loaded: LoadedOnnxModel;
    const needsKnown = (e: unknown) => isCompileError(e) && /must be known at compile time|dimensions must be positive/.test(e.message);
    try {
      loaded = importOnnxModel(model, `${name}/model.onnx`, { shapes: shapesOf(given) });
    } catch (e) {
      if (!needsKnown(e)) throw e;
      // a static compiler needs shapes, axes and scalars known: the case's integer and scalar inputs given at compile time
      const bound = new Set(given.filter((g) => (isIntegerType(g.value.dataType) || g.value.shape.length === 0) && !(g.value.dataType === 1 && g.value.shape.length > 0)).map((g) => g.name));
      const node = model.graph!.node![0];
      for (;;) {
        const constants = Object.fromEntries(given.filter((g) => bound.has(g.name)).map((g) => [g.name, g.value]));
        try {
          loaded = importOnnxModel(model, `${name}/model.onnx`, { shapes: shapesOf(given.filter((g) => !bound.has(g.name))), constants });
          break;
        } catch (again) {
          // a float input the node needs known (Resize's scales): the one the error names, given too
          const k = Number(/input (\d+) \([^)]*\) must be known at compile time/.exec(isCompileError(again) ? again.message : '')?.[1]);
          const wanted = node.input?.[k - 1];
          if (!needsKnown(again) || !wanted || bound.has(wanted) || !given.some((g) => g.name === wanted)) throw again;
          bound.add(wanted);
        }
      }
      boundInputs = true;
    }
    const inputs: Record<string, Float32Array | Int32Array> = {};
    const hostInputs: Record<string, TensorData> = {};
    for (const g of given) {
      const node = loaded.graph.nodes.find((n) => n.op === 'input' && n.name === g.name);
      if (!node) continue;
      inputs[g.name] = node.type.dtype === 'i32' ? Int32Array.from(g.value.data) : Float32Array.from(g.value.data);
      hostInputs[g.name] = node.type.dtype === 'i32' ? inputs[g.name] : hostArray(g.value);
    }
    const expected = loaded.outputs.map((o, i) => asDeclared(read(`output_${i}.pb`), o.dataType));
    return { graph: loaded.graph, outputs: loaded.outputs, inputs, hostInputs, expected, boundInputs };
  } catch (e) {
    return { name, op, passed: false, boundInputs, reason: describeError(e) };
  }
}

function describeError(e: unknown): string {
  return isCompileError(e) ? e.message.replace(/^[^:]*model\.onnx: /, '') : `crash: ${e instanceof Error ? e.stack : String(e)}`;
}

/** Compares computed outputs with the case's, at each dtype's tolerance (above); `widen` widens it (f32 kernels on the GPU). */
export function checkOutputs(name: string, op: string, c: PreparedCase, got: Record<string, ArrayLike<number>>, widen = { rtol: 0, atol: 0 }): CaseResult {
  for (const [i, info] of c.outputs.entries()) {
    const expected = c.expected[i];
    const actual = got[info.name];
    const own = toleranceOf(expected.dataType);
    const tolerance = { rtol: Math.max(own.rtol, widen.rtol), atol: Math.max(own.atol, widen.atol) };
    if (actual.length !== expected.data.length) return { name, op, passed: false, boundInputs: c.boundInputs, reason: `output '${info.name}' has ${actual.length} elements; expected ${expected.data.length}` };
    const exact = isIntegerType(expected.dataType) || expected.dataType === 9;
    for (let k = 0; k < actual.length; k++) {
      const [a, e] = [actual[k], expected.data[k]];
      const ok = Number.isNaN(e) ? Number.isNaN(a) : exact ? a === e : a === e || Math.abs(a - e) <= tolerance.atol + tolerance.rtol * Math.abs(e);
      if (!ok) return { name, op, passed: false, boundInputs: c.boundInputs, reason: `output '${info.name}'[${k}] = ${a}; expected ${e}` };
    }
  }
  return { name, op, passed: true, boundInputs: c.boundInputs };
}

/** A case on the CPU reference interpreter. */
export function runCase(name: string, op: string, root = NODE_TESTS): CaseResult {
  const c = prepareCase(name, op, root);
  if ('passed' in c) return c;
  try {
    return checkOutputs(name, op, c, interpret(c.graph, c.inputs, materializeParameters(c.graph, 0)));
  } catch (e) {
    return { name, op, passed: false, boundInputs: c.boundInputs, reason: describeError(e) };
  }
}

/** Pass counts per op, in op order. */
export function summarize(results: readonly CaseResult[]): { op: string; passed: number; total: number }[] {
  const byOp = new Map<string, { passed: number; total: number }>();
  for (const r of results) {
    const s = byOp.get(r.op) ?? { passed: 0, total: 0 };
    s.total++;
    if (r.passed) s.passed++;
    byOp.set(r.op, s);
  }
  return [...byOp.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([op, s]) => ({ op, ...s }));
}
