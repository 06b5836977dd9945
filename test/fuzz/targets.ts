// The readers under fuzz, each with its seed corpus: the .mnplan bundle reader (followed by
// everything `mnc inspect` does with an accepted plan), the runtime's safetensors reader, the
// ONNX frontend (decoding and importing a model), the NNEF frontend (graph.nnef's text, and
// .dat tensor files) and the GGUF reader (with the dequantizers and the metadata → config mapping).
// A new reader (ONNX, NNEF, GGUF) joins with a FuzzTarget here and a line in bench/fuzz.ts.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describePlan, kernelSources } from '../../compiler/cli/inspect';
import { compileGraph } from '../../compiler/compile';
import { Graph } from '../../compiler/ir/graph';
import { GENERIC, NVIDIA_HOPPER } from '../../compiler/target/targets';
import { readBundle, type PlanBundle } from '../../runtime/bundle';
import { isPlanError } from '../../runtime/errors';
import { decodeSafetensors, encodeSafetensors } from '../../runtime/safetensors';
import { checkMemoryBudget } from '../../runtime/memory-budget';
import { targetManifest, targetsOf } from '../../runtime/targets';
import { MNPLAN_HEADER_BYTES, type Manifest } from '../../schemas/manifest';
import { decodeModel } from '../../compiler/frontends/onnx/proto';
import { importOnnxModel } from '../../compiler/frontends/onnx/load';
import { isCompileError } from '../../compiler/ir/errors';
import { importNnefModel } from '../../compiler/frontends/nnef/load';
import { PROTOTYPES, UNSUPPORTED_STANDARD_OPS } from '../../compiler/frontends/nnef/operations';
import { decodeTensorFile, TensorFileError } from '../../compiler/frontends/nnef/tensor-file';
import { cornerTensors, onnxToNnef } from '../../fixtures/nnef/models';
import { blockModel, cnnModel, encodeModel, mlpModel } from '../../fixtures/onnx/models';
import onnxDescriptor from '../../compiler/frontends/onnx/onnx-proto.json';
import protobuf from 'protobufjs';
import { handPlan, reassemble } from '../hand-plan';
import type { FuzzTarget } from './fuzz';
import { INHERITED_NAMES, stringifyJson, type JsonMutator, type Mutated } from './mutate';
import { parseGguf, type GgufFile, type GgufValue } from '../../runtime/gguf';
import { dequantize, isSupportedType } from '../../runtime/ggml-types';
import { ggufModelConfig } from '../../compiler/frontends/gguf/config';
import { blocksGguf, tinyLlamaGguf } from '../../fixtures/gguf/models';
import { encodeGguf, type GgufWriterTensor } from '../gguf-writer';

const planErrorKind = (error: unknown) => (isPlanError(error) ? error.kind : '?');

// ---------------------------------------------------------------------------------------
// .mnplan

/** A small training plan for two targets: arenas, training, optimization and otherTargets all present. */
async function compiledSeed(): Promise<Uint8Array> {
  const g = new Graph('fuzz-seed');
  const x = g.input('x', [4, 6]);
  const labels = g.input('labels', [4], 'i32');
  const h = g.relu(g.biasAdd(g.matmul(x, g.parameter('w1', [6, 8])), g.parameter('b1', [8])));
  const logits = g.biasAdd(g.matmul(h, g.parameter('w2', [8, 3])), g.parameter('b2', [3]));
  g.output('logits', logits);
  g.output('loss', g.crossEntropy(logits, labels));
  const plan = await compileGraph(g, { seed: 1, targets: [GENERIC, NVIDIA_HOPPER], training: { loss: 'loss', optimizer: { kind: 'adam', lr: 0.01 } }, validationThreads: 1 });
  return plan.bundle;
}

/** The manifest and data area of a bundle whose header is sound enough to find them. */
function splitBundle(bytes: Uint8Array): { manifest: unknown; data: Uint8Array } | undefined {
  if (bytes.length < MNPLAN_HEADER_BYTES) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, MNPLAN_HEADER_BYTES);
  const length = view.getUint32(16, true);
  const dataOffset = view.getUint32(20, true);
  if (MNPLAN_HEADER_BYTES + length > bytes.length || dataOffset > bytes.length) return undefined;
  try {
    return { manifest: JSON.parse(new TextDecoder().decode(bytes.subarray(MNPLAN_HEADER_BYTES, MNPLAN_HEADER_BYTES + length))), data: bytes.subarray(dataOffset) };
  } catch {
    return undefined;
  }
}

/** Writes a bundle around a (mutated) manifest and a data area, with every checksum the reader checks made right. */
function joinBundle(seed: Uint8Array, manifest: unknown, data: Uint8Array): Uint8Array {
  const sections = (manifest as { sections?: unknown })?.sections;
  if (Array.isArray(sections)) {
    for (const s of sections as { offset?: unknown; length?: unknown; sha256?: unknown }[]) {
      if (typeof s !== 'object' || s === null) continue;
      const { offset, length } = s;
      if (Number.isSafeInteger(offset) && Number.isSafeInteger(length) && (offset as number) >= 0 && (length as number) >= 0 && (offset as number) + (length as number) <= data.length) {
        s.sha256 = createHash('sha256').update(data.subarray(offset as number, (offset as number) + (length as number))).digest('hex');
      }
    }
  }
  return reassemble(seed, new TextEncoder().encode(stringifyJson(manifest)), data);
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
/** The manifest's target plans (top level and otherTargets) as mutable JSON. */
const plansOf = (m: Json): Json[] => [m, ...(Array.isArray(m.otherTargets) ? m.otherTargets : [])].filter((p) => typeof p === 'object' && p !== null);

/** Mutations aimed at the plan's own checks: overlapping sections, huge buffers, inherited names, binding indexes. */
function planMutators(dataLength: () => number): Record<string, JsonMutator> {
  return {
    'overlapping sections'(root, rng) {
      const m = root as Json;
      if (!Array.isArray(m.sections)) return 'no sections';
      const copies = 1 + rng.int(rng.chance(0.5) ? 8 : 400);
      for (let i = 0; i < copies; i++) m.sections.push({ name: `overlap${i}`, offset: 0, length: dataLength(), sha256: '' });
      return `${copies} sections covering the whole data area`;
    },
    'huge buffer'(root, rng) {
      const plan = rng.pick(plansOf(root as Json));
      const size = rng.pick([2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53 - 1]);
      if (plan.arenas?.byteLengths?.length && rng.chance(0.5)) {
        const i = rng.int(plan.arenas.byteLengths.length);
        plan.arenas.byteLengths[i] = size;
        return `arena ${i} of ${plan.name ?? 'top'} = ${size} bytes`;
      }
      if (!Array.isArray(plan.buffers) || plan.buffers.length === 0) return 'no buffers';
      const b = rng.pick(plan.buffers as Json[]);
      b.byteLength = size;
      if (rng.chance(0.5) && plan.requiredLimits) plan.requiredLimits.maxStorageBufferBindingSize = size;
      return `buffer ${b.id} = ${size} bytes`;
    },
    'top-level field'(root, rng) {
      const plan = rng.pick(plansOf(root as Json));
      const keys = Object.keys(plan);
      if (keys.length === 0) return 'no fields';
      const key = rng.pick(keys);
      plan[key] = rng.pick([null, 'x', 7, -1, [], {}, [1], ['x'], [{}], { x: {} }]);
      return `${key} = ${JSON.stringify(plan[key])}`;
    },
    'inherited entry'(root, rng) {
      const plan = rng.pick(plansOf(root as Json));
      if (!plan.training) return 'no training';
      plan.training.entry = rng.pick(INHERITED_NAMES);
      return `training.entry = "${plan.training.entry}"`;
    },
    'binding index'(root, rng) {
      const m = root as Json;
      if (!Array.isArray(m.kernels) || m.kernels.length === 0) return 'no kernels';
      const k = rng.pick(m.kernels as Json[]);
      if (!Array.isArray(k.bindings) || k.bindings.length === 0) return 'no bindings';
      const value = rng.pick([2 ** 40, 2 ** 32, 2 ** 31, 1000, 65536]);
      rng.pick(k.bindings as Json[]).binding = value;
      return `a binding of kernel ${k.name} = ${value}`;
    },
  };
}

const paddedSize = (n: number) => Math.max(4, Math.ceil(n / 4) * 4);

/** An accepted plan's promise: no buffer or arena exceeds its target's own requiredLimits. */
function checkPlanSizes(manifest: Manifest): string | undefined {
  for (const plan of targetsOf(manifest)) {
    const { maxBufferSize, maxStorageBufferBindingSize } = plan.requiredLimits;
    for (const b of plan.buffers) {
      if (b.byteLength > maxStorageBufferBindingSize) return `buffer larger than its requiredLimits: ${plan.name} buffer ${b.id} is ${b.byteLength} bytes, maxStorageBufferBindingSize ${maxStorageBufferBindingSize}`;
      if (maxBufferSize !== undefined && !b.arena && paddedSize(b.byteLength) > maxBufferSize) return `buffer larger than its requiredLimits: ${plan.name} buffer ${b.id} is ${b.byteLength} bytes, maxBufferSize ${maxBufferSize}`;
    }
    for (const length of plan.arenas?.byteLengths ?? []) {
      if (length > (maxBufferSize ?? maxStorageBufferBindingSize)) return `arena larger than its requiredLimits: ${plan.name} arena of ${length} bytes`;
    }
  }
  return undefined;
}

export async function planTarget(): Promise<FuzzTarget> {
  const seeds = [handPlan(), await compiledSeed()];
  let dataLength = 0;
  return {
    name: 'plan',
    seeds,
    async read(bytes) {
      const bundle = await readBundle(bytes);
      // what loadPlan checks before allocating, and what `mnc inspect` does: describe every target, print it as JSON, print its WGSL
      targetsOf(bundle.manifest).forEach((t, i) => {
        checkMemoryBudget(targetManifest(bundle.manifest, i)); // what loadPlan checks before it allocates
        describePlan('fuzz.mnplan', bytes.length, bundle.manifest, t.name);
      });
      JSON.stringify(bundle.manifest, null, 2);
      kernelSources(bundle);
      return bundle;
    },
    isExpected: isPlanError,
    kindOf: planErrorKind,
    restructure(bytes, edit): Mutated | undefined {
      const parts = splitBundle(bytes);
      if (!parts) return undefined;
      dataLength = parts.data.length;
      const what = edit(parts.manifest);
      return { bytes: joinBundle(bytes, parts.manifest, parts.data), what };
    },
    jsonMutators: planMutators(() => dataLength),
    checkAccepted: (value) => checkPlanSizes((value as PlanBundle).manifest),
  };
}

// ---------------------------------------------------------------------------------------
// safetensors

function safetensorsSeeds(): Uint8Array[] {
  const tensor = (dtype: 'F32' | 'I32' | 'F16' | 'U8', shape: number[], bytesPer: number) => ({
    dtype,
    shape,
    data: Uint8Array.from({ length: shape.reduce((n, d) => n * d, 1) * bytesPer }, (_, i) => (i * 37) & 0xff),
  });
  const made = encodeSafetensors(
    new Map([
      ['w', tensor('F32', [3, 4], 4)],
      ['b', tensor('F16', [4], 2)],
      ['step', tensor('I32', [], 4)],
      ['empty', tensor('U8', [0, 5], 1)],
    ]),
    { format: 'pt' },
  );
  const fixture = new URL('../../fixtures/training/mlp-adam.torch.safetensors', import.meta.url);
  return [made, new Uint8Array(readFileSync(fixture))];
}

export function safetensorsTarget(): FuzzTarget {
  return {
    name: 'safetensors',
    seeds: safetensorsSeeds(),
    async read(bytes) {
      return decodeSafetensors(bytes, 'fuzz.safetensors');
    },
    isExpected: isPlanError,
    kindOf: planErrorKind,
    restructure(bytes, edit): Mutated | undefined {
      if (bytes.length < 8) return undefined;
      const length = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
      if (length > bytes.length - 8) return undefined;
      let header: unknown;
      try {
        header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
      } catch {
        return undefined;
      }
      const what = edit(header);
      const json = new TextEncoder().encode(stringifyJson(header));
      const out = new Uint8Array(8 + json.length + bytes.length - 8 - length);
      new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
      out.set(json, 8);
      out.set(bytes.subarray(8 + length), 8 + json.length);
      return { bytes: out, what };
    },
  };
}

// ---------------------------------------------------------------------------------------
// ONNX

/**
 * The ONNX frontend from bytes to a Graph: the fixtures' MLP and transformer block (its QKV
 * weight as external data beside fixtures/onnx/, where the mutated models are read as if
 * they lay). Dynamic dimensions are bound to 2, as `--shape` would.
 */
const ModelProto = protobuf.Root.fromJSON(onnxDescriptor as protobuf.INamespace).lookupType('onnx.ModelProto');

export function onnxTarget(): FuzzTarget {
  const file = new URL('../../fixtures/onnx/fuzz.onnx', import.meta.url).pathname;
  return {
    name: 'onnx',
    seeds: [encodeModel(mlpModel()), encodeModel(blockModel(2, 'block.weights').model)],
    async read(bytes) {
      const model = decodeModel(bytes, file);
      const initializers = new Set((model.graph?.initializer ?? []).map((t) => t.name));
      const shapes = Object.fromEntries(
        (model.graph?.input ?? [])
          .filter((i) => !initializers.has(i.name) && i.type?.tensorType?.shape?.dim?.some((d) => !(Number(d.dimValue) > 0)))
          .map((i) => [i.name ?? '', (i.type!.tensorType!.shape!.dim ?? []).map((d) => (Number(d.dimValue) > 0 && Number(d.dimValue) < 64 ? Number(d.dimValue) : 2))]),
      );
      return importOnnxModel(model, file, { shapes });
    },
    isExpected: isCompileError,
    // the ModelProto as JSON (protobufjs's object form, bytes in base64), mutated, re-encoded:
    // well-formed protobuf whose content reaches the importer's checks
    restructure(bytes, edit): Mutated | undefined {
      let json: unknown;
      try {
        json = ModelProto.toObject(ModelProto.decode(bytes), { longs: Number, bytes: String, arrays: true });
      } catch {
        return undefined;
      }
      const what = edit(json);
      try {
        return { bytes: ModelProto.encode(ModelProto.fromObject(json as Record<string, unknown>)).finish(), what };
      } catch {
        return undefined;
      }
    },
    kindOf: (e) => (isCompileError(e) ? e.kind : '?'),
  };
}

// ---------------------------------------------------------------------------------------
// NNEF

/** graph.nnef's tokens (comments dropped), integers as JSON numbers so the number mutators reach them (shapes, axes, sizes). */
const NNEF_TOKEN = /'[^'\n]*'|"[^"\n]*"|[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|->|<=|>=|==|!=|&&|\|\||#[^\n]*|\S/g;

function nnefTokens(text: string): (string | number)[] {
  return (text.match(NNEF_TOKEN) ?? []).filter((t) => !t.startsWith('#')).map((t) => (/^[0-9]+$/.test(t) ? Number(t) : t));
}

/** Tokens back to text: strings as they are, anything a mutator put there as JSON. */
function nnefText(tokens: unknown): string {
  if (!Array.isArray(tokens)) return stringifyJson(tokens);
  return tokens.map((t) => (typeof t === 'string' ? t : stringifyJson(t))).join(' ');
}

/** Mutations that keep graph.nnef well-formed enough to reach the operations: another op, other shapes and attributes. */
const NNEF_MUTATORS: Record<string, JsonMutator> = {
  'other operation'(root, rng) {
    const tokens = root as unknown[];
    const at = tokens.flatMap((t, i) => (i > 0 && tokens[i - 1] === '=' && typeof t === 'string' && /^[a-z_]+$/.test(t) && tokens[i + 1] !== '[' ? [i] : []));
    if (!Array.isArray(tokens) || at.length === 0) return 'no operation';
    const i = rng.pick(at);
    const op = rng.pick([...Object.keys(PROTOTYPES), ...UNSUPPORTED_STANDARD_OPS]);
    const was = tokens[i];
    tokens[i] = op;
    return `operation ${String(was)} → ${op}`;
  },
  'edge integer'(root, rng) {
    const tokens = root as unknown[];
    const at = tokens.flatMap((t, i) => (typeof t === 'number' ? [i] : []));
    if (!Array.isArray(tokens) || at.length === 0) return 'no number';
    const i = rng.pick(at);
    tokens[i] = rng.pick([0, 1, 2, 3, 7, 64, 4096, 65536, 2 ** 31, 2 ** 40]);
    if (rng.chance(0.3)) tokens.splice(i, 0, '-');
    return `number ${i} = ${tokens[i] === '-' ? '-' : ''}${String(tokens[i + (tokens[i] === '-' ? 1 : 0)])}`;
  },
  'border'(root, rng) {
    const tokens = root as unknown[];
    const at = tokens.flatMap((t, i) => (typeof t === 'string' && /^'/.test(t) ? [i] : []));
    if (!Array.isArray(tokens) || at.length === 0) return 'no string';
    const i = rng.pick(at);
    tokens[i] = rng.pick(["'constant'", "'ignore'", "'reflect'", "''", "'../../etc/passwd'", "'fc1/weight'", "'conv1/weight'", "'weights/w'"]);
    return `string ${i} = ${String(tokens[i])}`;
  },
};

/** Every fixture's tensor files by label, read as if beside any graph. */
function nnefFixtureTensors(): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const add = (m: Map<string, Uint8Array>) => m.forEach((bytes, name) => files.set(name.replace(/\.dat$/, ''), bytes));
  add(onnxToNnef(mlpModel(), { x: [1, 16] }).tensors);
  add(onnxToNnef(cnnModel()).tensors);
  add(cornerTensors());
  return files;
}

const nnefKind = (e: unknown) => (isCompileError(e) ? e.kind : e instanceof TensorFileError ? 'tensor-file' : '?');

/**
 * The NNEF frontend from graph.nnef's text to a Graph, over the fixtures' graphs (the MLP and
 * CNN written from the ONNX fixtures, the hand-written corners graph) and their tensor files
 * held in memory. Mutations: bytes, and tokens (as a JSON array, so the generic mutators
 * delete, copy and replace them, plus other operations, edge integers and strings).
 */
export function nnefTarget(): FuzzTarget {
  const file = 'fuzz.nnef/graph.nnef';
  const tensors = nnefFixtureTensors();
  const read = (label: string) => {
    const bytes = tensors.get(label);
    if (!bytes) throw new TensorFileError('cannot read the tensor file: no such file', `fuzz.nnef/${label}.dat`);
    return { bytes, file: `fuzz.nnef/${label}.dat` };
  };
  const encoder = new TextEncoder();
  const seeds = [
    onnxToNnef(mlpModel(), { x: [1, 16] }).graph,
    onnxToNnef(cnnModel()).graph,
    readFileSync(new URL('../../fixtures/nnef/corners.nnef/graph.nnef', import.meta.url), 'utf8'),
  ].map((t) => encoder.encode(t));
  return {
    name: 'nnef',
    seeds,
    async read(bytes) {
      return importNnefModel(new TextDecoder().decode(bytes), file, read);
    },
    isExpected: isCompileError,
    kindOf: nnefKind,
    restructure(bytes, edit): Mutated {
      const tokens = nnefTokens(new TextDecoder().decode(bytes));
      const what = edit(tokens);
      return { bytes: encoder.encode(nnefText(tokens)), what };
    },
    jsonMutators: NNEF_MUTATORS,
  };
}

/**
 * NNEF's .dat reader: a mutated tensor file read as the variable of a graph that declares the
 * shape its header gives (so accepted files reach the parameter they become). Seeds: float32,
 * float16 and float64 weights, int8 scales, a bit-packed logical mask.
 */
export function nnefTensorTarget(): FuzzTarget {
  const tensors = nnefFixtureTensors();
  const seeds = ['conv1/weight', 'weights/w', 'weights/b', 'scales', 'mask'].map((label) => tensors.get(label)!);
  return {
    name: 'nnef-dat',
    seeds,
    async read(bytes) {
      const { shape, itemType } = decodeTensorFile(bytes);
      const type = itemType === 'bool' ? 'logical' : 'scalar';
      const graph = `version 1.0;\ngraph g( x ) -> ( y )\n{\n  x = external<scalar>(shape = [1]);\n  w = variable<${type}>(shape = [${shape.join(', ')}], label = 'w');\n  y = add(w, x);\n}\n`;
      return importNnefModel(graph, 'fuzz.nnef/graph.nnef', () => ({ bytes, file: 'fuzz.nnef/w.dat' }));
    },
    isExpected: (e) => isCompileError(e) || e instanceof TensorFileError,
    kindOf: nnefKind,
  };
}

// ---------------------------------------------------------------------------------------
// GGUF

/** Metadata values as JSON: bigints as numbers, typed arrays as plain arrays. */
function ggufValueToJson(value: GgufValue): unknown {
  if (typeof value === 'bigint') return Number(value);
  if (typeof value !== 'object') return value;
  return { elementType: value.elementType, values: Array.from(value.values as ArrayLike<GgufValue>, ggufValueToJson) };
}

/** An accepted file's promise: every tensor's data lies in the data section, aligned, inside the file. */
function checkGguf(file: GgufFile): string | undefined {
  if (file.dataOffset > file.byteLength) return `data section outside the file: starts at ${file.dataOffset} of ${file.byteLength}`;
  for (const t of file.tensors.values()) {
    if (t.offset < file.dataOffset || t.offset + t.byteLength > file.byteLength) return `tensor outside the data section: "${t.name}" at ${t.offset}..${t.offset + t.byteLength}`;
    if ((t.offset - file.dataOffset) % file.alignment !== 0) return `tensor misaligned: "${t.name}" at ${t.offset}`;
  }
  return undefined;
}

type GgufJson = { version: number; metadata: [string, number, unknown][]; tensors: { name: string; type: number; ne: number[]; offset: number }[] };

/** Mutations aimed at the GGUF reader's own checks: tensor types, dims, offsets, value types, alignment. */
const GGUF_MUTATORS: Record<string, JsonMutator> = {
  'tensor type'(root, rng) {
    const t = rng.pick((root as GgufJson).tensors);
    t.type = rng.pick([4, 5, 10, 16, 31, 33, 39, 40, 99, 2 ** 31, 0xffffffff]);
    return `tensor ${t.name} type = ${t.type}`;
  },
  'tensor dims'(root, rng) {
    const t = rng.pick((root as GgufJson).tensors);
    t.ne = rng.pick([[], [0], [33], [256, 2 ** 20], [2 ** 32, 2 ** 32], [1, 1, 1, 1, 1], [2 ** 53 - 1], t.ne.slice().reverse()]);
    return `tensor ${t.name} ne = [${t.ne}]`;
  },
  'tensor offset'(root, rng) {
    const t = rng.pick((root as GgufJson).tensors);
    t.offset = rng.pick([1, 16, 31, 32, 2 ** 20, 2 ** 40, 2 ** 53 - 32, t.offset + 32, t.offset - 32]);
    return `tensor ${t.name} offset = ${t.offset}`;
  },
  'value type'(root, rng) {
    const m = rng.pick((root as GgufJson).metadata);
    m[1] = rng.int(14);
    return `metadata ${m[0]} type = ${m[1]}`;
  },
  'alignment'(root, rng) {
    const value = rng.pick([0, 1, 3, 8, 48, 64, 4096, 2 ** 31, 0xffffffff]);
    (root as GgufJson).metadata.push(['general.alignment', rng.pick([4, 4, 10, 5]), value]);
    return `general.alignment = ${value}`;
  },
};

export function ggufTarget(): FuzzTarget {
  return {
    name: 'gguf',
    seeds: [tinyLlamaGguf(), blocksGguf()],
    async read(bytes) {
      const file = parseGguf(bytes, 'fuzz.gguf');
      for (const t of file.tensors.values()) {
        if (isSupportedType(t.type.name)) dequantize(t.type, bytes.subarray(t.offset, t.offset + t.byteLength), t.elements, `tensor "${t.name}"`);
      }
      try {
        ggufModelConfig(file);
      } catch (error) {
        if (!isCompileError(error)) throw error;
      }
      return file;
    },
    isExpected: isPlanError,
    kindOf: planErrorKind,
    checkAccepted: (value) => checkGguf(value as GgufFile),
    // metadata and tensor infos as JSON, mutated, written again before the original data section
    restructure(bytes, edit): Mutated | undefined {
      let file: GgufFile;
      try {
        file = parseGguf(bytes);
      } catch {
        return undefined;
      }
      const json: GgufJson = {
        version: file.version,
        metadata: [...file.metadata].map(([key, e]) => [key, e.type, ggufValueToJson(e.value)]),
        tensors: [...file.tensors.values()].map((t) => ({ name: t.name, type: t.type.id, ne: t.ne, offset: t.offset - file.dataOffset })),
      };
      const what = edit(json);
      try {
        const tensors: GgufWriterTensor[] = json.tensors.map((t) => ({ name: t.name, type: 'F32', typeId: t.type, ne: t.ne, offset: t.offset, data: new Uint8Array(0), unchecked: true }));
        const metadata = json.metadata.map(([key, type, value]) => [key, { type, value }] as [string, never]);
        const header = encodeGguf({ version: json.version, metadata, tensors, alignment: file.alignment });
        const out = new Uint8Array(header.length + bytes.length - file.dataOffset);
        out.set(header);
        out.set(bytes.subarray(file.dataOffset), header.length);
        return { bytes: out, what };
      } catch {
        return undefined;
      }
    },
    jsonMutators: GGUF_MUTATORS,
  };
}
