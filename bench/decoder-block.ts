// The SmolLM2-width decoder block the bench programs share (bench/suite.ts, bench/soak.ts).
import type { Graph, Tensor } from '../compiler/ir/graph';
import { causalMask } from './bench-data';

export interface BlockShape {
  hidden: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  seq: number;
}
export const SMOLLM2_BLOCK: BlockShape = { hidden: 576, heads: 9, kvHeads: 3, ffn: 1536, seq: 128 };

/**
 * One decoder layer of SmolLM2-135M's width, written in primitives as
 * examples/smollm2/model.ts writes it (RMSNorm, grouped-query attention with a causal mask,
 * SwiGLU FFN, residuals); the optimizer rediscovers the fused forms.
 */
export function decoderBlock(g: Graph, s: BlockShape, x: Tensor): Tensor {
  const d = s.hidden / s.heads;
  const group = s.heads / s.kvHeads;
  const p = (name: string, shape: number[], ones = false) => g.parameter(name, shape, { init: ones ? 'ones' : { normal: 0.02 } });
  const rms = (t: Tensor, gamma: Tensor) => g.mul(g.div(t, g.sqrt(g.add(g.mean(g.mul(t, t), -1, { keepDims: true }), 1e-5))), gamma);
  const split = (t: Tensor, heads: number) => g.transpose(g.reshape(t, [s.seq, heads, d]), [1, 0, 2]);
  const mask = g.constant(causalMask(s.seq), [s.seq, s.seq], 'causal_mask');

  const h = rms(x, p('attn_norm', [s.hidden], true));
  const q = split(g.matmul(h, p('wq', [s.hidden, s.hidden])), s.heads);
  const share = (t: Tensor) => g.reshape(g.broadcastTo(g.reshape(split(t, s.kvHeads), [s.kvHeads, 1, s.seq, d]), [s.kvHeads, group, s.seq, d]), [s.heads, s.seq, d]);
  const k = share(g.matmul(h, p('wk', [s.hidden, s.kvHeads * d])));
  const v = share(g.matmul(h, p('wv', [s.hidden, s.kvHeads * d])));
  const scores = g.add(g.mul(g.matmul(q, g.transpose(k, [0, 2, 1])), 1 / Math.sqrt(d)), mask);
  const e = g.exp(g.sub(scores, g.max(scores, -1, { keepDims: true })));
  const attended = g.matmul(g.div(e, g.sum(e, -1, { keepDims: true })), v);
  const merged = g.reshape(g.transpose(attended, [1, 0, 2]), [s.seq, s.hidden]);
  const x1 = g.add(x, g.matmul(merged, p('wo', [s.hidden, s.hidden])));

  const f = rms(x1, p('ffn_norm', [s.hidden], true));
  const gate = g.matmul(f, p('w_gate', [s.hidden, s.ffn]));
  const up = g.matmul(f, p('w_up', [s.hidden, s.ffn]));
  return g.add(x1, g.matmul(g.mul(g.mul(gate, g.sigmoid(gate)), up), p('w_down', [s.ffn, s.hidden])));
}
