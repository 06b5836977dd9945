// A tokenizer from a GGUF file's own `tokenizer.ggml.*` metadata, so a GGUF file alone gives
// text in and text out: the vocabulary is rebuilt as the tokenizer.json HuggingFace would have
// for it and handed to @huggingface/tokenizers (tokenizer.ts), `tokenizer.chat_template` to the
// chat-template code. The metadata conventions are llama.cpp's (convert_hf_to_gguf.py writes
// them, llama-vocab.cpp reads them):
//
//   tokenizer.ggml.model        "gpt2": byte-level BPE (tokens in their byte-level spelling, merges)
//                               "llama": SentencePiece BPE (tokens with scores, ▁ for space, <0xXX> byte tokens)
//   tokenizer.ggml.pre          gpt2 only: which pre-tokenizer regexes split the text (llama-bpe, qwen2, …)
//   tokenizer.ggml.tokens       string[], in id order
//   tokenizer.ggml.token_type   i32[]: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
//   tokenizer.ggml.scores       f32[] (llama): a merge ranks higher the higher its result's score
//   tokenizer.ggml.merges       string[] (gpt2): "left right", highest priority first
//   tokenizer.ggml.{bos,eos,eot,eom,unknown,padding}_token_id   u32
//   tokenizer.ggml.add_bos_token, add_eos_token, add_space_prefix   bool
//   tokenizer.chat_template     string
import { GgufType, type GgufFile, type GgufMetadataEntry } from '../gguf';
import { TextError } from './errors';
import type { GenerationOptions } from './generation-config';
import { loadTokenizer, type Tokenizer } from './tokenizer';

/** llama.cpp's token types (gguf-py's TokenType). */
export const GGUF_TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/**
 * The pre-tokenizer of each `tokenizer.ggml.pre` family: the regex splits of the family's own
 * tokenizer.json (llama.cpp keeps adapted copies of the same expressions in llama-vocab.cpp),
 * and the defaults llama.cpp attaches to the name. `byteLevelRegex` is GPT-2's split, done by
 * the ByteLevel pre-tokenizer itself.
 */
interface PreTokenizerFamily {
  /** regexes applied in turn, each keeping matches and the text between them as pieces */
  splits: readonly string[];
  /** split digits one by one first (HF's Digits pre-tokenizer) */
  digits?: boolean;
  byteLevelRegex?: boolean;
  /** Qwen2's tokenizer.json normalizes to NFC (llama.cpp does not; HF's is the reference here) */
  nfc?: boolean;
  /** a word that is a whole token skips the merges (llama-3's tokenizer.json, llama.cpp's ignore_merges) */
  ignoreMerges?: boolean;
  /** add_bos_token when the file does not say */
  addBos?: boolean;
  /** decode tidies spaces before punctuation (llama.cpp's clean_spaces, transformers' clean_up_tokenization_spaces) */
  cleanSpaces: boolean;
}

const GPT2_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const CJK = '[一-龥ࠀ-一가-퟿]+';

const FAMILIES: Record<string, PreTokenizerFamily> = {};
const family = (names: readonly string[], f: PreTokenizerFamily) => names.forEach((name) => (FAMILIES[name] = f));
family(['gpt-2', 'phi-2', 'mpt', 'olmo'], { splits: [], byteLevelRegex: true, cleanSpaces: true });
family(['smollm'], { splits: [], digits: true, byteLevelRegex: true, cleanSpaces: false });
family(['starcoder', 'refact', 'codeshell'], { splits: [], digits: true, byteLevelRegex: true, cleanSpaces: true });
family(['llama3', 'llama-v3', 'llama-bpe', 'falcon3'], { splits: [LLAMA3_REGEX], ignoreMerges: true, addBos: true, cleanSpaces: true });
family(['qwen2', 'deepseek-r1-qwen'], { splits: [QWEN2_REGEX], nfc: true, cleanSpaces: false });
family(['deepseek-coder'], { splits: ['[\\r\\n]', '\\s?\\p{L}+', '\\s?\\p{P}+', CJK, '\\p{N}'], cleanSpaces: false });
family(['deepseek-v3'], {
  splits: ['\\p{N}{1,3}', '[一-龥぀-ゟ゠-ヿ]+', "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
  cleanSpaces: false,
});
// llama.cpp's own choice for files that name no pre-tokenizer (written before the key existed)
family(['default'], { splits: ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2_REGEX, '\\p{N}+', '[0-9][0-9][0-9]'], cleanSpaces: true });

/** The `tokenizer.ggml.pre` values this rebuilds. */
export const GGUF_PRE_TOKENIZERS: readonly string[] = Object.keys(FAMILIES);

/** A GGUF file's tokenizer as the files a HuggingFace checkpoint ships. */
export interface GgufTokenizerFiles {
  /** tokenizer.json's shape */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json's shape: the special tokens' text, add_bos_token, chat_template */
  config: Record<string, unknown>;
  /** generate()'s defaults: stop at eos, eot and eom */
  defaults: GenerationOptions;
}

/** Reads the metadata of one file, each error naming the file and the key. */
class TokenizerMetadata {
  constructor(readonly file: GgufFile) {}

  fail(key: string, message: string): never {
    throw new TextError('bad-tokenizer', `metadata "${key}" ${message}`, { file: this.file.source });
  }

  entry(key: string): GgufMetadataEntry | undefined {
    return this.file.metadata.get(key);
  }

  string(key: string): string | undefined {
    const e = this.entry(key);
    if (e === undefined) return undefined;
    if (e.type !== GgufType.STRING) this.fail(key, `should be a string, not ${typeName(e)}`);
    return e.value as string;
  }

  bool(key: string): boolean | undefined {
    const e = this.entry(key);
    if (e === undefined) return undefined;
    if (e.type !== GgufType.BOOL) this.fail(key, `should be a bool, not ${typeName(e)}`);
    return e.value as boolean;
  }

  /** A token id: an integer below `count`. */
  tokenId(key: string, count: number): number | undefined {
    const e = this.entry(key);
    if (e === undefined) return undefined;
    if (!INTEGER_TYPES.has(e.type)) this.fail(key, `should be a token id (an integer), not ${typeName(e)}`);
    const id = Number(e.value);
    if (!Number.isInteger(id) || id < 0 || id >= count) this.fail(key, `is ${e.value}, outside the ${count} tokens of "tokenizer.ggml.tokens"`);
    return id;
  }

  /** An array of `elementTypes`, `count` long when given. */
  array(key: string, elementTypes: readonly number[], what: string, count?: number): ArrayLike<unknown> | undefined {
    const e = this.entry(key);
    if (e === undefined) return undefined;
    const array = e.value as { elementType: number; values: ArrayLike<unknown> };
    if (e.type !== GgufType.ARRAY || !elementTypes.includes(array.elementType)) {
      this.fail(key, `should be an array of ${what}, not ${e.type === GgufType.ARRAY ? `an array of ${typeName({ type: array.elementType })}` : typeName(e)}`);
    }
    if (count !== undefined && array.values.length !== count) this.fail(key, `has ${array.values.length} entries; "tokenizer.ggml.tokens" has ${count}`);
    return array.values;
  }
}

const INTEGER_TYPES = new Set<number>([GgufType.UINT8, GgufType.INT8, GgufType.UINT16, GgufType.INT16, GgufType.UINT32, GgufType.INT32, GgufType.UINT64, GgufType.INT64]);
const TYPE_NAMES = Object.fromEntries(Object.entries(GgufType).map(([name, id]) => [id, name]));
const typeName = (e: { type: number }) => TYPE_NAMES[e.type] ?? `type ${e.type}`;

/** The tokenizer.json and tokenizer_config.json a GGUF file's metadata describes. */
export function ggufTokenizerFiles(file: GgufFile): GgufTokenizerFiles {
  const m = new TokenizerMetadata(file);
  const model = m.string('tokenizer.ggml.model') ?? m.fail('tokenizer.ggml.model', 'is missing: the file carries no tokenizer (give one with --tokenizer DIR)');
  if (model !== 'gpt2' && model !== 'llama') m.fail('tokenizer.ggml.model', `is ${JSON.stringify(model)}; tokenizers rebuilt from GGUF metadata are "gpt2" (byte-level BPE) and "llama" (SentencePiece BPE)`);
  const tokens = (m.array('tokenizer.ggml.tokens', [GgufType.STRING], 'strings') ?? m.fail('tokenizer.ggml.tokens', 'is missing: the file has no vocabulary')) as readonly string[];
  const n = tokens.length;
  if (n === 0) m.fail('tokenizer.ggml.tokens', 'is empty');
  const types = m.array('tokenizer.ggml.token_type', [...INTEGER_TYPES], 'integers', n) as ArrayLike<number> | undefined;
  const typeOf = (id: number) => (types ? Number(types[id]) : GGUF_TOKEN_TYPE.NORMAL);

  const vocab: Record<string, number> = Object.create(null);
  for (let id = 0; id < n; id++) {
    // llama.cpp names an empty token so that every id has a distinct text
    const text = tokens[id] === '' ? `[EMPTY_${id}]` : tokens[id]!;
    if (vocab[text] !== undefined) m.fail('tokenizer.ggml.tokens', `has ${JSON.stringify(text)} twice (ids ${vocab[text]} and ${id})`);
    vocab[text] = id;
  }
  const textOf = (id: number) => (tokens[id] === '' ? `[EMPTY_${id}]` : tokens[id]!);

  const ids = {
    bos: m.tokenId('tokenizer.ggml.bos_token_id', n),
    eos: m.tokenId('tokenizer.ggml.eos_token_id', n),
    eot: m.tokenId('tokenizer.ggml.eot_token_id', n),
    eom: m.tokenId('tokenizer.ggml.eom_token_id', n),
    unk: m.tokenId('tokenizer.ggml.unknown_token_id', n),
    pad: m.tokenId('tokenizer.ggml.padding_token_id', n),
  };

  // control, user-defined and unknown tokens are matched in the text before the model sees it
  const addedTokens = [];
  for (let id = 0; id < n; id++) {
    const type = typeOf(id);
    if (type === GGUF_TOKEN_TYPE.CONTROL || type === GGUF_TOKEN_TYPE.USER_DEFINED || type === GGUF_TOKEN_TYPE.UNKNOWN || id === ids.bos || id === ids.eos) {
      const special = type !== GGUF_TOKEN_TYPE.USER_DEFINED;
      addedTokens.push({ id, content: textOf(id), single_word: false, lstrip: false, rstrip: false, normalized: false, special });
    }
  }

  let json: Record<string, unknown>;
  let addBos: boolean;
  let cleanSpaces: boolean;
  if (model === 'gpt2') {
    const preKey = 'tokenizer.ggml.pre';
    const pre = m.string(preKey) ?? 'default';
    const f = FAMILIES[pre] ?? m.fail(preKey, `is ${JSON.stringify(pre)}, a pre-tokenizer this rebuild does not know (it knows ${GGUF_PRE_TOKENIZERS.join(', ')}); give the model's tokenizer.json with --tokenizer DIR`);
    const merges = gpt2Merges(m, vocab);
    // llama.cpp's family default applies only where the file names a bos token
    addBos = m.bool('tokenizer.ggml.add_bos_token') ?? ((f.addBos ?? false) && ids.bos !== undefined);
    cleanSpaces = f.cleanSpaces;
    const byteLevel = (useRegex: boolean) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: useRegex });
    const pretokenizers = [
      ...(f.digits ? [{ type: 'Digits', individual_digits: true }] : []),
      ...f.splits.map((regex) => ({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false })),
      byteLevel(f.byteLevelRegex ?? false),
    ];
    json = {
      version: '1.0',
      added_tokens: addedTokens,
      normalizer: f.nfc ? { type: 'NFC' } : null,
      pre_tokenizer: { type: 'Sequence', pretokenizers },
      post_processor: byteLevel(false),
      decoder: byteLevel(false),
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: f.ignoreMerges ?? false, vocab, merges },
    };
  } else {
    const scores = (m.array('tokenizer.ggml.scores', [GgufType.FLOAT32, GgufType.FLOAT64], 'numbers', n) ?? m.fail('tokenizer.ggml.scores', 'is missing: a "llama" (SentencePiece) vocabulary ranks its merges by score')) as ArrayLike<number>;
    addBos = m.bool('tokenizer.ggml.add_bos_token') ?? ids.bos !== undefined; // llama.cpp's default for SentencePiece
    cleanSpaces = false;
    const spacePrefix = m.bool('tokenizer.ggml.add_space_prefix') ?? true;
    const unk = ids.unk ?? findType(typeOf, n, GGUF_TOKEN_TYPE.UNKNOWN);
    // remove_extra_whitespaces is left alone, as llama.cpp's SentencePiece BPE leaves it
    const normalizers = [
      ...(spacePrefix ? [{ type: 'Prepend', prepend: '▁' }] : []),
      { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
    ];
    json = {
      version: '1.0',
      added_tokens: addedTokens,
      normalizer: { type: 'Sequence', normalizers },
      pre_tokenizer: null,
      post_processor: null,
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          ...(spacePrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
        ],
      },
      model: {
        type: 'BPE', dropout: null, unk_token: unk === undefined ? null : textOf(unk), continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: true, byte_fallback: true, vocab, merges: sentencePieceMerges(vocab, scores, typeOf),
      },
    };
  }

  const addEos = m.bool('tokenizer.ggml.add_eos_token') ?? false;
  if (addBos && ids.bos === undefined) m.fail('tokenizer.ggml.add_bos_token', 'is true, but "tokenizer.ggml.bos_token_id" is missing');
  if (addEos && ids.eos === undefined) m.fail('tokenizer.ggml.add_eos_token', 'is true, but "tokenizer.ggml.eos_token_id" is missing');
  if (addBos || addEos) json.post_processor = templateProcessing(addBos ? textOf(ids.bos!) : undefined, addEos ? textOf(ids.eos!) : undefined, vocab);

  const special = (id: number | undefined) => (id === undefined ? null : textOf(id));
  const config: Record<string, unknown> = {
    bos_token: special(ids.bos),
    eos_token: special(ids.eos),
    unk_token: special(ids.unk),
    pad_token: special(ids.pad),
    add_bos_token: addBos,
    add_eos_token: addEos,
    clean_up_tokenization_spaces: cleanSpaces,
  };
  const template = m.string('tokenizer.chat_template');
  if (template !== undefined) config.chat_template = template;
  const stops = [ids.eos, ids.eot, ids.eom].filter((id, i, all): id is number => id !== undefined && all.indexOf(id) === i);
  return { tokenizer: json, config, defaults: stops.length > 0 ? { stopTokenIds: stops } : {} };
}

/** The tokenizer of a GGUF file (its header is enough: readGguf) and generate()'s defaults for it. */
export function loadGgufTokenizer(file: GgufFile): { tokenizer: Tokenizer; defaults: GenerationOptions } {
  const files = ggufTokenizerFiles(file);
  const tokenizer = loadTokenizer({
    tokenizer: files.tokenizer,
    config: files.config,
    names: { tokenizer: `${file.source} (tokenizer.ggml.*)`, config: `${file.source} (tokenizer.*)`, chatTemplate: `${file.source} (tokenizer.chat_template)` },
  });
  return { tokenizer, defaults: files.defaults };
}

function findType(typeOf: (id: number) => number, n: number, type: number): number | undefined {
  for (let id = 0; id < n; id++) if (typeOf(id) === type) return id;
  return undefined;
}

/** `tokenizer.ggml.merges` ("left right", split at the first space after the first character, as llama.cpp does) as pairs. */
function gpt2Merges(m: TokenizerMetadata, vocab: Record<string, number>): [string, string][] {
  const key = 'tokenizer.ggml.merges';
  const merges = (m.array(key, [GgufType.STRING], 'strings') ?? m.fail(key, 'is missing: a "gpt2" (byte-level BPE) vocabulary needs its merges')) as readonly string[];
  return merges.map((merge, i) => {
    const space = merge.indexOf(' ', 1);
    if (space < 0) m.fail(key, `[${i}] is ${JSON.stringify(merge)}, not "left right"`);
    const pair: [string, string] = [merge.slice(0, space), merge.slice(space + 1)];
    if (vocab[pair[0] + pair[1]] === undefined) m.fail(key, `[${i}] ${JSON.stringify(merge)} makes ${JSON.stringify(pair[0] + pair[1])}, which is not in "tokenizer.ggml.tokens"`);
    return pair;
  });
}

/**
 * A SentencePiece BPE vocabulary's merges from its scores, as HuggingFace's converter derives
 * them (SentencePieceExtractor): every split of a normal token into two tokens is a merge, ranked
 * by the whole token's score (highest first; ties by token id, a token's splits by the ids of their halves). This
 * is the order in which SentencePiece (and llama.cpp's SPM tokenizer) merges.
 */
function sentencePieceMerges(vocab: Record<string, number>, scores: ArrayLike<number>, typeOf: (id: number) => number): [string, string][] {
  const merges: { left: string; right: string; score: number; id: number; leftId: number; rightId: number }[] = [];
  for (const token in vocab) {
    const id = vocab[token]!;
    if (typeOf(id) !== GGUF_TOKEN_TYPE.NORMAL) continue;
    const chars = [...token];
    let at = 0;
    for (let k = 1; k < chars.length; k++) {
      at += chars[k - 1]!.length;
      const left = token.slice(0, at);
      const right = token.slice(at);
      const leftId = vocab[left];
      const rightId = vocab[right];
      if (leftId !== undefined && rightId !== undefined) merges.push({ left, right, score: Number(scores[id]), id, leftId, rightId });
    }
  }
  // ties keep the extractor's order: token id, then the halves' ids
  merges.sort((a, b) => b.score - a.score || a.id - b.id || a.leftId - b.leftId || a.rightId - b.rightId);
  return merges.map((x) => [x.left, x.right]);
}

/** A post-processor that puts bos before and eos after the text (and each of a pair). */
function templateProcessing(bos: string | undefined, eos: string | undefined, vocab: Record<string, number>) {
  const token = (text: string | undefined, typeId: number) => (text === undefined ? [] : [{ SpecialToken: { id: text, type_id: typeId } }]);
  const sequence = (id: 'A' | 'B', typeId: number) => [...token(bos, typeId), { Sequence: { id, type_id: typeId } }, ...token(eos, typeId)];
  const specials = Object.fromEntries([bos, eos].filter((t): t is string => t !== undefined).map((t) => [t, { id: t, ids: [vocab[t]], tokens: [t] }]));
  return { type: 'TemplateProcessing', single: sequence('A', 0), pair: [...sequence('A', 0), ...sequence('B', 1)], special_tokens: specials };
}
