// A decoder-only transformer with SmolLM2-135M's shape (hidden 576, 9 query heads sharing
// 3 key/value heads, FFN 1536, vocabulary 49152, 30 layers, rope_theta 100000), written out
// in the op table's primitives: RMSNorm as x·(mean(x²)+eps)^-½·γ, SiLU as x·sigmoid(x),
// softmax as exp/sum/div, attention as matmul/softmax/matmul with a causal mask. The
// optimizer's rules must rediscover the fused forms. The embedding is a gather (tied with the
// LM head, whose product's gradient adds to the gather's), and q and k get rotary embeddings
// (HF's rotate-half form) at positions 0 .. seq-1.
//
//   mnc compile examples/smollm2/model.ts --model smollm2 --inference   # or train with the model's option
import { model, type Graph, type Tensor } from 'mnc';

export interface DecoderShape {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  vocab: number;
  /** tokens per sequence (one sequence per step) */
  seq: number;
  /** the base of the rotary embeddings' frequencies (HF's rope_theta) */
  ropeTheta: number;
}

export const SMOLLM2_135M: DecoderShape = { layers: 30, hidden: 576, heads: 9, kvHeads: 3, ffn: 1536, vocab: 49152, seq: 128, ropeTheta: 100000 };

/** RMSNorm from primitives: x / sqrt(mean(x²) + eps) · γ. */
function rmsNorm(g: Graph, x: Tensor, gamma: Tensor): Tensor {
  const ms = g.mean(g.mul(x, x), -1, { keepDims: true });
  return g.mul(g.div(x, g.sqrt(g.add(ms, 1e-5))), gamma);
}

/** Softmax over the last axis from primitives, stabilised by the row maximum. */
function softmax(g: Graph, x: Tensor): Tensor {
  const e = g.exp(g.sub(x, g.max(x, -1, { keepDims: true })));
  return g.div(e, g.sum(e, -1, { keepDims: true }));
}

function silu(g: Graph, x: Tensor): Tensor {
  return g.mul(x, g.sigmoid(x));
}

/** [T, H, d] → [H, T, d] */
function headsFirst(g: Graph, x: Tensor): Tensor {
  return g.transpose(x, [1, 0, 2]);
}

/** Builds the decoder on `g`; returns the logits [T, vocab] and the next-token loss. */
export function buildDecoder(g: Graph, s: DecoderShape): { logits: Tensor; loss: Tensor } {
  const headDim = s.hidden / s.heads;
  const group = s.heads / s.kvHeads;
  const tokens = g.input('tokens', [s.seq], 'i32');
  const targets = g.input('targets', [s.seq], 'i32');
  const embedding = g.parameter('embed', [s.vocab, s.hidden], { init: { normal: 0.02 } });
  let x = g.embedding(embedding, tokens);

  // causal mask: 0 on and below the diagonal, a large negative above (WGSL has no -inf literal)
  const mask = new Float32Array(s.seq * s.seq);
  for (let i = 0; i < s.seq; i++) for (let j = i + 1; j < s.seq; j++) mask[i * s.seq + j] = -1e9;
  const causal = g.constant(mask, [s.seq, s.seq], 'causal_mask');
  const scale = 1 / Math.sqrt(headDim);
  // the tokens' positions, for the rotary embeddings: 0 .. seq-1, one per row of [T, H, d]
  const positions = g.constant(Float32Array.from({ length: s.seq }, (_, i) => i), [s.seq, 1], 'positions');

  for (let l = 0; l < s.layers; l++) {
    const p = (name: string, shape: number[], init?: 'ones') => g.parameter(`layers.${l}.${name}`, shape, init ? { init } : { init: { normal: 0.02 } });
    const h = rmsNorm(g, x, p('attn_norm', [s.hidden], 'ones'));
    // projections [T, H·d] viewed as [T, H, d]; rotary embeddings on q and k there, where
    // they read the product as it is stored, before the heads are moved first ([H, T, d])
    const project = (name: string, heads: number) => g.reshape(g.matmul(h, p(name, [s.hidden, heads * headDim])), [s.seq, heads, headDim]);
    const rope = (t: Tensor) => g.rope(t, positions, { theta: s.ropeTheta });
    const q = headsFirst(g, rope(project('wq', s.heads)));
    // grouped-query attention: each key/value head serves `group` query heads
    const shareKv = (t: Tensor) => g.reshape(g.broadcastTo(g.reshape(t, [s.kvHeads, 1, s.seq, headDim]), [s.kvHeads, group, s.seq, headDim]), [s.heads, s.seq, headDim]);
    const k = shareKv(headsFirst(g, rope(project('wk', s.kvHeads))));
    const v = shareKv(headsFirst(g, project('wv', s.kvHeads)));
    const scores = g.add(g.mul(g.matmul(q, g.transpose(k, [0, 2, 1])), scale), causal);
    const attended = g.matmul(softmax(g, scores), v); // [H, T, d]
    const merged = g.reshape(g.transpose(attended, [1, 0, 2]), [s.seq, s.hidden]);
    x = g.add(x, g.matmul(merged, p('wo', [s.hidden, s.hidden])));

    const f = rmsNorm(g, x, p('ffn_norm', [s.hidden], 'ones'));
    const gate = silu(g, g.matmul(f, p('w_gate', [s.hidden, s.ffn])));
    const up = g.matmul(f, p('w_up', [s.hidden, s.ffn]));
    x = g.add(x, g.matmul(g.mul(gate, up), p('w_down', [s.ffn, s.hidden])));
  }
  const final = rmsNorm(g, x, g.parameter('final_norm', [s.hidden], { init: 'ones' }));
  const logits = g.matmul(final, g.transpose(embedding, [1, 0]));
  return { logits, loss: g.crossEntropy(logits, targets) };
}

/** A 2-layer, short-sequence version: the same structure at a size that runs here. */
export const SMOLLM2_TINY: DecoderShape = { layers: 2, hidden: 48, heads: 6, kvHeads: 2, ffn: 96, vocab: 64, seq: 16, ropeTheta: 100000 };

export const smollm2 = model((g) => buildDecoder(g, SMOLLM2_135M), {
  description: 'SmolLM2-135M-shaped decoder (30 layers) from primitives',
  train: { loss: 'loss', optimizer: { kind: 'adamw', lr: 3e-4 } },
});

export const smollm2Tiny = model((g) => buildDecoder(g, SMOLLM2_TINY), {
  description: 'the SmolLM2 structure at toy size (2 layers, hidden 48)',
  train: { loss: 'loss', optimizer: { kind: 'adamw', lr: 1e-3 } },
});
