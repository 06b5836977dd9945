// The test tooling's half of llama.cpp's convert_hf_to_gguf.py for tokenizers: a HuggingFace
// tokenizer.json (+ tokenizer_config.json) written as `tokenizer.ggml.*` metadata the way the
// converter writes it, so tests can check the rebuild in runtime/text/gguf-tokenizer.ts against
// the original files.
//
//   gpt2 (_set_vocab_gpt2): tokens in id order (ids the vocabulary lacks up to vocabSize become
//   "[PAD<id>]", user-defined), added tokens control when special or when they look special
//   (<|…|>), else user-defined with ▁ written as a space; merges as "left right"; pre named by
//   the caller (the converter recognises it by hashing the tokenizer's output).
//
//   llama (_set_vocab_sentencepiece): the converter reads tokenizer.model, which the fixtures do
//   not carry; its piece scores are recovered from tokenizer.json's merges, which HuggingFace
//   derived from those scores (a merge's rank orders its result's score): score = -(rank of the
//   first merge making the token), 0 for tokens no merge makes. Types: <unk> unknown, special
//   added tokens control, <0xXX> byte, the rest normal.
//
// Special token ids come from tokenizer_config.json's bos/eos/unk/pad tokens, add_bos_token and
// add_eos_token where it says, and its chat_template (SpecialVocab's behaviour).
import { GgufType, type GgufMetadataEntry } from '../runtime/gguf';
import { GGUF_TOKEN_TYPE } from '../runtime/text/gguf-tokenizer';
import { meta } from './gguf-writer';

interface HfAddedToken {
  id: number;
  content: string;
  special: boolean;
}

export interface VocabConversion {
  tokenizer: { model: { vocab: Record<string, number>; merges: (string | [string, string])[] }; added_tokens: HfAddedToken[]; normalizer?: { type: string; normalizers?: { type: string }[] } | null };
  config: Record<string, unknown>;
  model: 'gpt2' | 'llama';
  /** gpt2: tokenizer.ggml.pre */
  pre?: string;
  /** gpt2: config.json's vocab_size, when larger than the tokenizer's */
  vocabSize?: number;
}

const looksSpecial = (text: string) => ['<pad>', '<mask>'].includes(text) || (text.startsWith('<|') && text.endsWith('|>')) || (text.startsWith('<｜') && text.endsWith('｜>'));

const tokenText = (value: unknown): string | undefined =>
  typeof value === 'string' ? value : typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string' ? (value as { content: string }).content : undefined;

/** The `tokenizer.ggml.*` and `tokenizer.chat_template` entries for a tokenizer. */
export function tokenizerMetadata(c: VocabConversion): [string, GgufMetadataEntry][] {
  const byId = new Map<number, string>();
  for (const [text, id] of Object.entries(c.tokenizer.model.vocab)) byId.set(id, text);
  const added = new Map(c.tokenizer.added_tokens.map((t) => [t.id, t]));
  for (const t of c.tokenizer.added_tokens) byId.set(t.id, t.content);
  let n = c.vocabSize ?? 0;
  for (const id of byId.keys()) n = Math.max(n, id + 1);
  const tokens: string[] = [];
  const types = new Int32Array(n);
  for (let id = 0; id < n; id++) {
    const text = byId.get(id);
    const a = added.get(id);
    if (text === undefined) {
      tokens.push(`[PAD${id}]`);
      types[id] = GGUF_TOKEN_TYPE.USER_DEFINED;
    } else if (c.model === 'llama') {
      tokens.push(text);
      types[id] = a?.special ? (text === tokenText(c.config.unk_token) ? GGUF_TOKEN_TYPE.UNKNOWN : GGUF_TOKEN_TYPE.CONTROL) : /^<0x[0-9A-Fa-f]{2}>$/.test(text) ? GGUF_TOKEN_TYPE.BYTE : GGUF_TOKEN_TYPE.NORMAL;
    } else if (a) {
      const control = a.special || looksSpecial(text);
      tokens.push(control ? text : text.replaceAll('▁', ' '));
      types[id] = control ? GGUF_TOKEN_TYPE.CONTROL : GGUF_TOKEN_TYPE.USER_DEFINED;
    } else {
      tokens.push(text);
      types[id] = GGUF_TOKEN_TYPE.NORMAL;
    }
  }
  const merges = c.tokenizer.model.merges.map((m) => (typeof m === 'string' ? m : m.join(' ')));
  const out: [string, GgufMetadataEntry][] = [
    ['tokenizer.ggml.model', meta.str(c.model)],
    ['tokenizer.ggml.pre', meta.str(c.model === 'llama' ? 'default' : c.pre!)],
    ['tokenizer.ggml.tokens', meta.array(GgufType.STRING, tokens)],
  ];
  if (c.model === 'llama') {
    const firstRank = new Map<string, number>();
    merges.forEach((m, rank) => {
      const space = m.indexOf(' ', 1);
      const made = m.slice(0, space) + m.slice(space + 1);
      if (!firstRank.has(made)) firstRank.set(made, rank);
    });
    out.push(['tokenizer.ggml.scores', meta.array(GgufType.FLOAT32, Float32Array.from(tokens, (t) => (firstRank.has(t) ? -firstRank.get(t)! : 0)))]);
    const prepends = (c.tokenizer.normalizer?.normalizers ?? []).some((x) => x.type === 'Prepend');
    out.push(['tokenizer.ggml.token_type', meta.array(GgufType.INT32, types)]);
    out.push(['tokenizer.ggml.add_space_prefix', meta.bool(prepends)]);
  } else {
    out.push(['tokenizer.ggml.token_type', meta.array(GgufType.INT32, types)]);
    out.push(['tokenizer.ggml.merges', meta.array(GgufType.STRING, merges)]);
  }
  const idOf = (field: string) => {
    const text = tokenText(c.config[field]);
    if (text === undefined) return undefined;
    return tokens.indexOf(text);
  };
  for (const [field, key] of [['bos_token', 'bos_token_id'], ['eos_token', 'eos_token_id'], ['unk_token', 'unknown_token_id'], ['pad_token', 'padding_token_id']] as const) {
    const id = idOf(field);
    if (id !== undefined && id >= 0) out.push([`tokenizer.ggml.${key}`, meta.u32(id)]);
  }
  for (const field of ['add_bos_token', 'add_eos_token'] as const) {
    if (typeof c.config[field] === 'boolean') out.push([`tokenizer.ggml.${field}`, meta.bool(c.config[field] as boolean)]);
  }
  if (typeof c.config.chat_template === 'string') out.push(['tokenizer.chat_template', meta.str(c.config.chat_template)]);
  return out;
}
