// The ONNX frontend: a .onnx file (ModelProto) becomes a Graph. Inputs and outputs keep
// their ONNX names; dynamic dimensions are bound by the caller (`--shape name=1x3x224x224`)
// or taken from the model's static dims; float initializers become parameters of the plan
// (trainable unless frozen); everything computable at compile time is folded.
import { readFileSync } from 'node:fs';
import { CompileError } from '../../ir/errors';
import { Graph, type Tensor } from '../../ir/graph';
import type { DType } from '../../ir/types';
import type { HostDType } from '../../../schemas/manifest';
import { narrowToI32, NodeContext, roundTo, type ImportState } from './context';
import { CONVERTERS } from './converters';
import { BFLOAT16, BOOL, dataTypeName, decodeModel, DOUBLE, FLOAT16, isFloatType, isIntegerType, tensorValues, type GraphProto, type ModelProto, type NodeProto, type TensorProto, type TensorValue, type ValueInfoProto } from './proto';
import { computed, FoldLimitError, folded, Scope, type Folded, type Value } from './values';
import { parameterName } from '../parameter-names';

// opsets 13–21 are the target; older models (back to opset 1) import where each op's converter
// implements the op as the model's opset defines it (Converter.since: a node older than that
// is refused by name), up to RMSNormalization's opset 23
export const OPSETS = { min: 1, max: 23 } as const;

export interface OnnxLoadOptions {
  /** static shapes for inputs, by ONNX input name (binds dynamic dimensions) */
  shapes?: Readonly<Record<string, readonly number[]>>;
  /** parameters are not trainable */
  freeze?: boolean;
  /**
   * initializers (by ONNX name) that stay fixed while the others train: e.g. BatchNormalization's
   * running mean and variance, which PyTorch keeps as buffers, not parameters
   */
  frozen?: readonly string[];
  /** inputs given their values at compile time (they fold like initializers and leave the plan's inputs) */
  constants?: Readonly<Record<string, { dataType: number; shape: readonly number[]; data: Float64Array }>>;
}

export interface OnnxValueInfo {
  name: string;
  /** the ONNX data type (TensorProto.DataType) */
  dataType: number;
}

export interface LoadedOnnxModel {
  graph: Graph;
  name: string;
  opset: number;
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  /** the plan's parameter name of each float initializer, by ONNX name (they differ where a name had to be made safe or unique) */
  parameterNames: ReadonlyMap<string, string>;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_.\-/]*$/;

export const SUPPORTED_OPS = Object.keys(CONVERTERS).sort();

/** Reads and imports a model file; every failure is a CompileError naming the file. */
export function loadOnnxModel(file: string, options: OnnxLoadOptions = {}): LoadedOnnxModel {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new CompileError('io', `cannot read model file '${file}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String(e)}`);
  }
  return importOnnxModel(decodeModel(bytes, file), file, options);
}

export function importOnnxModel(model: ModelProto, file: string, options: OnnxLoadOptions = {}): LoadedOnnxModel {
  const fail = (message: string, kind: 'model' | 'input' = 'model'): never => {
    throw new CompileError(kind, `${file}: ${message}`);
  };
  const graphProto = model.graph ?? fail('the model has no graph');
  const opset = defaultOpset(model, file);
  const name = graphProto.name || 'model';
  const g = new Graph(name, { locate: () => undefined });

  const values = new Scope();
  const materialized = new WeakMap<Folded, Tensor>();
  const readTensor = (t: TensorProto, what: string) => tensorValues(t, file, what);
  const parameterNames = new Set<string>();
  const parameterNameOf = new Map<string, string>();
  const frozen = new Set(options.frozen ?? []);
  const initializerNames = new Set((graphProto.initializer ?? []).map((t) => t.name ?? ''));
  for (const n of frozen) if (!initializerNames.has(n)) fail(`the initializer '${n}' to keep frozen is not in the model`, 'input');

  // float initializers (float16, bfloat16 and double too, as f32) are parameters; integer
  // ones (shapes, indices) fold
  for (const init of graphProto.initializer ?? []) {
    const initName = init.name ?? '';
    const v = readTensor(init, `initializer '${initName}'`);
    if (isFloatType(v.dataType) && v.shape.every((d) => d > 0)) {
      const paramName = parameterName(initName, parameterNames);
      parameterNameOf.set(initName, paramName);
      const t = g.parameter(paramName, v.shape, { init: Float32Array.from(v.data), trainable: !options.freeze && !frozen.has(initName) });
      values.set(initName, computed(v.dataType, t));
    } else {
      values.set(initName, folded(v.dataType, v.shape, v.data, initName));
    }
  }

  const inputs: OnnxValueInfo[] = [];
  for (const info of graphProto.input ?? []) {
    const inputName = info.name ?? '';
    if (values.has(inputName)) continue; // an initializer listed as an input (IR version < 4)
    const given = options.constants?.[inputName];
    if (given) {
      values.set(inputName, folded(given.dataType, given.shape, given.data));
      continue;
    }
    const dataType = info.type?.tensorType?.elemType ?? 0;
    if (!IDENTIFIER.test(inputName)) fail(`input name '${inputName}' is not usable as a plan input name (letters, digits, _ . - /, not starting with a digit)`);
    const shape = inputShape(info, options.shapes?.[inputName], file);
    // an empty input is known: it folds like a constant and leaves the plan's inputs
    if (shape.some((d) => d === 0)) {
      values.set(inputName, folded(dataType, shape, new Float64Array(0)));
      continue;
    }
    const t = g.input(inputName, shape, irDtype(dataType, `input '${inputName}'`, file), { hostDtype: HOST_DTYPES[dataType] });
    values.set(inputName, computed(dataType, t));
    inputs.push({ name: inputName, dataType });
  }
  const inputNames = (graphProto.input ?? []).map((i) => i.name ?? '').filter((n) => !(graphProto.initializer ?? []).some((t) => t.name === n));
  for (const bound of Object.keys(options.shapes ?? {})) {
    if (!inputNames.includes(bound)) fail(`--shape names '${bound}', which is not an input of the model (inputs: ${inputNames.join(', ') || 'none'})`, 'input');
  }

  const imports: ImportState = { uses: nameUses(graphProto), frozenConvs: new WeakMap() };
  convertNodes(graphProto.node ?? [], values, { g, opset, file, readTensor, materialized, imports, subgraphInitializers: new WeakMap() });

  const outputs: OnnxValueInfo[] = [];
  for (const info of graphProto.output ?? []) {
    const outName = info.name ?? '';
    const v = values.get(outName) ?? fail(`output '${outName}' is not produced by any node`);
    if (!IDENTIFIER.test(outName)) fail(`output name '${outName}' is not usable as a plan output name (letters, digits, _ . - /, not starting with a digit)`);
    const dataType = info.type?.tensorType?.elemType || v.dataType;
    // a float16 or bfloat16 output holds the format's values: computed in f32, rounded here
    const narrow = dataType === FLOAT16 ? 'f16' : dataType === BFLOAT16 ? 'bf16' : undefined;
    let t: Tensor;
    if (v.kind === 'computed') t = narrow && v.tensor.dtype === 'f32' ? g.roundFloat(v.tensor, narrow) : v.tensor;
    else {
      t = g.constant(isIntegerType(v.dataType) ? narrowToI32(v, `${file}: output '${outName}'`) : Float32Array.from(v.data, (x) => roundTo(x, narrow)), v.shape);
    }
    g.output(outName, t, t.dtype === 'f32' ? { hostDtype: HOST_DTYPES[dataType] } : {});
    outputs.push({ name: outName, dataType });
  }
  if (outputs.length === 0) fail('the graph has no outputs');
  return { graph: g, name, opset, inputs, outputs, parameterNames: parameterNameOf };
}

/** What converting nodes needs beyond their scope: the graph recorded into, the model's opset and file. */
interface ImportEnvironment {
  g: Graph;
  opset: number;
  file: string;
  readTensor: (t: TensorProto, what: string) => TensorValue;
  materialized: WeakMap<Folded, Tensor>;
  imports: ImportState;
  /** a subgraph's initializers, read once however many times the subgraph is run */
  subgraphInitializers: WeakMap<TensorProto, Folded>;
}

/** How many nodes (in subgraphs too: they read enclosing names) and graph outputs read each name. */
function nameUses(graph: GraphProto, uses = new Map<string, number>()): Map<string, number> {
  const count = (name: string | undefined) => name && uses.set(name, (uses.get(name) ?? 0) + 1);
  for (const node of graph.node ?? []) {
    (node.input ?? []).forEach(count);
    for (const a of node.attribute ?? []) if (a.g) nameUses(a.g, uses);
  }
  (graph.output ?? []).forEach((o) => count(o.name));
  return uses;
}

/** Converts nodes in order, each output defined in `scope`; every failure names the node. */
function convertNodes(nodes: readonly NodeProto[], scope: Scope, env: ImportEnvironment): void {
  const { file, opset } = env;
  const fail = (message: string): never => {
    throw new CompileError('model', `${file}: ${message}`);
  };
  for (const node of nodes) {
    const opType = node.opType ?? '';
    const label = `node '${node.name || node.output?.[0] || '?'}' (${opType}, opset ${opset})`;
    if (node.domain && node.domain !== 'ai.onnx') fail(`${label}: domain '${node.domain}' is not supported; only the default ONNX domain`);
    const converter =
      (Object.hasOwn(CONVERTERS, opType) ? CONVERTERS[opType] : undefined) ?? fail(`${label}: op type ${opType} is not supported by the ONNX frontend; supported: ${SUPPORTED_OPS.join(', ')}`);
    if (opset < converter.since) fail(`${label}: the ONNX frontend implements ${opType} as opset ${converter.since} and later define it; the model imports opset ${opset}`);
    const operands = (node.input ?? []).map((n) => {
      if (!n) return undefined;
      return scope.get(n) ?? fail(`${label}: input '${n}' is not produced by any earlier node, initializer or graph input`);
    });
    const runSubgraph = (body: GraphProto, inputs: readonly Value[]) => runGraph(body, inputs, scope, env, label);
    const ctx = new NodeContext(env.g, node, opset, file, operands, env.readTensor, env.materialized, runSubgraph, env.imports);
    let results: (Value | undefined)[];
    try {
      results = converter.convert(ctx);
    } catch (e) {
      if (e instanceof FoldLimitError) fail(`${label}: ${e.message}`);
      // the builder's own refusals (a leaf's shape, a name) without this node's context
      if (e instanceof CompileError && !e.message.startsWith(file)) throw new CompileError(e.kind, `${file}: ${label}: ${e.message}`, undefined, opType);
      throw e;
    }
    (node.output ?? []).forEach((out, i) => {
      if (!out) return;
      const v = results[i];
      scope.set(out, v ?? fail(`${label}: output ${i + 1} ('${out}') is not produced by this importer`));
    });
  }
}

/**
 * A subgraph (a Loop's body) run once on `inputs`: its formal inputs bound in a scope inside
 * the node's (so it reads outer names), its initializers folded, its nodes converted; its
 * outputs' values.
 */
function runGraph(body: GraphProto, inputs: readonly Value[], outer: Scope, env: ImportEnvironment, label: string): Value[] {
  const fail = (message: string): never => {
    throw new CompileError('model', `${env.file}: ${label}: ${message}`);
  };
  const formal = body.input ?? [];
  if (formal.length !== inputs.length) fail(`the subgraph '${body.name ?? ''}' takes ${formal.length} inputs; it is given ${inputs.length}`);
  const scope = new Scope(outer);
  formal.forEach((info, i) => scope.set(info.name ?? '', inputs[i]));
  for (const init of body.initializer ?? []) {
    let v = env.subgraphInitializers.get(init);
    if (!v) {
      const t = env.readTensor(init, `initializer '${init.name ?? ''}' of the subgraph '${body.name ?? ''}'`);
      v = folded(t.dataType, t.shape, t.data, init.name);
      env.subgraphInitializers.set(init, v);
    }
    scope.set(init.name ?? '', v);
  }
  convertNodes(body.node ?? [], scope, env);
  return (body.output ?? []).map((o) => scope.get(o.name ?? '') ?? fail(`the subgraph's output '${o.name ?? ''}' is not produced by any of its nodes`));
}

function defaultOpset(model: ModelProto, file: string): number {
  const entry = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  const version = Number(entry?.version ?? 0);
  if (version < OPSETS.min || version > OPSETS.max) {
    throw new CompileError('model', `${file}: the model imports opset ${version || 'none'} of the default ONNX domain; the ONNX frontend supports opsets ${OPSETS.min}–${OPSETS.max}`);
  }
  return version;
}

function inputShape(info: ValueInfoProto, bound: readonly number[] | undefined, file: string): number[] {
  const dims = info.type?.tensorType?.shape?.dim ?? [];
  const name = info.name ?? '';
  if (bound) {
    if (bound.length !== dims.length && info.type?.tensorType?.shape) {
      throw new CompileError('input', `${file}: --shape ${name}=${bound.join('x')} has rank ${bound.length}; the model's input has rank ${dims.length}`);
    }
    dims.forEach((d, i) => {
      if (d.dimValue !== undefined && Number(d.dimValue) !== bound[i]) {
        throw new CompileError('input', `${file}: --shape ${name}=${bound.join('x')} gives axis ${i} size ${bound[i]}; the model fixes it at ${d.dimValue}`);
      }
    });
    return [...bound];
  }
  return dims.map((d, i) => {
    if (d.dimValue !== undefined && Number(d.dimValue) >= 0) return Number(d.dimValue);
    const what = d.dimParam ? `'${d.dimParam}'` : 'unknown';
    throw new CompileError(
      'input',
      `${file}: input '${name}' has a dynamic dimension ${what} at axis ${i}; give its shape with --shape ${name}=${dims.map((e) => (e.dimValue ? e.dimValue : 'N')).join('x')}`,
    );
  });
}

/**
 * The plan's dtype for an input of ONNX type `dataType`: the float types and bool (0/1) are
 * f32, every integer type i32 (int64 and uint32/uint64 values outside int32's range are
 * refused by the runtime; narrower types are not wrapped to their own range after arithmetic).
 */
function irDtype(dataType: number, what: string, file: string): DType {
  if (isFloatType(dataType) || dataType === BOOL) return 'f32';
  if (isIntegerType(dataType)) return 'i32';
  throw new CompileError('model', `${file}: ${what} has data type ${dataTypeName(dataType)}; plan inputs carry float, float16, bfloat16 and double (as float32), bool (as 0/1 float32) and the integer types (as int32)`);
}

/** The element type callers exchange for an ONNX float type the plan computes as f32. */
const HOST_DTYPES: Partial<Record<number, HostDType>> = { [DOUBLE]: 'f64', [FLOAT16]: 'f16', [BFLOAT16]: 'bf16' };


