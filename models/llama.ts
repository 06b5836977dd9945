// The Llama family's decoder (LlamaForCausalLM, SmolLM2, Qwen2ForCausalLM with its q/k/v
// biases, MistralForCausalLM) built from a HuggingFace config.json. Parameters carry the
// checkpoint's names and layouts (projections [out, in], read through a transposed product),
// so Session.loadWeights reads a model.safetensors as it is, with no renaming or transposes.
//
// Three graphs share one set of parameters and the KV cache (state buffers [kvHeads, S, d]):
//   forward  tokens [T] → logits [T, vocab], causal over the whole sequence (the reference)
//   prefill  prompt [P] i32, length [1] f32 → prefill_logits [1, vocab] at position length-1;
//            writes the prompt's keys and values at rows 0 .. P-1 of the cache
//   decode   token [1] i32, position [1] f32 → logits [1, vocab]; writes its key and value at
//            row `position` and attends over rows 0 .. position (the attention's run-time key
//            count: later rows are never read)
// With `decodeBatch: B` the cache holds B sequences (slots) and the entries are instead
//   prefill       prompt, length as above and slot [1] f32 → prefill_logits; writes the slot's rows
//   decode_batch  tokens [B] i32, positions [B] f32 → batch_logits [B, vocab]: row b decodes slot
//                 b's token at its position (a negative position: slot b is idle, writes nothing)
// one set of dispatches for all B rows (the projections are [B, hidden] products); each row
// attends over its own slot's rows 0 .. position. The cache is [B, kvHeads, S, d] per layer;
// both entries write it through cacheWrite's per-row offsets, and decode_batch keeps the
// projections' [B, heads, d] layout throughout (no transposes).
// With `train`, the forward graph also gives 'loss', LlamaForCausalLM's with labels = input_ids:
// mean cross-entropy of the logits at positions 0 .. T-2 against the tokens at 1 .. T-1; and
// llamaModel compiles a train_step entry minimising it (AdamW unless told otherwise).
// Grouped-query attention reads each key/value head once: q is [kvHeads, group, T, d] and k, v
// [kvHeads, 1, S, d], whose batch axis the attention kernel broadcasts (no copies per head).
import { model, type EntrySpec, type Graph, type ModelDefinition, type OptimizerSpec, type Tensor, type WeightStorage } from 'mnc';

/** The config.json keys the builder reads (classic and newer spellings). */
export interface HfLlamaConfig {
  architectures?: string[];
  model_type?: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number;
  rms_norm_eps?: number;
  max_position_embeddings?: number;
  tie_word_embeddings?: boolean;
  attention_bias?: boolean;
  mlp_bias?: boolean;
  hidden_act?: string;
  partial_rotary_factor?: number;
  rope_theta?: number;
  rope_scaling?: HfRopeParameters | null;
  rope_parameters?: HfRopeParameters | null;
  torch_dtype?: string;
  dtype?: string;
}

/** rope_scaling (classic) or rope_parameters (transformers ≥ 4.56, which also holds rope_theta). */
export interface HfRopeParameters {
  rope_type?: string;
  type?: string;
  rope_theta?: number;
  partial_rotary_factor?: number;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

/** The decoder's shape, normalised from a config. */
export interface LlamaShape {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  eps: number;
  ropeTheta: number;
  rotaryDim: number;
  ropeScaling?: { kind: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };
  tied: boolean;
  /** bias on the q, k, v projections (Qwen2, attention_bias) */
  qkvBias: boolean;
  /** bias on the output projection (attention_bias) */
  outBias: boolean;
  mlpBias: boolean;
  maxPositions: number;
  /** the checkpoint's stored dtype (weights are widened to f32 when loaded) */
  dtype: string;
}

const ARCHITECTURES = ['LlamaForCausalLM', 'Qwen2ForCausalLM', 'MistralForCausalLM'];

/** Reads a config.json object; refuses what the builder does not implement, naming the key. */
export function llamaShape(config: HfLlamaConfig): LlamaShape {
  const fail = (message: string): never => {
    throw new Error(`config.json: ${message}`);
  };
  const arch = config.architectures?.[0];
  if (arch !== undefined && !ARCHITECTURES.includes(arch)) fail(`architecture ${arch} is not one the Llama builder makes (${ARCHITECTURES.join(', ')})`);
  const int = (key: keyof HfLlamaConfig, value = config[key]): number => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) fail(`${key} must be a positive integer; got ${JSON.stringify(value)}`);
    return value as number;
  };
  const qwen = config.model_type === 'qwen2' || arch === 'Qwen2ForCausalLM';
  const heads = int('num_attention_heads');
  const hidden = int('hidden_size');
  const kvHeads = int('num_key_value_heads', config.num_key_value_heads ?? heads);
  if (heads % kvHeads !== 0) fail(`num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kvHeads})`);
  const headDim = int('head_dim', config.head_dim ?? hidden / heads);
  if (config.hidden_act !== undefined && config.hidden_act !== 'silu') fail(`hidden_act ${config.hidden_act} is not supported (silu only)`);
  const rope = config.rope_parameters ?? config.rope_scaling ?? undefined;
  const ropeType = rope?.rope_type ?? rope?.type ?? 'default';
  const ropeTheta = config.rope_parameters?.rope_theta ?? config.rope_theta ?? 10000;
  const partial = rope?.partial_rotary_factor ?? config.partial_rotary_factor ?? 1;
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) fail(`partial_rotary_factor ${partial} of head_dim ${headDim} gives ${rotaryDim} rotary features; it must be even and at least 2`);
  let ropeScaling: LlamaShape['ropeScaling'];
  if (ropeType === 'llama3') {
    const need = (key: keyof HfRopeParameters) => (typeof rope![key] === 'number' ? (rope![key] as number) : fail(`rope ${key} is missing for rope_type llama3`));
    ropeScaling = {
      kind: 'llama3',
      factor: need('factor'),
      lowFreqFactor: need('low_freq_factor'),
      highFreqFactor: need('high_freq_factor'),
      originalMaxPositions: need('original_max_position_embeddings'),
    };
  } else if (ropeType !== 'default') fail(`rope_type ${ropeType} is not supported (default, llama3)`);
  const attentionBias = config.attention_bias ?? false;
  return {
    layers: int('num_hidden_layers'),
    hidden,
    heads,
    kvHeads,
    headDim,
    ffn: int('intermediate_size'),
    vocab: int('vocab_size'),
    eps: config.rms_norm_eps ?? 1e-6,
    ropeTheta,
    rotaryDim,
    ...(ropeScaling ? { ropeScaling } : {}),
    tied: config.tie_word_embeddings ?? false,
    qkvBias: qwen || attentionBias,
    outBias: !qwen && attentionBias,
    mlpBias: config.mlp_bias ?? false,
    maxPositions: config.max_position_embeddings ?? 2048,
    dtype: config.dtype ?? config.torch_dtype ?? 'float32',
  };
}

/** What to build: the full-sequence forward and/or the cached prefill and decode. */
export interface LlamaOptions {
  /** tokens of the full-sequence forward (output 'forward_logits'); absent: none */
  forward?: number;
  /** the KV cache's rows (prefill + decode positions); absent: no prefill or decode */
  maxSequence?: number;
  /** prompt tokens per prefill (default maxSequence) */
  maxPrompt?: number;
  /**
   * sequences the cache holds (slots), decoded together by a 'decode_batch' entry in place of
   * 'decode'; prefill then takes the slot to fill. Absent: one sequence.
   */
  decodeBatch?: number;
  /**
   * the causal-LM loss over the forward graph's tokens (output 'loss'; needs `forward`), and for
   * llamaModel the optimizer of its train_step (default AdamW, lr 3e-4, PyTorch's other defaults)
   */
  train?: boolean | { optimizer: OptimizerSpec };
  /** initial values of the parameters (default: normal(0.02) projections, unit norms); loadWeights replaces them */
  init?: 'random' | 'zeros';
  /**
   * Makes a parameter from a file instead (a GGUF model's, say): given HF's name, the shape
   * and the parameter's role, a tensor of that shape, or undefined for the default above.
   * A linear weight may be packed (g.packedParameter): linear() then multiplies with
   * matmulQuantized, reading the blocks in place. The embedding may be f16 or bf16 (gathered,
   * and as a tied head multiplied, in-kernel); norms and biases must be f32.
   */
  parameter?: (name: string, shape: number[], role: LlamaParameterRole) => Tensor | undefined;
}

/** What a parameter is to the decoder: a projection [out, in], the token embedding, a norm's weight or a bias. */
export type LlamaParameterRole = 'linear' | 'embedding' | 'norm' | 'bias';

/** The optimizer of a training plan whose options do not name one. */
export const DEFAULT_OPTIMIZER: OptimizerSpec = { kind: 'adamw', lr: 3e-4 };

/** The plan's entry points for the outputs llama() returns (the loss's train_step comes from the training spec). */
export function llamaEntries(options: LlamaOptions): EntrySpec {
  return {
    ...(options.forward ? { forward: ['forward_logits'] } : {}),
    ...(options.maxSequence ? { prefill: ['prefill_logits'], ...(options.decodeBatch ? { decode_batch: ['batch_logits'] } : { decode: ['logits'] }) } : {}),
  };
}

interface Layer {
  inputNorm: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  qBias?: Tensor;
  kBias?: Tensor;
  vBias?: Tensor;
  oBias?: Tensor;
  postNorm: Tensor;
  gate: Tensor;
  up: Tensor;
  down: Tensor;
  gateBias?: Tensor;
  upBias?: Tensor;
  downBias?: Tensor;
}

/** Builds the decoder's parameters and the graphs `options` asks for; returns their outputs. */
export function llama(g: Graph, config: HfLlamaConfig | LlamaShape, options: LlamaOptions): Record<string, Tensor> {
  const s = 'layers' in config ? config : llamaShape(config);
  const zeros = options.init === 'zeros';
  const made = (name: string, shape: number[], role: LlamaParameterRole, fallback: () => Tensor): Tensor => {
    const t = options.parameter?.(name, shape, role);
    if (!t) return fallback();
    if (t.shape.join() !== shape.join()) throw new Error(`parameter ${name}: the builder needs shape [${shape}], got [${t.shape}]`);
    const sixteenBit = t.dtype === 'f16' || t.dtype === 'bf16';
    if (role !== 'linear' && t.dtype !== 'f32' && !(role === 'embedding' && sixteenBit)) {
      throw new Error(`parameter ${name}: a ${role} must be f32${role === 'embedding' ? ', f16 or bf16' : ''}, got ${t.dtype}`);
    }
    return t;
  };
  const projection = (role: 'linear' | 'embedding') => (name: string, shape: number[]) =>
    made(name, shape, role, () => g.parameter(name, shape, { init: zeros ? 'zeros' : { normal: 0.02 } }));
  const weight = projection('linear');
  const ones = (name: string, shape: number[]) => made(name, shape, 'norm', () => g.parameter(name, shape, { init: 'ones' }));
  const bias = (name: string, n: number) => made(name, [n], 'bias', () => g.parameter(name, [n], { init: 'zeros' }));
  const qDim = s.heads * s.headDim;
  const kvDim = s.kvHeads * s.headDim;
  const embed = projection('embedding')('model.embed_tokens.weight', [s.vocab, s.hidden]);
  const layers: Layer[] = Array.from({ length: s.layers }, (_, l) => {
    const p = `model.layers.${l}.`;
    return {
      inputNorm: ones(`${p}input_layernorm.weight`, [s.hidden]),
      q: weight(`${p}self_attn.q_proj.weight`, [qDim, s.hidden]),
      k: weight(`${p}self_attn.k_proj.weight`, [kvDim, s.hidden]),
      v: weight(`${p}self_attn.v_proj.weight`, [kvDim, s.hidden]),
      o: weight(`${p}self_attn.o_proj.weight`, [s.hidden, qDim]),
      ...(s.qkvBias ? { qBias: bias(`${p}self_attn.q_proj.bias`, qDim), kBias: bias(`${p}self_attn.k_proj.bias`, kvDim), vBias: bias(`${p}self_attn.v_proj.bias`, kvDim) } : {}),
      ...(s.outBias ? { oBias: bias(`${p}self_attn.o_proj.bias`, s.hidden) } : {}),
      postNorm: ones(`${p}post_attention_layernorm.weight`, [s.hidden]),
      gate: weight(`${p}mlp.gate_proj.weight`, [s.ffn, s.hidden]),
      up: weight(`${p}mlp.up_proj.weight`, [s.ffn, s.hidden]),
      down: weight(`${p}mlp.down_proj.weight`, [s.hidden, s.ffn]),
      ...(s.mlpBias ? { gateBias: bias(`${p}mlp.gate_proj.bias`, s.ffn), upBias: bias(`${p}mlp.up_proj.bias`, s.ffn), downBias: bias(`${p}mlp.down_proj.bias`, s.hidden) } : {}),
    };
  });
  const finalNorm = ones('model.norm.weight', [s.hidden]);
  const head = s.tied ? embed : weight('lm_head.weight', [s.vocab, s.hidden]);

  /** x [T, in] · Wᵀ (+ b): W as the checkpoint stores it, [out, in]; a packed W dequantized as the kernel reads it */
  const linear = (x: Tensor, w: Tensor, b?: Tensor) => {
    const y = w.dtype === 'f32' ? g.matmul(x, g.transpose(w, [1, 0])) : g.matmulQuantized(x, w);
    return b ? g.add(y, b) : y;
  };
  const group = s.heads / s.kvHeads;
  const scale = 1 / Math.sqrt(s.headDim);
  const rope = (t: Tensor, positions: Tensor) => g.rope(t, positions, { theta: s.ropeTheta, rotaryDim: s.rotaryDim, ...(s.ropeScaling ? { scaling: s.ropeScaling } : {}) });

  /**
   * One decoder pass over x [T, hidden] at `positions` ([T, 1], broadcast over heads); `attend`
   * gets q [kvHeads, group, T, d], k and v [kvHeads, T, d] of layer l (and in `rows`, k and v
   * [T, kvHeads, d] as the projections make them) and returns [kvHeads, group, T, d];
   * with layout 'rows' (T sequences of one token each) q [T, heads, d], k and v [T, kvHeads, d]
   * as the projections make them, returning [T, heads, d]: no transposes.
   */
  const decoder = (x: Tensor, positions: Tensor, attend: (l: number, q: Tensor, k: Tensor, v: Tensor, rows: { k: Tensor; v: Tensor }) => Tensor, layout: 'heads' | 'rows' = 'heads'): Tensor => {
    const t = x.shape[0];
    const byRow = layout === 'rows';
    // [T, n, d] ↔ [n, T, d]; for one token (decode) the same bytes, so a view instead of a copy
    const swap = (y: Tensor) => (byRow ? y : t === 1 ? g.reshape(y, [y.shape[1], y.shape[0], y.shape[2]]) : g.transpose(y, [1, 0, 2]));
    layers.forEach((w, l) => {
      const h = g.rmsNorm(x, w.inputNorm, { eps: s.eps });
      // [T, heads·d] viewed as [T, heads, d]: rope reads rows there, then heads move first
      const heads = (y: Tensor, n: number) => g.reshape(y, [t, n, s.headDim]);
      const q = swap(rope(heads(linear(h, w.q, w.qBias), s.heads), positions));
      const kRows = rope(heads(linear(h, w.k, w.kBias), s.kvHeads), positions);
      const vRows = heads(linear(h, w.v, w.vBias), s.kvHeads);
      // query head j uses key/value head floor(j / group), as HF's repeat_kv
      const attended = attend(l, byRow ? q : g.reshape(q, [s.kvHeads, group, t, s.headDim]), swap(kRows), swap(vRows), { k: kRows, v: vRows });
      const merged = g.reshape(byRow ? attended : swap(g.reshape(attended, [s.heads, t, s.headDim])), [t, qDim]);
      x = g.add(x, linear(merged, w.o, w.oBias));
      const f = g.rmsNorm(x, w.postNorm, { eps: s.eps });
      const gated = g.swiglu(linear(f, w.gate, w.gateBias), linear(f, w.up, w.upBias));
      x = g.add(x, linear(gated, w.down, w.downBias));
    });
    return x;
  };
  const logitsOf = (x: Tensor) => linear(g.rmsNorm(x, finalNorm, { eps: s.eps }), head);
  const iota = (n: number, shape: number[], name: string) => g.constant(Float32Array.from({ length: n }, (_, i) => i), shape, name);
  /** the additive mask [rows, keys]: 0 where key j ≤ row i + offset, -1e9 elsewhere (WGSL has no -inf literal) */
  const causalMask = (rows: number, keys: number, name: string) => {
    const m = new Float32Array(rows * keys);
    for (let i = 0; i < rows; i++) for (let j = i + 1; j < keys; j++) m[i * keys + j] = -1e9;
    return g.constant(m, [rows, keys], name);
  };
  const kvBatch = (t: Tensor) => g.reshape(t, [s.kvHeads, 1, t.shape[1], s.headDim]);
  const outputs: Record<string, Tensor> = {};

  if (options.forward) {
    const n = options.forward;
    const tokens = g.input('tokens', [n], 'i32');
    const mask = causalMask(n, n, 'forward_causal_mask');
    const x = decoder(g.embedding(embed, tokens), iota(n, [n, 1], 'forward_positions'), (_, q, k, v) => g.attention(q, kvBatch(k), kvBatch(v), mask, { scale }));
    outputs.forward_logits = logitsOf(x);
    if (options.train) {
      if (n < 2) throw new Error(`training needs at least 2 tokens per sequence (forward: ${n})`);
      // logits at 0 .. T-2 against tokens 1 .. T-1; the head reads only the rows the loss uses
      const next = g.slice(tokens, 0, 1, n);
      outputs.loss = g.crossEntropy(logitsOf(g.slice(x, 0, 0, n - 1)), next);
    }
  } else if (options.train) {
    throw new Error('train needs forward (the tokens per training sequence)');
  }

  if (options.maxSequence) {
    const S = options.maxSequence;
    const P = options.maxPrompt ?? S;
    if (P > S) throw new Error(`maxPrompt (${P}) exceeds maxSequence (${S})`);
    const B = options.decodeBatch;
    if (B !== undefined && (!Number.isInteger(B) || B < 1)) throw new Error(`decodeBatch must be a positive integer; got ${B}`);
    if (B === undefined) Object.assign(outputs, singleSequence(S, P));
    else Object.assign(outputs, batchOfSequences(S, P, B));
  } else if (options.decodeBatch !== undefined) {
    throw new Error('decodeBatch needs maxSequence (the rows of each slot of the cache)');
  }
  return outputs;

  /** prefill and decode over a cache of one sequence, [kvHeads, S, d] per layer */
  function singleSequence(S: number, P: number): Record<string, Tensor> {
    const caches = layers.map((_, l) => ({ k: g.state(`cache.${l}.k`, [s.kvHeads, S, s.headDim]), v: g.state(`cache.${l}.v`, [s.kvHeads, S, s.headDim]) }));
    // attention reads the cache after the write, so the write runs first; it reads only the
    // rows 0 .. keyCount-1 (prefill: the prompt's length, under the causal mask; decode:
    // position + 1), so a decode at 128 of a 2048-row cache reads 129 rows
    const cached = (l: number, q: Tensor, k: Tensor, v: Tensor, at: Tensor, mask: Tensor, keyCount: Tensor) =>
      g.attention(q, kvBatch(g.cacheWrite(caches[l].k, k, at)), kvBatch(g.cacheWrite(caches[l].v, v, at)), mask, { scale, keyCount });

    // the prompt's keys and values go in as the projections make them, [P·kvHeads, d], each row
    // to its own cache row (head h, position p: h·S + p, the cache as [kvHeads·S, d]): no
    // transpose to heads-first, and the k/v products can store straight into the cache
    const prompt = g.input('prompt', [P], 'i32');
    const length = g.input('length', [1]);
    const promptRows = g.constant(Float32Array.from({ length: P * s.kvHeads }, (_, i) => (i % s.kvHeads) * S + Math.floor(i / s.kvHeads)), [P * s.kvHeads], 'prefill_cache_rows');
    const byRows = (t: Tensor) => g.reshape(t, [P * s.kvHeads, s.headDim]);
    const prefillMask = causalMask(P, S, 'prefill_mask');
    const hidden = decoder(g.embedding(embed, prompt), iota(P, [P, 1], 'prefill_positions'), (l, q, _k, _v, rows) => cached(l, q, byRows(rows.k), byRows(rows.v), promptRows, prefillMask, length));

    const token = g.input('token', [1], 'i32');
    const position = g.input('position', [1]);
    const keys = g.add(position, 1);
    const noMask = g.constant(0, [], 'decode_mask');
    const decoded = decoder(g.embedding(embed, token), g.reshape(position, [1, 1]), (l, q, k, v) => cached(l, q, k, v, position, noMask, keys));
    return { prefill_logits: lastPromptLogits(hidden, length, P), logits: logitsOf(decoded) };
  }

  /** prefill of one slot and decode_batch of all B over a cache of B slots, [B, kvHeads, S, d] per layer */
  function batchOfSequences(S: number, P: number, B: number): Record<string, Tensor> {
    const caches = layers.map((_, l) => ({ k: g.state(`cache.${l}.k`, [B, s.kvHeads, S, s.headDim]), v: g.state(`cache.${l}.v`, [B, s.kvHeads, S, s.headDim]) }));
    // both entries write rows [n, d] at one cache row each (cacheWrite's per-row offsets), the
    // cache read as [B·kvHeads·S, d]: slot b, head h, position p is row (b·kvHeads + h)·S + p
    const flat = (t: Tensor) => g.reshape(t, [t.shape.length === 3 ? t.shape[0] * t.shape[1] : t.shape[0], s.headDim]);
    const cacheRows = B * s.kvHeads * S;

    // prefill: the prompt's rows go to the slot's rows 0 .. P-1; attention reads them back from
    // the written cache (a gather of P rows per head), which orders the write before the read
    const prompt = g.input('prompt', [P], 'i32');
    const length = g.input('length', [1]);
    const slot = g.input('slot', [1]);
    const headRows = g.constant(Float32Array.from({ length: s.kvHeads * P }, (_, i) => Math.floor(i / P) * S + (i % P)), [s.kvHeads, P], 'prefill_head_rows');
    const promptRows = g.add(headRows, g.mul(slot, s.kvHeads * S));
    const promptIds = g.cast(promptRows, 'i32');
    const promptOffsets = g.reshape(promptRows, [s.kvHeads * P]);
    const readBack = (cache: Tensor) => kvBatch(g.embedding(g.reshape(cache, [cacheRows, s.headDim]), promptIds));
    const promptMask = causalMask(P, P, 'prefill_mask');
    const hidden = decoder(g.embedding(embed, prompt), iota(P, [P, 1], 'prefill_positions'), (l, q, k, v) =>
      g.attention(q, readBack(g.cacheWrite(caches[l].k, flat(k), promptOffsets)), readBack(g.cacheWrite(caches[l].v, flat(v), promptOffsets)), promptMask, { scale, keyCount: length }),
    );

    // decode_batch: row b's keys and values go to its slot's row position[b] (an idle row's past
    // the cache's end, dropped); it attends over its slot's rows 0 .. position[b] (a key count
    // per slot; an idle row's is 0, its attention zeros), the cache viewed as
    // [B, kvHeads, 1, S, d] against q [B, kvHeads, group, 1, d]: the projections' own layout
    const tokens = g.input('tokens', [B], 'i32');
    const positions = g.input('positions', [B]);
    const column = g.reshape(positions, [B, 1]);
    const slotRows = g.constant(Float32Array.from({ length: B * s.kvHeads }, (_, i) => i * S), [B, s.kvHeads], 'decode_slot_rows');
    const writeRows = g.reshape(g.where(g.less(column, 0), cacheRows, g.add(slotRows, column)), [B * s.kvHeads]);
    const slotKeys = (cache: Tensor) => g.reshape(cache, [B, s.kvHeads, 1, S, s.headDim]);
    const keyCounts = g.reshape(g.add(column, 1), [B, 1, 1]);
    const noMask = g.constant(0, [], 'decode_mask');
    const decoded = decoder(
      g.embedding(embed, tokens),
      column,
      (l, q, k, v) => {
        const attended = g.attention(
          g.reshape(q, [B, s.kvHeads, group, 1, s.headDim]),
          slotKeys(g.cacheWrite(caches[l].k, flat(k), writeRows)),
          slotKeys(g.cacheWrite(caches[l].v, flat(v), writeRows)),
          noMask,
          { scale, keyCount: keyCounts },
        );
        return g.reshape(attended, [B, s.heads, s.headDim]);
      },
      'rows',
    );
    return { prefill_logits: lastPromptLogits(hidden, length, P), batch_logits: logitsOf(decoded) };
  }

  /** the logits of the row at length - 1, as a one-hot sum over the rows (length is a run-time value) */
  function lastPromptLogits(hidden: Tensor, length: Tensor, P: number): Tensor {
    const last = g.equal(iota(P, [P, 1], 'prefill_rows'), g.sub(length, 1));
    return logitsOf(g.sum(g.mul(hidden, last), 0, { keepDims: true }));
  }
}

/** llamaModel's options: the graphs to build, and how the plan holds the weights. */
export interface LlamaModelOptions extends LlamaOptions {
  /**
   * f16 or bf16: the projections, the embedding and the head held at 2 bytes a value and read
   * in-kernel (half the bytes per decoded token); norms and biases stay f32. Inference only.
   * `--weights`/loadWeights round an f32, f16 or bf16 checkpoint into it. Default f32.
   */
  weightStorage?: WeightStorage;
}

/** A model definition for `mnc compile`: the config and options fixed, entries named. */
export function llamaModel(config: HfLlamaConfig, options: LlamaModelOptions, description?: string): ModelDefinition {
  const { weightStorage, ...graphs } = options;
  const optimizer = typeof graphs.train === 'object' ? graphs.train.optimizer : DEFAULT_OPTIMIZER;
  return model((g) => llama(g, config, graphs), {
    description: description ?? 'a Llama-family decoder from config.json',
    entries: llamaEntries(graphs),
    ...(graphs.train ? { train: { loss: 'loss', optimizer } } : {}),
    ...(weightStorage ? { weightStorage } : {}),
  });
}
