// The tokenizer rebuilt from a GGUF file's tokenizer.ggml.* metadata (runtime/text/gguf-tokenizer.ts)
// against the original tokenizer.json it came from: real tokenizers (fixtures/tokenizers) are
// written into GGUF metadata the way llama.cpp's converter writes them (test/gguf-vocab.ts), read
// back by the GGUF reader, rebuilt, and must encode and decode a varied corpus exactly as the
// original does. Qwen3 is byte-level BPE ("gpt2", pre "qwen2"), Mistral-7B SentencePiece BPE with
// byte fallback ("llama").
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, test } from 'vitest';
import { ensureTokenizerFixtures } from '../scripts/tokenizer-fixtures.mjs';
import { GgufType, parseGguf, type GgufFile, type GgufMetadataEntry } from '../runtime/gguf';
import { ggufTokenizerFiles, isTextError, loadGgufTokenizer, loadTokenizer, type Tokenizer } from '../runtime/text';
import { loadGgufTokenizerFile } from '../runtime/text/node';
import { encodeGguf, meta } from './gguf-writer';
import { tokenizerMetadata, type VocabConversion } from './gguf-vocab';

const CORPUS = [
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  "I'm sure you'll see they've done it; we'd LOVE IT'S fine",
  'Ça déjà été, naïve façade; Größe über Straße; ñandú; Ελληνικά; русский текст',
  'e\u0301 composed vs é precomposed', // NFC matters to Qwen
  '日本語のテキストと中文字符，还有한국어 문장。',
  'emoji 😀🎉👩‍👩‍👧‍👦 flags 🇫🇷 and ✨ sparkles',
  '   leading spaces, inner   runs\tof\t\ttabs\n\nand newlines\r\n  trailing   ',
  '12345 678901 3.14159 1,000,000 0x1F 2024-05-06',
  'def f(x):\n    return x ** 2  # square\n',
  '',
  ' ',
  '\n',
  'a',
  'unusual: \u0000 \u200b zero-width \ufeff bom, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters',
];

let dirs: Record<string, string>;
const readJson = (dir: string, file: string) => JSON.parse(readFileSync(join(dir, file), 'utf8'));

/** The tokenizer written into a GGUF file's metadata and read back by the GGUF reader. */
function ggufOf(conversion: VocabConversion, extra: [string, GgufMetadataEntry][] = []): GgufFile {
  const bytes = encodeGguf({ metadata: [['general.architecture', meta.str('llama')], ...tokenizerMetadata(conversion), ...extra], tensors: [] });
  return parseGguf(bytes, 'model.gguf');
}

beforeAll(() => {
  dirs = ensureTokenizerFixtures();
});

function agree(original: Tokenizer, rebuilt: Tokenizer, texts: readonly string[]) {
  for (const text of texts) {
    for (const addSpecialTokens of [true, false]) {
      const ids = original.encode(text, { addSpecialTokens });
      expect(rebuilt.encode(text, { addSpecialTokens }), `encode ${JSON.stringify(text)} (addSpecialTokens ${addSpecialTokens})`).toEqual(ids);
      expect(rebuilt.decode(ids), `decode of ${JSON.stringify(text)}`).toBe(original.decode(ids));
    }
  }
}

/** Seeded id sequences (any ids, so byte pieces split mid-character too) decode alike. */
function agreeOnRandomIds(original: Tokenizer, rebuilt: Tokenizer, vocabSize: number) {
  let state = 12345;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31);
  for (let k = 0; k < 200; k++) {
    const ids = Array.from({ length: 1 + (next() % 12) }, () => next() % vocabSize);
    expect(rebuilt.decode(ids), `decode ${ids}`).toBe(original.decode(ids));
  }
}

describe('a byte-level BPE ("gpt2") tokenizer rebuilt from GGUF metadata: Qwen3', () => {
  let original: Tokenizer;
  let rebuilt: Tokenizer;
  let file: GgufFile;
  beforeAll(() => {
    const tokenizer = readJson(dirs.qwen3!, 'tokenizer.json');
    const config = readJson(dirs.qwen3!, 'tokenizer_config.json');
    original = loadTokenizer({ tokenizer, config });
    // Qwen3's config.json has vocab_size 151936: the converter pads with [PAD<id>] tokens
    file = ggufOf({ tokenizer, config, model: 'gpt2', pre: 'qwen2', vocabSize: 151936 });
    rebuilt = loadGgufTokenizer(file).tokenizer;
  }, 60_000);

  it('encodes and decodes the corpus as tokenizer.json does', () => {
    agree(original, rebuilt, CORPUS);
    agreeOnRandomIds(original, rebuilt, original.vocabSize);
  });

  it('matches special and added tokens in text, and renders the chat template the same', () => {
    const messages = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Wie geht’s? 你好 👋' },
      { role: 'assistant', content: '<think>\nshort\n</think>\n\nGut, danke!' },
      { role: 'user', content: 'Count: 1 22 333 4444' },
    ];
    const rendered = original.applyChatTemplate(messages, { addGenerationPrompt: true });
    expect(rebuilt.applyChatTemplate(messages, { addGenerationPrompt: true })).toBe(rendered);
    expect(rendered).toContain('<|im_start|>assistant');
    agree(original, rebuilt, [rendered, '<|im_start|>user\nhi<|im_end|><|endoftext|>', 'a<think>b</think>c<tool_call>']);
    expect(rebuilt.encodeChat(messages, { addGenerationPrompt: true })).toEqual(original.encodeChat(messages, { addGenerationPrompt: true }));
  });

  it('takes its special tokens and stop ids from the metadata', () => {
    expect(rebuilt.eos).toEqual(original.eos);
    expect(rebuilt.pad).toEqual(original.pad);
    expect(rebuilt.bos).toBeNull();
    expect(rebuilt.vocabSize).toBe(151936);
    expect(loadGgufTokenizer(file).defaults.stopTokenIds).toEqual([original.eos!.id]);
  });
});

describe('a SentencePiece BPE ("llama") tokenizer rebuilt from GGUF metadata: Mistral-7B', () => {
  let original: Tokenizer;
  let rebuilt: Tokenizer;
  let conversion: VocabConversion;
  beforeAll(() => {
    const tokenizer = readJson(dirs['mistral-7b']!, 'tokenizer.json');
    const config = readJson(dirs['mistral-7b']!, 'tokenizer_config.json');
    original = loadTokenizer({ tokenizer, config });
    conversion = { tokenizer, config, model: 'llama' };
    rebuilt = loadGgufTokenizer(ggufOf(conversion)).tokenizer;
  }, 60_000);

  it('derives from the scores the merges HuggingFace derived', () => {
    const merges = ggufTokenizerFiles(ggufOf(conversion)).tokenizer.model as { merges: [string, string][] };
    expect(merges.merges.map((m) => m.join(' '))).toEqual(conversion.tokenizer.model.merges);
  });

  it('encodes (byte fallback included) and decodes the corpus as tokenizer.json does', () => {
    agree(original, rebuilt, [...CORPUS, '<s>[INST] Hi [/INST] Hello</s>', 'x</s>y<unk>z']);
    agreeOnRandomIds(original, rebuilt, original.vocabSize);
    // the corpus exercises byte fallback: characters outside the vocabulary become <0xXX>
    expect(original.encode('🇫🇷 𝔘').some((id) => /^<0x/.test(original.idToToken(id)!))).toBe(true);
  });

  it('adds <s> as the file says, and not when add_bos_token is false', () => {
    expect(rebuilt.encode('Hi')[0]).toBe(1);
    const entries = tokenizerMetadata(conversion).filter(([key]) => key !== 'tokenizer.ggml.add_bos_token');
    const file = parseGguf(encodeGguf({ metadata: [...entries, ['tokenizer.ggml.add_bos_token', meta.bool(false)]], tensors: [] }), 'model.gguf');
    expect(loadGgufTokenizer(file).tokenizer.encode('Hi')).toEqual(original.encode('Hi', { addSpecialTokens: false }));
  });
});

test('without add_space_prefix, no ▁ is put before the text nor stripped from the decoded text', () => {
  const tokenizer = readJson(dirs['mistral-7b']!, 'tokenizer.json');
  const config = readJson(dirs['mistral-7b']!, 'tokenizer_config.json');
  const original = loadTokenizer({ tokenizer, config });
  const entries = tokenizerMetadata({ tokenizer, config, model: 'llama' }).map(([k, e]): [string, GgufMetadataEntry] => [k, k === 'tokenizer.ggml.add_space_prefix' ? meta.bool(false) : e]);
  const rebuilt = loadGgufTokenizer(parseGguf(encodeGguf({ metadata: entries, tensors: [] }), 'model.gguf')).tokenizer;
  const ids = original.encode('Hello world', { addSpecialTokens: false });
  expect(rebuilt.encode(' Hello world', { addSpecialTokens: false })).toEqual(ids);
  expect(rebuilt.encode('Hello world', { addSpecialTokens: false })).not.toEqual(ids);
  expect(rebuilt.decode(ids)).toBe(' Hello world');
});

test("tiny-llama.gguf's toy vocabulary (pre 'default') from the file on disk: ids worked out by hand from its merges", async () => {
  const { tokenizer, defaults } = await loadGgufTokenizerFile(join(new URL('..', import.meta.url).pathname, 'fixtures/gguf/tiny-llama.gguf'));
  // the: t·he; cat: Ġ·c·at; is: Ġ·is (i s before Ġ i); on: Ġ·on; the: Ġthe; sea: Ġs·e·a; end: Ġ·en·d
  const ids = [15, 20, 16, 5, 33, 16, 35, 16, 25, 21, 29, 7, 3, 17, 21, 16, 28, 6, 18];
  expect(tokenizer.encode('the cat is on the sea, the end.')).toEqual(ids);
  expect(tokenizer.decode(ids)).toBe('the cat is on the sea, the end.');
  expect(tokenizer.applyChatTemplate([{ role: 'user', content: 'the end' }])).toBe('<|im_start|>user\nthe end<|im_end|>\n');
  expect(defaults.stopTokenIds).toEqual([2]);
});

describe('pre-tokenizer families', () => {
  // A toy byte-level vocabulary (every printable byte, no merges) shows how each family splits text.
  const bytes = Array.from({ length: 256 }, (_, b) => b);
  const byteChars = (() => {
    // GPT-2's byte-to-unicode table
    const printable = [...range(33, 126), ...range(161, 172), ...range(174, 255)];
    const chars = new Map<number, string>();
    let extra = 0;
    for (const b of bytes) chars.set(b, String.fromCodePoint(printable.includes(b) ? b : 256 + extra++));
    return chars;
  })();
  function toy(pre: string): Tokenizer {
    const tokens = bytes.map((b) => byteChars.get(b)!);
    const file = parseGguf(
      encodeGguf({
        metadata: [
          ['tokenizer.ggml.model', meta.str('gpt2')],
          ['tokenizer.ggml.pre', meta.str(pre)],
          ['tokenizer.ggml.tokens', meta.array(GgufType.STRING, tokens)],
          ['tokenizer.ggml.merges', meta.array(GgufType.STRING, [])],
        ],
        tensors: [],
      }),
      'toy.gguf',
    );
    return loadGgufTokenizer(file).tokenizer;
  }
  it('each known family loads and round-trips text', () => {
    for (const pre of ['gpt-2', 'smollm', 'llama-bpe', 'qwen2', 'deepseek-coder', 'deepseek-v3', 'default']) {
      const t = toy(pre);
      const text = "Héllo wörld 12345 it's 日本\n\t ok";
      expect(t.decode(t.encode(text)), pre).toBe(text);
    }
  });
  it('refuses an unknown pre-tokenizer, naming the file, the key and the value', () => {
    let error: unknown;
    try {
      toy('made-up-bpe');
    } catch (e) {
      error = e;
    }
    expect(isTextError(error)).toBe(true);
    expect((error as Error).message).toMatch(/toy\.gguf: metadata "tokenizer\.ggml\.pre" is "made-up-bpe", a pre-tokenizer this rebuild does not know/);
  });
});

describe('bad tokenizer metadata is an error naming the file and the key', () => {
  const base = (): [string, GgufMetadataEntry][] => [
    ['tokenizer.ggml.model', meta.str('gpt2')],
    ['tokenizer.ggml.pre', meta.str('gpt-2')],
    ['tokenizer.ggml.tokens', meta.array(GgufType.STRING, ['a', 'b', 'ab'])],
    ['tokenizer.ggml.merges', meta.array(GgufType.STRING, ['a b'])],
  ];
  const failure = (entries: [string, GgufMetadataEntry][]) => {
    try {
      loadGgufTokenizer(parseGguf(encodeGguf({ metadata: entries, tensors: [] }), 'bad.gguf'));
    } catch (error) {
      expect(isTextError(error)).toBe(true);
      return (error as Error).message;
    }
    throw new Error('expected an error');
  };
  const without = (key: string) => base().filter(([k]) => k !== key);
  const replaced = (key: string, entry: GgufMetadataEntry) => base().map(([k, e]): [string, GgufMetadataEntry] => [k, k === key ? entry : e]);
  it.each([
    ['no tokenizer', () => without('tokenizer.ggml.model'), /bad\.gguf: metadata "tokenizer\.ggml\.model" is missing/],
    ['an unknown model', () => replaced('tokenizer.ggml.model', meta.str('bert')), /metadata "tokenizer\.ggml\.model" is "bert"/],
    ['no tokens', () => without('tokenizer.ggml.tokens'), /bad\.gguf: metadata "tokenizer\.ggml\.tokens" is missing/],
    ['tokens of the wrong type', () => replaced('tokenizer.ggml.tokens', meta.array(GgufType.INT32, Int32Array.of(1, 2))), /"tokenizer\.ggml\.tokens" should be an array of strings, not an array of INT32/],
    ['no merges', () => without('tokenizer.ggml.merges'), /"tokenizer\.ggml\.merges" is missing/],
    ['merges of the wrong type', () => replaced('tokenizer.ggml.merges', meta.str('a b')), /"tokenizer\.ggml\.merges" should be an array of strings, not STRING/],
    ['a merge that is not a pair', () => replaced('tokenizer.ggml.merges', meta.array(GgufType.STRING, ['ab'])), /"tokenizer\.ggml\.merges" \[0\] is "ab", not "left right"/],
    ['a merge making no token', () => replaced('tokenizer.ggml.merges', meta.array(GgufType.STRING, ['b a'])), /\[0\] "b a" makes "ba", which is not in/],
    ['a duplicated token', () => replaced('tokenizer.ggml.tokens', meta.array(GgufType.STRING, ['a', 'b', 'a'])), /"tokenizer\.ggml\.tokens" has "a" twice \(ids 0 and 2\)/],
    ['a token id out of range', (): [string, GgufMetadataEntry][] => [...base(), ['tokenizer.ggml.eos_token_id', meta.u32(7)]], /"tokenizer\.ggml\.eos_token_id" is 7, outside the 3 tokens/],
    ['token types of another length', (): [string, GgufMetadataEntry][] => [...base(), ['tokenizer.ggml.token_type', meta.array(GgufType.INT32, Int32Array.of(1))]], /"tokenizer\.ggml\.token_type" has 1 entries; "tokenizer\.ggml\.tokens" has 3/],
    ['a llama vocabulary without scores', () => replaced('tokenizer.ggml.model', meta.str('llama')), /"tokenizer\.ggml\.scores" is missing/],
    ['add_bos_token without a bos id', (): [string, GgufMetadataEntry][] => [...base(), ['tokenizer.ggml.add_bos_token', meta.bool(true)]], /"tokenizer\.ggml\.add_bos_token" is true, but "tokenizer\.ggml\.bos_token_id" is missing/],
  ])('%s', (_, entries, message) => {
    expect(failure(entries())).toMatch(message);
  });
});

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
