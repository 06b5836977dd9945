// The Llama family in GGUF files, as the compiler's GGUF frontend and the runtime's weight
// loading both need it: GGUF's tensor names for HuggingFace's parameter names (the builders in
// models/ name parameters as HF checkpoints do), and the one weight transform llama.cpp's
// converter applies that a HF-layout model must undo, the Q/K row permutation.
import { PlanError } from './errors';

const FIXED_NAMES: Readonly<Record<string, string>> = { 'model.embed_tokens.weight': 'token_embd.weight', 'model.norm.weight': 'output_norm.weight', 'lm_head.weight': 'output.weight' };
const LAYER_PARTS: Readonly<Record<string, string>> = {
  input_layernorm: 'attn_norm',
  'self_attn.q_proj': 'attn_q',
  'self_attn.k_proj': 'attn_k',
  'self_attn.v_proj': 'attn_v',
  'self_attn.o_proj': 'attn_output',
  post_attention_layernorm: 'ffn_norm',
  'mlp.gate_proj': 'ffn_gate',
  'mlp.up_proj': 'ffn_up',
  'mlp.down_proj': 'ffn_down',
};
const HF_FIXED = Object.fromEntries(Object.entries(FIXED_NAMES).map(([hf, gguf]) => [gguf, hf]));
const HF_PARTS = Object.fromEntries(Object.entries(LAYER_PARTS).map(([hf, gguf]) => [gguf, hf]));

/** GGUF's tensor name for one of the builders' (HF's) parameter names; undefined for a name it does not map. */
export function ggufTensorName(hfName: string): string | undefined {
  if (FIXED_NAMES[hfName]) return FIXED_NAMES[hfName];
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hfName);
  return m && LAYER_PARTS[m[2]] ? `blk.${m[1]}.${LAYER_PARTS[m[2]]}.${m[3]}` : undefined;
}

/** HF's parameter name for a GGUF tensor name (token_embd.weight, blk.N.attn_q.weight, …); undefined for one it does not map. */
export function hfParameterName(ggufName: string): string | undefined {
  if (HF_FIXED[ggufName]) return HF_FIXED[ggufName];
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(ggufName);
  return m && HF_PARTS[m[2]] ? `model.layers.${m[1]}.${HF_PARTS[m[2]]}.${m[3]}` : undefined;
}

/**
 * Whether llama.cpp's converter permuted this architecture's Q and K rows: it does for
 * `llama` (its RoPE rotates adjacent pairs), not for `qwen2` (NEOX-style RoPE, as HF's).
 */
export function ropeRowsPermuted(arch: string): boolean {
  return arch === 'llama';
}

/**
 * Undoes llama.cpp's Q/K row permutation. HF's RoPE (rotate_half) pairs element i of a head
 * with element i + d/2; llama.cpp's rotates adjacent pairs (2i, 2i+1), so its converter
 * reorders the rows of attn_q (with n_head heads) and attn_k (with n_head_kv heads), weights
 * and biases alike:
 *
 *   permute(W, n) = W.reshape(n, 2, d/2, ...).swapaxes(1, 2).reshape(W.shape)
 *   i.e. GGUF row h·d + 2i + j  ←  HF row h·d + j·d/2 + i      (h < n, i < d/2, j < 2)
 *
 * Given the GGUF tensor as a row-major [rows, cols] array (rows = n·d output features; a
 * Linear weight's GGUF ne is [cols, rows], the same bytes), this returns HF's row order.
 * Packed bytes work as well as values: a row of blocks moves whole (cols = bytes per row).
 */
export function unpermuteRopeRows<T extends Float32Array | Uint8Array>(values: T, rows: number, heads: number): T {
  const cols = values.length / rows;
  const d = rows / heads;
  if (!Number.isInteger(cols) || !Number.isInteger(d) || d % 2 !== 0) {
    throw new PlanError('bad-input', `cannot undo the RoPE row permutation of ${values.length} values as ${rows} rows of ${heads} heads (head size must be even)`);
  }
  const out = (values instanceof Uint8Array ? new Uint8Array(values.length) : new Float32Array(values.length)) as T;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < d / 2; i++) {
      for (let j = 0; j < 2; j++) {
        const from = (h * d + 2 * i + j) * cols;
        out.set(values.subarray(from, from + cols), (h * d + j * (d / 2) + i) * cols);
      }
    }
  }
  return out;
}
