// A tiny model touching most op families (pointwise with broadcasting, matmul, reductions,
// norms, layout), small enough that the CLI tests compile and run it in a moment.
import { model } from 'mnc';
import { dense } from './layers';

export const smoke = model((g) => {
  const x = g.input('x', [2, 8]);
  const h = g.gelu(dense(g, x, 8, 16, 'l1'));
  const n = g.layerNorm(h, g.parameter('ln_g', [16], { init: 'ones' }), g.parameter('ln_b', [16]));
  const gated = g.mul(g.silu(n), g.sigmoid(g.add(n, 0.5)));
  const t = g.transpose(g.reshape(gated, [2, 4, 4]), [0, 2, 1]);
  const rows = g.concat([g.reshape(t, [2, 16]), g.tanh(x)], 1);
  const out = dense(g, rows, 24, 4, 'l2');
  return {
    out,
    probs: g.softmax(out),
    rowMax: g.max(out, 1),
    mean: g.mean(g.sub(out, g.exp(g.neg(g.div(out, 4)))), 0, { keepDims: true }),
    norm: g.sqrt(g.sum(g.mul(out, out), 1)),
  };
});
