// Split reductions: a sum, mean or max with too few rows to fill the GPU (a few long rows,
// or an early axis reduced into few outputs) is computed in two reductions: one over chunks
// of the axis (reading its operand as [.., chunks, length / chunks, ..], the same bytes),
// then one over the chunks' results. A lowering decision: axis.ts (splitChunks) decides where.
import { attrsOf, type Graph, type Node } from '../ir/graph';
import { opDef, type AxisAttrs, type OpName } from '../ir/ops';
import type { TensorType } from '../ir/types';
import type { Target } from '../target/target';
import { splitChunks } from './axis';
import type { NodeSchedule } from './kernel';

/**
 * Ops whose reduction of chunk results is the same op: a sum of sums, a max of maxes, and a
 * mean of the means of equal chunks (÷ chunk length, then ÷ chunks: ÷ the length, exactly
 * when both are powers of two, within rounding otherwise).
 */
const SPLITTABLE: ReadonlySet<OpName> = new Set<OpName>(['sum', 'mean', 'max']);

/** The two-step schedule of the reduction at `node` where splitChunks picks one: `${name}.partial` (scratch), then the reduction of its chunks. */
export function splitReductionSteps(graph: Graph, node: Node, target: Target): NodeSchedule | undefined {
  if (!SPLITTABLE.has(node.op)) return undefined;
  const def = opDef(node.op);
  if (def.lowering.archetype !== 'axis') return undefined;
  const x = graph.nodes[node.inputs[0]].type;
  const program = def.lowering.program([x], node.attrs);
  const chunks = splitChunks(x.shape, program, target.tuning.axis);
  if (chunks === undefined) return undefined;
  const { axis } = program;
  const chunked: TensorType = { ...x, shape: [...x.shape.slice(0, axis), chunks, x.shape[axis] / chunks, ...x.shape.slice(axis + 1)] };
  const partialAttrs: AxisAttrs = { axis: axis + 1, keepDims: false };
  const partial = def.infer([chunked], partialAttrs as never);
  const { keepDims } = attrsOf(node, 'sum', 'mean', 'max');
  const finalAttrs: AxisAttrs = { axis, keepDims };
  return {
    scratch: [partial],
    steps: [
      { subject: { op: node.op, name: `${node.name}.partial`, type: partial, attrs: { ...partialAttrs } }, operands: [{ node: node.inputs[0] }], operandTypes: [chunked], result: { scratch: 0 } },
      { subject: { op: node.op, name: node.name, type: node.type, attrs: { ...finalAttrs } }, operands: [{ scratch: 0 }], operandTypes: [partial], result: 'node' },
    ],
  };
}
