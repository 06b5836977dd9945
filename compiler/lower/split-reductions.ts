// Split reductions: a sum, mean or max with too few rows to fill the GPU (a few long rows,
// or an early axis reduced into few outputs) becomes two reductions: one over chunks of the
// axis (a reshape, which shares its operand's buffer), then one over the chunks' results.
// A Graph → Graph pass run just before lowering; axis.ts (splitChunks) decides where.
import { remapTraining, type TrainingGraph } from '../autodiff/train';
import type { Graph } from '../ir/graph';
import { opDef, type AxisAttrs, type OpName } from '../ir/ops';
import { freshNames, GraphCopy } from '../ir/rewrite';
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
  const splits = new Map<number, { axis: number; chunks: number }>();
  for (const node of graph.nodes) {
    if (!SPLITTABLE.has(node.op)) continue;
    const lowering = opDef(node.op).lowering;
    if (lowering.archetype !== 'axis') continue;
    const x = graph.nodes[node.inputs[0]].type;
    const program = lowering.program([x], node.attrs);
    const chunks = splitChunks(x.shape, program);
    if (chunks !== undefined) splits.set(node.id, { axis: program.axis, chunks });
  }
  if (splits.size === 0) return { graph, training };

  // every node is emitted under its name, the split's final step under the reduction's, so
  // that plans name their buffers and dispatches as before wherever Graph.apply keeps the
  // names of ops (today it keeps those of leaves); the new steps get names no node has
  const unused = freshNames(graph);
  const copy = new GraphCopy(graph);
  for (const node of graph.nodes) {
    const operands = node.inputs.map((i) => copy.of(i));
    const split = splits.get(node.id);
    if (!split) {
      copy.set(node.id, copy.emit(node.op, operands, node.attrs, node.loc, node.name));
      continue;
    }
    const { axis, chunks } = split;
    const shape = operands[0].shape;
    const chunked = [...shape.slice(0, axis), chunks, shape[axis] / chunks, ...shape.slice(axis + 1)];
    const parts = copy.emit('reshape', operands, { shape: chunked }, node.loc, unused(`${node.name}.chunks`));
    const partial = copy.emit(node.op, [parts], { axis: axis + 1, keepDims: false } satisfies AxisAttrs, node.loc, unused(`${node.name}.partial`));
    const { keepDims } = node.attrs as unknown as AxisAttrs;
    copy.set(node.id, copy.emit(node.op, [partial], { axis, keepDims } satisfies AxisAttrs, node.loc, node.name));
  }
  const { graph: rewritten, map } = copy.finish();
  return { graph: rewritten, training: training && remapTraining(training, rewritten, map) };
}
