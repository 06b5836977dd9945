// ONNX's Loop, unrolled at import: a static compiler has no run-time control flow, so a Loop
// whose trip count and condition are known at compile time (as in an expanded Range, whose
// inputs fold) becomes its body converted once per iteration. Loop-carried values may be
// computed at run time; each iteration's scan outputs are stacked along a new first axis.
import type { Converter } from './converters';
import type { NodeContext } from './context';
import { BOOL, INT64 } from './proto';
import { folded, type Value } from './values';

/** The most iterations a Loop unrolls to (each is a copy of the body in the plan). */
export const UNROLL_LIMIT = 4096;

const loop: Converter = {
  since: 11,
  convert: (ctx: NodeContext) => {
    const body = ctx.graph('body') ?? ctx.fail('the body attribute (a graph) is required');
    const tripCount = ctx.optional(0) ? ctx.known(0, 'M, the trip count').data[0] : undefined;
    let condition = ctx.optional(1) ? ctx.known(1, 'cond').data[0] !== 0 : true;
    if (tripCount === undefined && !ctx.optional(1)) ctx.fail('a Loop with neither a trip count nor a condition never ends');
    let carried: Value[] = Array.from({ length: ctx.inputCount - 2 }, (_, i) => ctx.input(i + 2));
    const scanCount = (body.output?.length ?? 0) - 1 - carried.length;
    if (scanCount < 0) ctx.fail(`the body has ${body.output?.length ?? 0} outputs; it needs the condition and the ${carried.length} loop-carried values`);
    const scans: Value[][] = Array.from({ length: scanCount }, () => []);
    for (let i = 0; condition && (tripCount === undefined || i < tripCount); i++) {
      if (i >= UNROLL_LIMIT) ctx.fail(`the loop runs more than ${UNROLL_LIMIT} iterations, the most it is unrolled to`);
      const outs = ctx.runSubgraph(body, [folded(INT64, [], Float64Array.of(i)), folded(BOOL, [], Float64Array.of(1)), ...carried]);
      const next = outs[0];
      if (next.kind !== 'folded') ctx.fail(`the body's condition output must be known at compile time (the loop is unrolled); at iteration ${i} it is computed at run time`);
      condition = next.data[0] !== 0;
      carried = outs.slice(1, 1 + carried.length);
      outs.slice(1 + carried.length).forEach((v, k) => scans[k].push(v));
    }
    const stacked = scans.map((values, k) => {
      if (values.length === 0) {
        // no iteration ran: an empty scan, shaped as the body declares its output
        const info = body.output?.[1 + carried.length + k];
        const dims = info?.type?.tensorType?.shape?.dim?.map((d) => Number(d.dimValue ?? 0)) ?? [];
        return folded(info?.type?.tensorType?.elemType ?? 1, [0, ...dims], new Float64Array(0));
      }
      const rows = values.map((v) => ctx.apply('reshape', [v], { shape: [1, ...ctx.shape(v)] }, v.dataType));
      return rows.length === 1 ? rows[0] : ctx.apply('concat', rows, { axis: 0 }, values[0].dataType);
    });
    return [...carried, ...stacked];
  },
};

/** The control-flow ops by ONNX op type. */
export const CONTROL_FLOW_CONVERTERS: Readonly<Record<string, Converter>> = { Loop: loop };
