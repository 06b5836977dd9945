// Split reductions: a sum, mean or max with too few rows to fill the GPU (a few long rows,
// or an early axis reduced into few outputs) becomes two reductions: one over chunks of the
// axis (a reshape, which shares its operand's buffer), then one over the chunks' results.
// A Graph → Graph pass run just before lowering; axis.ts (splitChunks) decides where.
import { replaceTrainedNodes, type TrainingGraph } from '../autodiff/train';
import { attrsOf, type Graph, type Node } from '../ir/graph';
import { opDef, type AxisAttrs, type OpName } from '../ir/ops';
import { splitChunks } from './axis';

/**
 * Ops whose reduction of chunk results is the same op: a sum of sums, a max of maxes, and a
 * mean of the means of equal chunks (÷ chunk length, then ÷ chunks: ÷ the length, exactly
 * when both are powers of two, within rounding otherwise).
 */
const SPLITTABLE: ReadonlySet<OpName> = new Set<OpName>(['sum', 'mean', 'max']);

/**
 * The graph with every reduction that splitChunks picks computed in two steps, and the
 * training description remapped onto it; the same graph (and training) when none qualifies.
 */
export function splitReductions(graph: Graph, training?: TrainingGraph): { graph: Graph; training?: TrainingGraph } {
  const choose = (node: Node) => {
    if (!SPLITTABLE.has(node.op)) return undefined;
    const lowering = opDef(node.op).lowering;
    if (lowering.archetype !== 'axis') return undefined;
    const x = graph.nodes[node.inputs[0]].type;
    const program = lowering.program([x], node.attrs);
    const chunks = splitChunks(x.shape, program);
    return chunks === undefined ? undefined : { axis: program.axis, chunks };
  };
  // every other node keeps its name and the split's final step the reduction's, so that plans
  // name their buffers and dispatches as before wherever Graph.apply keeps the names of ops
  // (today it keeps those of leaves); the new steps get names no node has
  return replaceTrainedNodes(graph, training, choose, (copy, node, operands, { axis, chunks }, unused) => {
    const shape = operands[0].shape;
    const chunked = [...shape.slice(0, axis), chunks, shape[axis] / chunks, ...shape.slice(axis + 1)];
    const parts = copy.emit('reshape', operands, { shape: chunked }, node.loc, unused(`${node.name}.chunks`));
    const partial = copy.emit(node.op, [parts], { axis: axis + 1, keepDims: false } satisfies AxisAttrs, node.loc, unused(`${node.name}.partial`));
    const { keepDims } = attrsOf(node, 'sum', 'mean', 'max');
    return copy.emit(node.op, [partial], { axis, keepDims } satisfies AxisAttrs, node.loc, node.name);
  });
}
