// The CPU reference interpreter: runs a graph with the op table's reference semantics.
// It is the oracle the GPU results are tested against.
import { CompileError } from './errors';
import type { Graph } from './graph';
import { initialValues } from './init';
import { opDef, type ParameterAttrs, type RefTensor } from './ops';
import { elementCount, formatShape } from './types';

/** Initial values of every parameter, as the plan stores them. */
export function materializeParameters(graph: Graph, seed: number): Map<string, Float32Array> {
  const values = new Map<string, Float32Array>();
  for (const node of graph.nodes) {
    if (node.op !== 'parameter') continue;
    const attrs = node.attrs as unknown as ParameterAttrs;
    values.set(node.name, initialValues(attrs.init, attrs.shape, node.name, seed));
  }
  return values;
}

/** Evaluates every output; parameters come from `parameters` (see materializeParameters). */
export function interpret(
  graph: Graph,
  inputs: Record<string, Float32Array>,
  parameters: Map<string, Float32Array>,
): Record<string, Float32Array> {
  const values: RefTensor[] = [];
  for (const node of graph.nodes) {
    let data: Float32Array;
    if (node.op === 'input' || node.op === 'parameter') {
      const fed = node.op === 'input' ? inputs[node.name] : parameters.get(node.name);
      if (!fed) throw new CompileError('input', `no value for ${node.op} '${node.name}'`, node.loc, node.op);
      if (fed.length !== elementCount(node.type.shape)) {
        throw new CompileError(
          'input',
          `${node.op} '${node.name}' has shape ${formatShape(node.type.shape)} (${elementCount(node.type.shape)} elements); got ${fed.length} values`,
          node.loc,
          node.op,
        );
      }
      data = fed;
    } else {
      data = opDef(node.op).evaluate(
        node.inputs.map((i) => values[i]),
        node.attrs,
        node.type,
      );
    }
    values.push({ data, shape: node.type.shape });
  }
  return Object.fromEntries(graph.outputs.map((o) => [o.name, values[o.node].data]));
}
