// A decoder-only transformer with SmolLM2-135M's shape (hidden 576, 9 query heads sharing
// 3 key/value heads, FFN 1536, vocabulary 49152, 30 layers), written out in the op table's
// primitives: RMSNorm as x·(mean(x²)+eps)^-½·γ, SiLU as x·sigmoid(x), softmax as
// exp/sum/div, attention as matmul/softmax/matmul with a causal mask, embeddings as a
// one-hot product (tied with the LM head). The optimizer's rules must rediscover the fused
// forms. No rotary embeddings: the shape and op mix are what matter here.
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
}

export const SMOLLM2_135M: DecoderShape = { layers: 30, hidden: 576, heads: 9, kvHeads: 3, ffn: 1536, vocab: 49152, seq: 128 };

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

/** [T, H·d] → [H, T, d] */
function splitHeads(g: Graph, x: Tensor, heads: number, seq: number, headDim: number): Tensor {
  return g.transpose(g.reshape(x, [seq, heads, headDim]), [1, 0, 2]);
}

/** Builds the decoder on `g`; returns the logits [T, vocab] and the next-token loss. */
export function buildDecoder(g: Graph, s: DecoderShape): { logits: Tensor; loss: Tensor } {
  const headDim = s.hidden / s.heads;
  const group = s.heads / s.kvHeads;
  const tokens = g.input('tokens', [s.seq], 'i32');
  const targets = g.input('targets', [s.seq], 'i32');
  const embedding = g.parameter('embed', [s.vocab, s.hidden], { init: { normal: 0.02 } });
  let x = g.matmul(g.oneHot(tokens, s.vocab), embedding);

  // causal mask: 0 on and below the diagonal, a large negative above (WGSL has no -inf literal)
  const mask = new Float32Array(s.seq * s.seq);
  for (let i = 0; i < s.seq; i++) for (let j = i + 1; j < s.seq; j++) mask[i * s.seq + j] = -1e9;
  const causal = g.constant(mask, [s.seq, s.seq], 'causal_mask');
  const scale = 1 / Math.sqrt(headDim);

  for (let l = 0; l < s.layers; l++) {
    const p = (name: string, shape: number[], init?: 'ones') => g.parameter(`layers.${l}.${name}`, shape, init ? { init } : { init: { normal: 0.02 } });
    const h = rmsNorm(g, x, p('attn_norm', [s.hidden], 'ones'));
    const q = splitHeads(g, g.matmul(h, p('wq', [s.hidden, s.hidden])), s.heads, s.seq, headDim);
    const kvWidth = s.kvHeads * headDim;
    // grouped-query attention: each key/value head serves `group` query heads
    const shareKv = (t: Tensor) =>
      g.reshape(g.broadcastTo(g.reshape(splitHeads(g, t, s.kvHeads, s.seq, headDim), [s.kvHeads, 1, s.seq, headDim]), [s.kvHeads, group, s.seq, headDim]), [s.heads, s.seq, headDim]);
    const k = shareKv(g.matmul(h, p('wk', [s.hidden, kvWidth])));
    const v = shareKv(g.matmul(h, p('wv', [s.hidden, kvWidth])));
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
export const SMOLLM2_TINY: DecoderShape = { layers: 2, hidden: 48, heads: 6, kvHeads: 2, ffn: 96, vocab: 64, seq: 16 };

export const smollm2 = model((g) => buildDecoder(g, SMOLLM2_135M), {
  description: 'SmolLM2-135M-shaped decoder (30 layers) from primitives',
  train: { loss: 'loss', optimizer: { kind: 'adamw', lr: 3e-4 } },
});

export const smollm2Tiny = model((g) => buildDecoder(g, SMOLLM2_TINY), {
  description: 'the SmolLM2 structure at toy size (2 layers, hidden 48)',
  train: { loss: 'loss', optimizer: { kind: 'adamw', lr: 1e-3 } },
});
