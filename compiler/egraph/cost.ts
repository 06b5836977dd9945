// The extraction cost model, in microseconds on the target's device class (its CostFigures):
// a fixed cost per dependent dispatch, the bytes a kernel reads and writes at the bandwidth
// a WGSL copy reaches, and its FLOPs (as its op definition counts them: `flops` in the op
// table) at the rate the tiled matmul reaches. Leaves and aliases (reshape) cost nothing. An
// e-node whose shape rule fails, or gives another type than its e-class holds, costs
// Infinity: rules need no shape guards, because a match that would change a shape is never extracted.
import { opDef, type OpName } from '../ir/ops';
import { sameShape } from '../ir/shape';
import { elementCount, type TensorType } from '../ir/types';
import { dtypeByteLength } from '../../schemas/manifest';
import type { CostFigures } from '../target/target';
import type { EGraph, ENode } from './egraph';
import type { TermReader } from './terms';

const bytesOf = (t: TensorType) => dtypeByteLength(t.dtype, elementCount(t.shape));

/** A kernel's arithmetic: as its op's definition counts it (`flops`), else one per output element. */
export function flopsOf(op: OpName, operands: readonly TensorType[], attrs: Readonly<Record<string, unknown>>, out: TensorType): number {
  return opDef(op).flops?.(operands, attrs, out) ?? elementCount(out.shape);
}

/** The type of every e-class: known ones from the graph, the rest inferred from their e-nodes. */
export function classTypes(eg: EGraph, reader: TermReader, known: Map<number, TensorType>): Map<number, TensorType> {
  const types = new Map<number, TensorType>();
  for (const [c, t] of known) types.set(eg.find(c), t);
  const byClass = eg.nodesByClass();
  for (let changed = true; changed; ) {
    changed = false;
    for (const [c, nodes] of byClass) {
      if (types.has(c)) continue;
      for (const node of nodes) {
        const t = inferNode(eg, reader, node, types);
        if (t) {
          types.set(c, t);
          changed = true;
          break;
        }
      }
    }
  }
  return types;
}

function inferNode(eg: EGraph, reader: TermReader, node: ENode, types: Map<number, TensorType>): TensorType | undefined {
  const d = reader.decode(node);
  if (d?.scalar !== undefined) return { shape: [], dtype: 'f32' }; // a constant a rule made
  if (!d || d.operands.length === 0) return undefined;
  const operands = d.operands.map((o) => types.get(eg.find(o)));
  if (operands.some((t) => !t)) return undefined;
  return inferOrUndefined(d.op, operands as TensorType[], d.attrs);
}

/**
 * The op's inferred type, or undefined where its shape rule refuses the operands. Rules make
 * many e-nodes that are invalid at their class's shapes (a transpose folded where it does not
 * apply), so refusals are common here: thrown without a stack trace, which V8 would otherwise
 * capture for each (a third of the cost model's time on the SmolLM2 training graph).
 */
function inferOrUndefined(op: OpName, operands: TensorType[], attrs: unknown): TensorType | undefined {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return opDef(op).infer(operands, attrs as never);
  } catch {
    return undefined;
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** The cost function extraction uses: Infinity for e-nodes that are not valid at their class's type. */
export function kernelCost(eg: EGraph, reader: TermReader, types: Map<number, TensorType>, figures: CostFigures): (node: ENode, classId: number) => number {
  return (node, classId) => {
    const d = reader.decode(node);
    if (!d) return 0; // None, Nil, Cons
    if (d.operands.length === 0) return 0;
    const type = types.get(eg.find(classId));
    const operands = d.operands.map((o) => types.get(eg.find(o)));
    if (!type || operands.some((t) => !t)) return Infinity;
    const out = inferOrUndefined(d.op, operands as TensorType[], d.attrs);
    if (!out) return Infinity;
    if (!sameShape(out.shape, type.shape) || out.dtype !== type.dtype) return Infinity;
    const archetype = opDef(d.op).lowering.archetype;
    if (archetype === 'alias' || archetype === 'none') return 0;
    const bytes = operands.reduce((n, t) => n + bytesOf(t!), bytesOf(out));
    const flops = flopsOf(d.op, operands as TensorType[], d.attrs, out);
    return figures.dispatchMicros + bytes / figures.bytesPerMicro + flops / figures.flopsPerMicro;
  };
}
