// The CPU reference interpreter: runs a graph with the op table's reference semantics, in
// float64. It is the oracle the GPU results are tested against, and with optimizer state
// it runs whole training steps (update ops write parameters and state in place).
import { CompileError } from './errors';
import { attrsOf, liveNodes, type Graph } from './graph';
import { PACKED_DTYPES } from '../../schemas/manifest';
import { dequantize, ggmlType } from '../../runtime/ggml-types';
import type { StoredValues, WeightSource } from '../plan/sections';
import { initialValues } from './init';
import { opDef, type Init, type RefTensor } from './ops';
import { elementCount, formatShape, isWeightDType, type WeightDType } from './types';

/**
 * Initial values of every parameter, as the CPU reference reads them: f32 parameters' as the
 * plan stores them, packed ones' dequantized (the plan stores their bytes: packedBytes).
 */
export function materializeParameters(graph: Graph, seed: number): Map<string, Float32Array> {
  const values = new Map<string, Float32Array>();
  for (const node of graph.nodes) {
    if (node.op !== 'parameter') continue;
    const attrs = attrsOf(node, 'parameter');
    values.set(node.name, isWeightDType(attrs.dtype) ? unpackedValues(node.name, attrs.dtype, attrs.shape, attrs.init) : initialValues(attrs.init, attrs.shape, node.name, seed));
  }
  return values;
}

/** The stored bytes of every packed parameter that has some (one loaded later has none: its buffer starts at zero). */
export function packedBytes(graph: Graph): Map<string, Uint8Array> {
  const bytes = new Map<string, Uint8Array>();
  for (const node of graph.nodes) {
    if (node.op !== 'parameter') continue;
    const attrs = attrsOf(node, 'parameter');
    if (isWeightDType(attrs.dtype) && attrs.init instanceof Uint8Array) bytes.set(node.name, attrs.init);
  }
  return bytes;
}

/**
 * What the plan stores for each parameter, given materializeParameters' values: packed
 * parameters' bytes in place of their dequantized values (nothing for those without bytes).
 */
export function storedParameters(graph: Graph, values: ReadonlyMap<string, Float32Array>): Map<string, StoredValues> {
  const packed = packedBytes(graph);
  const weights = new Set(graph.nodes.filter((n) => n.op === 'parameter' && isWeightDType(n.type.dtype)).map((n) => n.name));
  const stored = new Map<string, StoredValues>();
  for (const [name, v] of values) {
    const bytes = packed.get(name);
    if (bytes) stored.set(name, bytes);
    else if (!weights.has(name)) stored.set(name, v);
  }
  return stored;
}

/** A packed parameter's values: its bytes dequantized, or zeros. */
function unpackedValues(name: string, dtype: WeightDType, shape: readonly number[], init: Init): Float32Array {
  const n = elementCount(shape);
  if (!(init instanceof Uint8Array)) return new Float32Array(n);
  return dequantize(ggmlType(dtype === 'f16' ? 'F16' : PACKED_DTYPES[dtype].ggml), init, n, `parameter '${name}'`);
}

/**
 * Each parameter's initial contents as the plan stores them, made only when asked for (the
 * values of materializeParameters, a packed parameter's bytes), so a plan writer can hold one
 * tensor at a time.
 */
export function parameterSources(graph: Graph, seed: number): Map<string, WeightSource> {
  const sources = new Map<string, WeightSource>();
  const packed = packedBytes(graph);
  for (const node of graph.nodes) {
    if (node.op !== 'parameter') continue;
    const attrs = attrsOf(node, 'parameter');
    const bytes = packed.get(node.name);
    if (bytes) sources.set(node.name, { byteLength: bytes.byteLength, values: () => bytes });
    else if (!isWeightDType(attrs.dtype)) sources.set(node.name, { byteLength: elementCount(attrs.shape) * 4, values: () => initialValues(attrs.init, attrs.shape, node.name, seed) });
  }
  return sources;
}

export interface InterpretOptions {
  /** optimizer state by name; Float64Arrays are updated in place */
  state?: Map<string, ArrayLike<number>>;
  /** outputs to compute (default: all of the graph's outputs) */
  outputs?: readonly string[];
  /** further nodes to compute for their effect (optimizer updates) */
  effects?: readonly number[];
}

/**
 * Evaluates the requested outputs. Parameters and state given as Float64Arrays are used in
 * place, so a training graph's update ops leave the stepped values in the caller's arrays.
 */
export function interpret(
  graph: Graph,
  inputs: Record<string, ArrayLike<number>>,
  parameters: Map<string, ArrayLike<number>>,
  options: InterpretOptions = {},
): Record<string, Float64Array> {
  const wanted = options.outputs ? graph.outputs.filter((o) => options.outputs!.includes(o.name)) : graph.outputs;
  const live = liveNodes(graph, [...wanted.map((o) => o.node), ...(options.effects ?? [])]);
  const values: (RefTensor | undefined)[] = [];
  for (const node of graph.nodes) {
    if (!live.has(node.id)) {
      values.push(undefined);
      continue;
    }
    let data: Float64Array;
    if (node.op === 'input' || node.op === 'parameter' || node.op === 'state') {
      const source = node.op === 'input' ? inputs[node.name] : node.op === 'parameter' ? parameters.get(node.name) : options.state?.get(node.name);
      if (!source) throw new CompileError('input', `no value for ${node.op} '${node.name}'`, node.loc, node.op);
      if (source.length !== elementCount(node.type.shape)) {
        throw new CompileError(
          'input',
          `${node.op} '${node.name}' has shape ${formatShape(node.type.shape)} (${elementCount(node.type.shape)} elements); got ${source.length} values`,
          node.loc,
          node.op,
        );
      }
      data = source instanceof Float64Array ? source : Float64Array.from(source);
    } else {
      data = opDef(node.op).evaluate(
        node.inputs.map((i) => values[i]!),
        node.attrs,
        node.type,
      );
    }
    values.push({ data, shape: node.type.shape });
  }
  return Object.fromEntries(wanted.map((o) => [o.name, values[o.node]!.data]));
}
