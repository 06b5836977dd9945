// The text layer's tokenizer, chat templates and streaming decode on real tokenizer files
// (fixtures/tokenizers/README.md): Mistral-7B's SentencePiece BPE with byte fallback and
// Qwen3's byte-level BPE. Expected ids come from outside the library under test: ids that
// @huggingface/jinja's README publishes for Mistral, and a reference BPE written here from
// the files' own vocab and merges.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureTokenizerFixtures } from '../scripts/tokenizer-fixtures.mjs';
import { ChatTemplate, isTextError, loadTokenizer, type Tokenizer } from '../runtime/text';
import { loadTokenizerDirectory } from '../runtime/text/node';

let dirs: Record<string, string>;
let mistral: Tokenizer;
let qwen: Tokenizer;

beforeAll(async () => {
  dirs = ensureTokenizerFixtures();
  mistral = await loadTokenizerDirectory(dirs['mistral-7b']!);
  qwen = await loadTokenizerDirectory(dirs.qwen3!);
});

/** The error `work` throws (fails when it throws none). */
function thrown(work: () => unknown): Error & { kind?: string; file?: string } {
  try {
    work();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

// ---------------------------------------------------------------------------------------------
// A reference BPE, independent of @huggingface/tokenizers: merge the adjacent pair of lowest
// rank until none is in the merges list, then look the symbols up in the vocab (with
// SentencePiece byte fallback: a symbol missing from the vocab becomes its UTF-8 bytes' <0xXX>).

interface BpeFile {
  vocab: Map<string, number>;
  ranks: Map<string, number>;
}

function readBpe(file: string): BpeFile {
  const json = JSON.parse(readFileSync(file, 'utf8'));
  const merges: (string | [string, string])[] = json.model.merges;
  const ranks = new Map(merges.map((m, rank) => [typeof m === 'string' ? m : m.join(' '), rank]));
  return { vocab: new Map(Object.entries(json.model.vocab as Record<string, number>)), ranks };
}

function bpe(file: BpeFile, piece: string, byteFallback = false): number[] {
  let symbols = [...piece];
  for (;;) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < symbols.length; i++) {
      const rank = file.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
      if (rank !== undefined && rank < bestRank) [best, bestRank] = [i, rank];
    }
    if (best < 0) break;
    symbols = [...symbols.slice(0, best), symbols[best]! + symbols[best + 1]!, ...symbols.slice(best + 2)];
  }
  return symbols.flatMap((s) => {
    const id = file.vocab.get(s);
    if (id !== undefined) return [id];
    if (!byteFallback) throw new Error(`reference BPE: ${s} is not in the vocab`);
    return [...new TextEncoder().encode(s)].map((b) => file.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`)!);
  });
}

/** GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others for U+0100 on. */
function byteLevel(text: string): string {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map = new Map<number, string>();
  let next = 256;
  for (let b = 0; b < 256; b++) map.set(b, String.fromCodePoint(printable(b) ? b : next++));
  return [...new TextEncoder().encode(text)].map((b) => map.get(b)!).join('');
}

describe('Mistral-7B tokenizer (SentencePiece BPE, byte fallback)', () => {
  it('encodes a chat as @huggingface/jinja publishes for mistralai/Mistral-7B-Instruct-v0.1', () => {
    // node_modules/@huggingface/jinja/README.md: the rendered chat and its input_ids
    const text = "<s>[INST] Hello, how are you? [/INST]I'm doing great. How can I help you today?</s> [INST] I'd like to show off how chat templating works! [/INST]";
    const published = [
      1, 733, 16289, 28793, 22557, 28725, 910, 460, 368, 28804, 733, 28748, 16289, 28793, 28737, 28742, 28719, 2548, 1598, 28723, 1602, 541, 315, 1316,
      368, 3154, 28804, 2, 28705, 733, 16289, 28793, 315, 28742, 28715, 737, 298, 1347, 805, 910, 10706, 5752, 1077, 3791, 28808, 733, 28748, 16289, 28793,
    ];
    expect(mistral.encode(text, { addSpecialTokens: false })).toEqual(published);
  });

  it('agrees with the reference BPE, byte fallback included', () => {
    const file = readBpe(join(dirs['mistral-7b']!, 'tokenizer.json'));
    // the normalizer prepends ▁ and turns spaces into ▁; there is no pre-tokenizer
    const reference = (s: string) => [1, ...bpe(file, `▁${s.replaceAll(' ', '▁')}`, true)];
    for (const s of ['Hello world', 'The capital of France is', '🦙 and 龘', 'naïve café']) expect(mistral.encode(s), s).toEqual(reference(s));
    // by hand: <0xNN> is id NN + 3 (after <unk>, <s>, </s>); 🦙 is F0 9F A6 99; ▁ is 28705
    expect(mistral.encode('🦙')).toEqual([1, 28705, 0xf0 + 3, 0x9f + 3, 0xa6 + 3, 0x99 + 3]);
    expect(mistral.encode('Hello world')).toEqual([1, 22557, 1526]);
  });

  it('round-trips text through encode and decode', () => {
    for (const s of ['Hello world', ' leading space', 'two\nlines', 'emoji 🦙🫠 and CJK 你好，世界', 'tabs\tand  double  spaces']) {
      expect(mistral.decode(mistral.encode(s), { skipSpecialTokens: true })).toBe(s);
    }
  });

  it('reads its special tokens from tokenizer_config.json and tokenizer.json', () => {
    expect(mistral.bos).toEqual({ text: '<s>', id: 1 });
    expect(mistral.eos).toEqual({ text: '</s>', id: 2 });
    expect(mistral.unk).toEqual({ text: '<unk>', id: 0 });
    expect(mistral.pad).toBeNull();
    expect([...mistral.specialTokenIds].sort()).toEqual([0, 1, 2]);
    expect(mistral.vocabSize).toBe(32000);
    expect(mistral.encode('Hi', { addSpecialTokens: false })[0]).not.toBe(1);
    expect(mistral.decode([1, 15359, 2])).toBe('<s> Hi</s>');
    expect(mistral.decode([1, 15359, 2], { skipSpecialTokens: true })).toBe('Hi');
  });

  it('has no chat template, and says so naming the file', () => {
    expect(mistral.chatTemplate).toBeNull();
    const error = thrown(() => mistral.applyChatTemplate([{ role: 'user', content: 'Hi' }]));
    expect(isTextError(error)).toBe(true);
    expect(error.kind).toBe('no-chat-template');
    expect(error.message).toContain(join(dirs['mistral-7b']!, 'tokenizer_config.json'));
  });
});

describe('Qwen3 tokenizer (byte-level BPE)', () => {
  it('agrees with the reference BPE over GPT-2 byte mapping', () => {
    const file = readBpe(join(dirs.qwen3!, 'tokenizer.json'));
    // pre-tokens split by hand as Qwen's regex splits them: letters with one leading non-letter, digits one by one, punctuation runs
    const cases: [string, string[]][] = [
      ['Hello world', ['Hello', ' world']],
      ['Hello, world!', ['Hello', ',', ' world', '!']],
      ['你好世界', ['你好世界']],
      ['🦙 𝄞 龘', ['🦙', ' 𝄞', ' 龘']],
      ['2024', ['2', '0', '2', '4']],
    ];
    for (const [text, pieces] of cases) {
      expect(qwen.encode(text), text).toEqual(pieces.flatMap((p) => bpe(file, byteLevel(p))));
    }
    // Qwen2/3's widely published ids for "Hello, world!"
    expect(qwen.encode('Hello, world!')).toEqual([9707, 11, 1879, 0]);
    // 𝄞 (F0 9D 84 9E) is two tokens: ð Ŀ Ħ (F0 9D 84) and ŀ (9E), mapped by hand
    expect(qwen.encode('𝄞').map((id) => qwen.idToToken(id))).toEqual(['ðĿĦ', 'ŀ']);
  });

  it('round-trips text and keeps added tokens whole', () => {
    for (const s of ['Hello world', ' leading', 'emoji 🦙🫠 and CJK 你好，世界', 'code:\n\tx = 1  # two']) {
      expect(qwen.decode(qwen.encode(s))).toBe(s);
    }
    expect(qwen.encode('<|im_start|>user\nHi<|im_end|>')).toEqual([151644, 872, 198, 13048, 151645]);
    expect(qwen.decode([151644, 872, 198, 13048, 151645], { skipSpecialTokens: true })).toBe('user\nHi');
  });

  it('reads its special tokens', () => {
    expect(qwen.bos).toBeNull();
    expect(qwen.eos).toEqual({ text: '<|im_end|>', id: 151645 });
    expect(qwen.pad).toEqual({ text: '<|endoftext|>', id: 151643 });
    expect(qwen.addedTokens).toHaveLength(26);
    expect(qwen.addedTokens.find((t) => t.content === '<think>')).toEqual({ id: 151667, content: '<think>', special: false });
    expect(qwen.vocabSize).toBe(151669);
    expect(qwen.encode('Hi')).toEqual([13048]); // no bos
  });

  it('renders its chat template (ChatML, thinking switch)', () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
    ];
    expect(qwen.applyChatTemplate(messages, { addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(qwen.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true, variables: { enable_thinking: false } })).toBe(
      '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n',
    );
    expect(qwen.encodeChat([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true })).toEqual([151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198]);
  });
});

describe('SmolLM2 chat template (ChatML)', () => {
  const config = JSON.parse(readFileSync('fixtures/tokenizers/smollm2/tokenizer_config.json', 'utf8'));
  const system = '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n';

  it('renders user turns after its default system prompt', () => {
    const chat = new ChatTemplate(config.chat_template);
    expect(chat.render([{ role: 'user', content: 'What is 2+2?' }], { addGenerationPrompt: true })).toBe(
      `${system}<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n`,
    );
    expect(
      chat.render([
        { role: 'system', content: 'Answer in French.' },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Salut !' },
      ]),
    ).toBe('<|im_start|>system\nAnswer in French.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nSalut !<|im_end|>\n');
  });

  it('encodes with the ChatML special tokens whole (Qwen3 shares them)', () => {
    const tokenizer = loadTokenizer({
      tokenizer: readFileSync(join(dirs.qwen3!, 'tokenizer.json')),
      config: { eos_token: '<|im_end|>', chat_template: config.chat_template },
    });
    const ids = tokenizer.encodeChat([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true });
    expect(ids.filter((id) => id === 151644)).toHaveLength(3); // <|im_start|> system, user, assistant
    expect(ids.slice(-3)).toEqual([151644, 77091, 198]); // <|im_start|>assistant\n
    expect(tokenizer.decode(ids)).toBe(`${system}<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n`);
  });
});

describe('chat templates', () => {
  it('choose among named templates and name the missing one', () => {
    const chat = new ChatTemplate([
      { name: 'default', template: '{{ messages[0].content }}' },
      { name: 'tool_use', template: 'tools: {{ tools | length }}' },
    ]);
    expect(chat.names).toEqual(['default', 'tool_use']);
    expect(chat.render([{ role: 'user', content: 'x' }])).toBe('x');
    expect(chat.render([{ role: 'user', content: 'x' }], { tools: [{}, {}] })).toBe('tools: 2');
    const error = thrown(() => chat.render([], { templateName: 'rag' }));
    expect(error.kind).toBe('no-chat-template');
    expect(error.message).toBe('tokenizer_config.json: has no chat template named rag; it has default, tool_use');
  });

  it('pass the special tokens and raise_exception, and report what the template raised', () => {
    const chat = new ChatTemplate(
      "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m.content }}{{ eos_token }}{% endfor %}",
      { bos_token: '<s>', eos_token: '</s>' },
      'models/gemma/tokenizer_config.json',
    );
    expect(chat.render([{ role: 'user', content: 'Hi' }])).toBe('<s>Hi</s>');
    const error = thrown(() => chat.render([{ role: 'system', content: 'x' }]));
    expect(error.kind).toBe('chat-template');
    expect(error.message).toBe('models/gemma/tokenizer_config.json: the chat template failed while rendering: System role not supported');
  });

  it('refuse a chat_template of the wrong shape when the tokenizer loads', () => {
    const tokenizer = readFileSync(join(dirs['mistral-7b']!, 'tokenizer.json'));
    let error = thrown(() => loadTokenizer({ tokenizer, config: { chat_template: 42 } }));
    expect(error.kind).toBe('chat-template');
    expect(error.message).toBe('tokenizer_config.json: chat_template must be a string or a list of { "name", "template" }; got 42');
    error = thrown(() => loadTokenizer({ tokenizer, config: { chat_template: [{ name: 'default' }] } }));
    expect(error.message).toBe('tokenizer_config.json: chat_template must be a string or a list of { "name", "template" }; got {"name":"default"} in the list');
  });

  it('report a template that does not parse when it is first used', () => {
    const tokenizer = loadTokenizer({ tokenizer: readFileSync(join(dirs['mistral-7b']!, 'tokenizer.json')), chatTemplate: '{% for m in messages %}{{ m.content }' });
    expect(tokenizer.encode('Hi')).toEqual([1, 15359]);
    const error = thrown(() => tokenizer.applyChatTemplate([{ role: 'user', content: 'Hi' }]));
    expect(error.kind).toBe('chat-template');
    expect(error.message).toMatch(/^chat_template\.jinja: the chat template does not parse: /);
  });
});

describe('streaming decode', () => {
  /** Pushes the ids of `text` one at a time; returns what each push released, then the flush. */
  function stream(tokenizer: Tokenizer, text: string, context?: number[]): string[] {
    const decoder = tokenizer.streamDecoder({ context });
    const out = tokenizer.encode(text, { addSpecialTokens: false }).map((id) => decoder.push(id));
    out.push(decoder.flush());
    return out;
  }

  it('holds byte-fallback pieces of a character back until it is complete (Mistral)', () => {
    // ▁ <0xF0> <0x9F> <0xA6> <0x99>: the space waits for the character after it
    expect(stream(mistral, '🦙')).toEqual(['', '', '', '', '🦙', '']);
    const chunks = stream(mistral, 'Hi 🦙 龘 and 你好, ok');
    expect(chunks.join('')).toBe('Hi 🦙 龘 and 你好, ok');
    expect(chunks.some((c) => c.includes('\uFFFD'))).toBe(false);
  });

  it('holds byte-level tokens of a character back until it is complete (Qwen3)', () => {
    expect(stream(qwen, '𝄞')).toEqual(['', '𝄞', '']);
    expect(stream(qwen, '🫠')).toEqual(['', '', '🫠', '']); // ðŁ « ł
    const text = 'Hi 🫠 𝄞 龘 鱻 你好世界 done';
    const chunks = stream(qwen, text);
    expect(chunks.join('')).toBe(text);
    expect(chunks.some((c) => c.includes('\uFFFD'))).toBe(false);
  });

  it('keeps the space of a SentencePiece piece that follows the prompt', () => {
    const prompt = mistral.encode('The capital of France is');
    expect(stream(mistral, 'Paris. 你好', prompt)).toEqual([' Paris', '.', ' ', '你', '好', '']);
    expect(stream(mistral, 'Paris.')).toEqual(['Paris', '.', '']); // without context the text starts at the piece
  });

  it('leaves special tokens out, and flushes an unfinished character as U+FFFD', () => {
    const decoder = qwen.streamDecoder();
    expect([151644, 872, 198].map((id) => decoder.push(id))).toEqual(['', 'user', '\n']);
    expect(decoder.push(124596)).toBe(''); // first half of 𝄞
    expect(decoder.flush()).toBe('\uFFFD');
  });
});

describe('loading errors name the file', () => {
  it('refuses files that are not tokenizers', () => {
    let error = thrown(() => loadTokenizer({ tokenizer: '{"model": ' }));
    expect(error.kind).toBe('bad-tokenizer');
    expect(error.message).toMatch(/^tokenizer\.json: is not JSON: /);
    error = thrown(() => loadTokenizer({ tokenizer: { version: '1.0' } }));
    expect(error.message).toBe('tokenizer.json: has no "model" object: is it a HuggingFace tokenizers file?');
    error = thrown(() => loadTokenizer({ tokenizer: readFileSync(join(dirs['mistral-7b']!, 'tokenizer.json')), config: { eos_token: '<|eot_id|>' } }));
    expect(error.message).toBe('tokenizer_config.json: eos_token "<|eot_id|>" is not in tokenizer.json\'s vocabulary');
  });

  it('reads a transformers AddedToken object as a special token', () => {
    const tokenizer = loadTokenizer({
      tokenizer: readFileSync(join(dirs['mistral-7b']!, 'tokenizer.json')),
      config: { bos_token: { __type: 'AddedToken', content: '<s>', lstrip: false }, eos_token: '</s>' },
    });
    expect(tokenizer.bos).toEqual({ text: '<s>', id: 1 });
  });

  it('says which directory lacks tokenizer.json', async () => {
    await expect(loadTokenizerDirectory('/nonexistent/model')).rejects.toThrow('/nonexistent/model/tokenizer.json: not found: a tokenizer needs its tokenizer.json');
  });
});
