// An independent float64 Llama forward, written from transformers' modeling_llama.py and
// modeling_qwen2.py (not from the builder): the oracle of models/llama.ts's semantics
// (rotate-half rotary embeddings with partial rotary and Llama 3's frequency scaling,
// grouped-query heads as repeat_kv maps them, RMSNorm with its weight, the SiLU-gated MLP,
// the tied head) and its causal-LM loss. Also the seeded random checkpoints the tests load.
import { uniformStream } from '../compiler/ir/init';
import type { SafeTensor } from '../runtime/index';
import type { LlamaShape } from '../models/llama';

export type Weights = Map<string, { shape: number[]; data: Float64Array }>;

/** Every tensor a checkpoint of shape `s` holds, HF's names and layouts, seeded values (stored as f32). */
export function randomCheckpoint(s: LlamaShape, seed: number): Weights {
  const u = uniformStream(seed);
  const weights: Weights = new Map();
  const add = (name: string, shape: number[], center: number, spread: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    // rounded to f32, so the plan and the reference hold the same values
    weights.set(name, { shape, data: Float64Array.from(new Float32Array(Array.from({ length: n }, () => center + spread * (2 * u() - 1)))) });
  };
  const qDim = s.heads * s.headDim;
  const kvDim = s.kvHeads * s.headDim;
  add('model.embed_tokens.weight', [s.vocab, s.hidden], 0, 1);
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    add(`${p}input_layernorm.weight`, [s.hidden], 1, 0.2);
    add(`${p}self_attn.q_proj.weight`, [qDim, s.hidden], 0, 2 / Math.sqrt(s.hidden));
    add(`${p}self_attn.k_proj.weight`, [kvDim, s.hidden], 0, 2 / Math.sqrt(s.hidden));
    add(`${p}self_attn.v_proj.weight`, [kvDim, s.hidden], 0, 1 / Math.sqrt(s.hidden));
    add(`${p}self_attn.o_proj.weight`, [s.hidden, qDim], 0, 1 / Math.sqrt(qDim));
    if (s.qkvBias) {
      add(`${p}self_attn.q_proj.bias`, [qDim], 0, 0.3);
      add(`${p}self_attn.k_proj.bias`, [kvDim], 0, 0.3);
      add(`${p}self_attn.v_proj.bias`, [kvDim], 0, 0.3);
    }
    if (s.outBias) add(`${p}self_attn.o_proj.bias`, [s.hidden], 0, 0.3);
    add(`${p}post_attention_layernorm.weight`, [s.hidden], 1, 0.2);
    add(`${p}mlp.gate_proj.weight`, [s.ffn, s.hidden], 0, 2 / Math.sqrt(s.hidden));
    add(`${p}mlp.up_proj.weight`, [s.ffn, s.hidden], 0, 2 / Math.sqrt(s.hidden));
    add(`${p}mlp.down_proj.weight`, [s.hidden, s.ffn], 0, 1 / Math.sqrt(s.ffn));
  }
  add('model.norm.weight', [s.hidden], 1, 0.2);
  if (!s.tied) add('lm_head.weight', [s.vocab, s.hidden], 0, 2 / Math.sqrt(s.hidden));
  return weights;
}

/** The checkpoint as safetensors tensors (F32). */
export function asSafetensors(weights: Weights): Map<string, SafeTensor> {
  return new Map([...weights].map(([name, w]) => [name, { dtype: 'F32' as const, shape: w.shape, data: new Uint8Array(Float32Array.from(w.data).buffer) }]));
}

/** x [rows, in] · W[out, in]ᵀ (+ b) */
function linear(x: Float64Array, rows: number, w: { shape: number[]; data: Float64Array }, b?: { data: Float64Array }): Float64Array {
  const [out, inner] = w.shape;
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < out; o++) {
      let acc = b ? b.data[o] : 0;
      for (let k = 0; k < inner; k++) acc += x[r * inner + k] * w.data[o * inner + k];
      y[r * out + o] = acc;
    }
  }
  return y;
}

/** LlamaRMSNorm: x · rsqrt(mean(x²) + eps) · weight, per row. */
function rmsNorm(x: Float64Array, rows: number, weight: Float64Array, eps: number): Float64Array {
  const n = weight.length;
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let ms = 0;
    for (let k = 0; k < n; k++) ms += x[r * n + k] ** 2;
    const inv = 1 / Math.sqrt(ms / n + eps);
    for (let k = 0; k < n; k++) y[r * n + k] = x[r * n + k] * inv * weight[k];
  }
  return y;
}

/** inv_freq of the rotary embeddings (rope_init_fn: default, or _compute_llama3_parameters). */
export function inverseFrequencies(s: LlamaShape): Float64Array {
  const half = s.rotaryDim / 2;
  const inv = Float64Array.from({ length: half }, (_, k) => 1 / s.ropeTheta ** ((2 * k) / s.rotaryDim));
  const sc = s.ropeScaling;
  if (!sc) return inv;
  const lowWavelen = sc.originalMaxPositions / sc.lowFreqFactor;
  const highWavelen = sc.originalMaxPositions / sc.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / sc.factor;
    const smooth = (sc.originalMaxPositions / wavelen - sc.lowFreqFactor) / (sc.highFreqFactor - sc.lowFreqFactor);
    return (1 - smooth) * (f / sc.factor) + smooth * f;
  });
}

/** apply_rotary_pos_emb on one head's row at `pos`: q·cos + rotate_half(q)·sin over the rotary features. */
function rotate(row: Float64Array, offset: number, pos: number, inv: Float64Array, rotaryDim: number): void {
  const half = rotaryDim / 2;
  for (let k = 0; k < half; k++) {
    const angle = pos * inv[k];
    const [c, s] = [Math.cos(angle), Math.sin(angle)];
    const a = row[offset + k];
    const b = row[offset + k + half];
    row[offset + k] = a * c - b * s;
    row[offset + k + half] = b * c + a * s;
  }
}

/** LlamaForCausalLM.forward over `tokens` (positions 0 .. T-1, causal): logits [T, vocab]. */
export function referenceLogits(s: LlamaShape, w: Weights, tokens: ArrayLike<number>): Float64Array {
  const T = tokens.length;
  const get = (name: string) => w.get(name)!;
  const embed = get('model.embed_tokens.weight');
  let x = new Float64Array(T * s.hidden);
  for (let t = 0; t < T; t++) x.set(embed.data.subarray(tokens[t] * s.hidden, (tokens[t] + 1) * s.hidden), t * s.hidden);
  const inv = inverseFrequencies(s);
  const hd = s.headDim;
  const group = s.heads / s.kvHeads;
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    const h = rmsNorm(x, T, get(`${p}input_layernorm.weight`).data, s.eps);
    const q = linear(h, T, get(`${p}self_attn.q_proj.weight`), w.get(`${p}self_attn.q_proj.bias`));
    const k = linear(h, T, get(`${p}self_attn.k_proj.weight`), w.get(`${p}self_attn.k_proj.bias`));
    const v = linear(h, T, get(`${p}self_attn.v_proj.weight`), w.get(`${p}self_attn.v_proj.bias`));
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < s.heads; j++) rotate(q, (t * s.heads + j) * hd, t, inv, s.rotaryDim);
      for (let j = 0; j < s.kvHeads; j++) rotate(k, (t * s.kvHeads + j) * hd, t, inv, s.rotaryDim);
    }
    // repeat_kv: query head j reads key/value head floor(j / group)
    const attn = new Float64Array(T * s.heads * hd);
    for (let j = 0; j < s.heads; j++) {
      const kv = Math.floor(j / group);
      for (let t = 0; t < T; t++) {
        const scores = Array.from({ length: t + 1 }, (_, u) => {
          let dot = 0;
          for (let c = 0; c < hd; c++) dot += q[(t * s.heads + j) * hd + c] * k[(u * s.kvHeads + kv) * hd + c];
          return dot / Math.sqrt(hd);
        });
        const m = Math.max(...scores);
        const e = scores.map((z) => Math.exp(z - m));
        const sum = e.reduce((a, b) => a + b, 0);
        for (let c = 0; c < hd; c++) {
          let acc = 0;
          for (let u = 0; u <= t; u++) acc += (e[u] / sum) * v[(u * s.kvHeads + kv) * hd + c];
          attn[(t * s.heads + j) * hd + c] = acc;
        }
      }
    }
    const o = linear(attn, T, get(`${p}self_attn.o_proj.weight`), w.get(`${p}self_attn.o_proj.bias`));
    x = x.map((xi, i) => xi + o[i]);
    const f = rmsNorm(x, T, get(`${p}post_attention_layernorm.weight`).data, s.eps);
    const gate = linear(f, T, get(`${p}mlp.gate_proj.weight`), w.get(`${p}mlp.gate_proj.bias`));
    const up = linear(f, T, get(`${p}mlp.up_proj.weight`), w.get(`${p}mlp.up_proj.bias`));
    const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
    const down = linear(act, T, get(`${p}mlp.down_proj.weight`), w.get(`${p}mlp.down_proj.bias`));
    x = x.map((xi, i) => xi + down[i]);
  }
  const final = rmsNorm(x, T, get('model.norm.weight').data, s.eps);
  return linear(final, T, s.tied ? embed : get('lm_head.weight'));
}

/**
 * LlamaForCausalLM's loss with labels = input_ids: the logits at positions 0 .. T-2 against the
 * tokens at 1 .. T-1, mean cross-entropy (log-sum-exp over the vocabulary, shifted by its maximum).
 */
export function referenceLoss(s: LlamaShape, w: Weights, tokens: ArrayLike<number>): number {
  const logits = referenceLogits(s, w, tokens);
  let sum = 0;
  for (let t = 0; t + 1 < tokens.length; t++) {
    const row = logits.subarray(t * s.vocab, (t + 1) * s.vocab);
    const m = row.reduce((a, b) => Math.max(a, b), -Infinity);
    const lse = m + Math.log(row.reduce((a, z) => a + Math.exp(z - m), 0));
    sum += lse - row[tokens[t + 1]];
  }
  return sum / (tokens.length - 1);
}
