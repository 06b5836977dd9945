// What a GGUF file's metadata says about its model, in the shape of a HuggingFace
// config.json (the fields the Llama/Qwen2 builders read). The one weight transform the
// conversion to GGUF applied that the builders must undo, llama.cpp's Q/K row permutation,
// lives in runtime/gguf-llama.ts (the runtime's GGUF weight loading needs it too).
import { CompileError } from '../../ir/errors';
import { GgufType, type GgufFile } from '../../../runtime/gguf';

/** The architectures whose `<arch>.*` keys map onto a config (general.architecture values). */
export const GGUF_ARCHITECTURES = ['llama', 'qwen2'] as const;
export type GgufArchitecture = (typeof GGUF_ARCHITECTURES)[number];

/** config.json fields, named as HuggingFace names them. */
export interface GgufModelConfig {
  model_type: GgufArchitecture;
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  /** `<arch>.attention.key_length` when present, else hidden_size / num_attention_heads */
  head_dim: number;
  intermediate_size: number;
  rope_theta: number;
  rms_norm_eps: number;
  max_position_embeddings: number;
  /** GGUF has no key for it: the embedding is tied when the file has no `output.weight` */
  tie_word_embeddings: boolean;
}

function bad(file: GgufFile, message: string): never {
  throw new CompileError('model', `${file.source}: ${message}`);
}

const INTEGER_TYPES: number[] = [GgufType.UINT8, GgufType.INT8, GgufType.UINT16, GgufType.INT16, GgufType.UINT32, GgufType.INT32, GgufType.UINT64, GgufType.INT64];
const FLOAT_TYPES: number[] = [GgufType.FLOAT32, GgufType.FLOAT64];

/** A positive integer under `key` (any integer type: writers differ), or `fallback` when absent. */
function integer(file: GgufFile, key: string, fallback?: () => number): number {
  const entry = file.metadata.get(key);
  if (!entry) return fallback ? fallback() : bad(file, `metadata "${key}" is missing`);
  if (!INTEGER_TYPES.includes(entry.type)) bad(file, `metadata "${key}" should be an integer, not ${entry.type === GgufType.ARRAY ? 'an array (per-layer values are not supported)' : `type ${entry.type}`}`);
  const value = Number(entry.value);
  if (!Number.isSafeInteger(value) || value <= 0) bad(file, `metadata "${key}" is ${entry.value}, not a positive integer`);
  return value;
}

function float(file: GgufFile, key: string, fallback?: number): number {
  const entry = file.metadata.get(key);
  if (!entry) return fallback ?? bad(file, `metadata "${key}" is missing`);
  if (!FLOAT_TYPES.includes(entry.type) && !INTEGER_TYPES.includes(entry.type)) bad(file, `metadata "${key}" should be a number, not type ${entry.type}`);
  const value = Number(entry.value);
  if (!Number.isFinite(value) || value <= 0) bad(file, `metadata "${key}" is ${entry.value}, not a positive number`);
  return value;
}

/** The model's config from `general.architecture` and its `<arch>.*` keys. */
export function ggufModelConfig(file: GgufFile): GgufModelConfig {
  const archEntry = file.metadata.get('general.architecture');
  if (!archEntry) bad(file, 'metadata "general.architecture" is missing');
  const arch = archEntry.value;
  if (typeof arch !== 'string' || !(GGUF_ARCHITECTURES as readonly string[]).includes(arch)) {
    bad(file, `metadata "general.architecture" is ${JSON.stringify(typeof arch === 'bigint' ? String(arch) : arch)}; the model builders know ${GGUF_ARCHITECTURES.join(', ')}`);
  }
  const k = (key: string) => `${arch}.${key}`;
  const hidden = integer(file, k('embedding_length'));
  const heads = integer(file, k('attention.head_count'));
  const headDim = integer(file, k('attention.key_length'), () => {
    if (hidden % heads !== 0) bad(file, `${k('embedding_length')} ${hidden} is not a multiple of ${k('attention.head_count')} ${heads}`);
    return hidden / heads;
  });
  const kvHeads = integer(file, k('attention.head_count_kv'), () => heads);
  if (heads % kvHeads !== 0) bad(file, `${k('attention.head_count')} ${heads} is not a multiple of ${k('attention.head_count_kv')} ${kvHeads}`);
  const vocab = integer(file, k('vocab_size'), () => {
    const tokens = file.metadata.get('tokenizer.ggml.tokens');
    if (tokens?.type === GgufType.ARRAY) return (tokens.value as { values: unknown[] }).values.length;
    const embedding = file.tensors.get('token_embd.weight');
    return embedding ? embedding.ne[1] : bad(file, `neither "${k('vocab_size')}", "tokenizer.ggml.tokens" nor token_embd.weight gives the vocabulary size`);
  });
  return {
    model_type: arch as GgufArchitecture,
    vocab_size: vocab,
    hidden_size: hidden,
    num_hidden_layers: integer(file, k('block_count')),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    intermediate_size: integer(file, k('feed_forward_length')),
    rope_theta: float(file, k('rope.freq_base'), 10000), // llama.cpp's default when absent
    rms_norm_eps: float(file, k('attention.layer_norm_rms_epsilon')),
    max_position_embeddings: integer(file, k('context_length')),
    tie_word_embeddings: !file.tensors.has('output.weight'),
  };
}

// shared with the runtime's GGUF weight loading
export { ropeRowsPermuted, unpermuteRopeRows } from '../../../runtime/gguf-llama';
