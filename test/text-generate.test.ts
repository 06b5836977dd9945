// generate() end to end with fake models that stand where a prefill/decode plan with a KV
// cache will: a scripted model (greedy, exact text), a bigram table (seeded sampling), with
// the real Mistral-7B and Qwen3 tokenizers (fixtures/tokenizers/README.md).
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureTokenizerFixtures } from '../scripts/tokenizer-fixtures.mjs';
import { generate, nextTokenDistribution, resolveGenerationOptions, sampleFromDistribution, uniform, type GeneratedToken, type LanguageModel, type Tokenizer } from '../runtime/text';
import { loadTokenizerDirectory } from '../runtime/text/node';

let mistral: Tokenizer;
let qwen: Tokenizer;

beforeAll(async () => {
  const dirs = ensureTokenizerFixtures();
  mistral = await loadTokenizerDirectory(dirs['mistral-7b']!);
  qwen = await loadTokenizerDirectory(dirs.qwen3!);
});

/** A model that records its calls; `next(previous token, its position)` gives the logits. */
class FakeModel implements LanguageModel {
  prefills: number[][] = [];
  decodes: [number, number][] = [];
  constructor(
    private readonly next: (token: number, position: number) => Float32Array,
    readonly maxSequenceLength?: number,
  ) {}
  async prefill(tokens: readonly number[]): Promise<Float32Array> {
    this.prefills.push([...tokens]);
    return this.next(tokens.at(-1)!, tokens.length - 1);
  }
  async decode(token: number, position: number): Promise<Float32Array> {
    this.decodes.push([token, position]);
    return this.next(token, position);
  }
}

/** Greedy-friendly logits: `token` at 10, everything else 0, over `vocab`. */
function peak(vocab: number, token: number, also?: [number, number]): Float32Array {
  const logits = new Float32Array(vocab);
  logits[token] = 10;
  if (also) logits[also[0]] = also[1];
  return logits;
}

/** A model that says `script` (one token per position after the prompt), then repeats its last token. */
function scripted(vocab: number, script: number[], promptLength: () => number, maxSequenceLength?: number): FakeModel {
  return new FakeModel((_, position) => peak(vocab, script[Math.min(position - promptLength() + 1, script.length - 1)]!), maxSequenceLength);
}

async function collect(steps: AsyncIterable<GeneratedToken>): Promise<GeneratedToken[]> {
  const out: GeneratedToken[] = [];
  for await (const step of steps) out.push(step);
  return out;
}

describe('generate() with a scripted model', () => {
  it('streams complete text, stops at eos and passes positions', async () => {
    const prompt = 'Say hi:';
    const promptIds = mistral.encode(prompt);
    const reply = mistral.encode('Hi 🦙 你好!', { addSpecialTokens: false });
    const model = scripted(32000, [...reply, mistral.eos!.id], () => promptIds.length);
    const steps = await collect(generate(model, prompt, { tokenizer: mistral }));

    expect(model.prefills).toEqual([promptIds]);
    expect(steps.map((s) => s.token)).toEqual([...reply, 2]);
    expect(steps.map((s) => s.text).join('')).toBe(' Hi 🦙 你好!');
    expect(steps.some((s) => s.text.includes('\uFFFD'))).toBe(false);
    // ▁Hi ▁ <0xF0> <0x9F> <0xA6> <0x99> ▁: the byte tokens wait for the whole character
    expect(steps.map((s) => s.text).slice(0, 7)).toEqual([' Hi', ' ', '', '', '', '🦙', ' ']);
    expect(steps.at(-1)).toEqual({ token: 2, text: '', index: reply.length, finishReason: 'stop' });
    expect(steps.slice(0, -1).every((s) => s.finishReason === null)).toBe(true);
    // every generated token but the stop token is decoded, at the position after the previous one
    expect(model.decodes).toEqual(reply.map((token, i) => [token, promptIds.length + i]));
  });

  it('stops at maxNewTokens, maxLength and the model length, flushing held text', async () => {
    const promptIds = mistral.encode('Emoji:');
    const reply = mistral.encode('🦙 ok', { addSpecialTokens: false }); // ▁ F0 9F A6 99 ▁ok
    const run = async (options: object, modelLength?: number) => {
      const model = scripted(32000, reply, () => promptIds.length, modelLength);
      return { steps: await collect(generate(model, promptIds, { tokenizer: mistral, ...options })), model };
    };
    let { steps, model } = await run({ maxNewTokens: 3 });
    expect(steps.map((s) => s.finishReason)).toEqual([null, null, 'length']);
    expect(steps.map((s) => s.text)).toEqual([' ', '', '\uFFFD']); // the unfinished character, flushed
    expect(model.decodes).toHaveLength(2);
    ({ steps } = await run({ maxLength: promptIds.length + 5 }));
    expect(steps.map((s) => s.text).join('')).toBe(' 🦙');
    expect(steps.at(-1)!.finishReason).toBe('length');
    ({ steps } = await run({ maxNewTokens: 100 }, promptIds.length + 6));
    expect(steps.map((s) => s.text).join('')).toBe(' 🦙 ok');
    ({ steps } = await run({ maxLength: promptIds.length }));
    expect(steps).toEqual([]);
  });

  it('holds stop tokens back until minNewTokens, and takes stopTokenIds', async () => {
    const ok = mistral.encode('ok', { addSpecialTokens: false })[0]!;
    // the model always prefers eos (10) over "ok" (5)
    const model = new FakeModel(() => peak(32000, 2, [ok, 5]));
    let steps = await collect(generate(model, 'x', { tokenizer: mistral, minNewTokens: 3 }));
    expect(steps.map((s) => s.token)).toEqual([ok, ok, ok, 2]);
    // stopTokenIds replace the tokenizer's eos
    steps = await collect(generate(model, 'x', { tokenizer: mistral, stopTokenIds: [ok], maxNewTokens: 3 }));
    expect(steps.map((s) => [s.token, s.finishReason])).toEqual([[2, null], [2, null], [2, 'length']]);
    steps = await collect(generate(new FakeModel(() => peak(32000, ok)), 'x', { tokenizer: mistral, stopTokenIds: [7, ok] }));
    expect(steps).toEqual([{ token: ok, text: '', index: 0, finishReason: 'stop' }]); // a stop token's own text is left out
  });

  it('renders chat messages with the template and stops at its eos', async () => {
    const messages = [{ role: 'user', content: 'Hi' }];
    const promptIds = qwen.encodeChat(messages, { addGenerationPrompt: true });
    const reply = qwen.encode('Hello! 👋 你好', { addSpecialTokens: false });
    const model = scripted(qwen.vocabSize, [...reply, 151645], () => promptIds.length);
    const steps = await collect(generate(model, messages, { tokenizer: qwen }));
    expect(model.prefills).toEqual([[151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198]]);
    expect(steps.map((s) => s.text).join('')).toBe('Hello! 👋 你好');
    expect(steps.at(-1)).toMatchObject({ token: 151645, finishReason: 'stop' });
    // chat options reach the template
    const model2 = scripted(qwen.vocabSize, [151645], () => 0);
    await collect(generate(model2, messages, { tokenizer: qwen, chat: { variables: { enable_thinking: false } } }));
    expect(qwen.decode(model2.prefills[0]!)).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n');
  });
});

describe('generate() sampling from a bigram table', () => {
  // 40 word pieces of Mistral's vocabulary; each row of the table gives their logits after a token
  const words = ' the a of cat dog sat on mat and ran to big small red blue house tree sun moon star is was it he she we they see saw run eat one two three four five six seven eight nine ten'.split(' ').slice(1);
  let pieces: number[];
  let table: Map<number, Float32Array>;

  beforeAll(() => {
    pieces = words.map((w) => mistral.encode(w, { addSpecialTokens: false }).at(-1)!);
    table = new Map();
    let draw = 0;
    for (const from of [...pieces, ...mistral.encode('Once upon a time')]) {
      const row = new Float32Array(32000).fill(-Infinity);
      for (const to of pieces) row[to] = (uniform(2024n, draw++) - 0.5) * 6;
      row[2] = -1; // eos, now and then
      table.set(from, row);
    }
  });

  const bigram = () => new FakeModel((token) => table.get(token)!);
  const options = (seed: number) => ({ tokenizer: mistral, doSample: true, temperature: 0.9, topK: 20, topP: 0.95, repetitionPenalty: 1.2, maxNewTokens: 40, seed });

  it('is reproducible with a seed and differs between seeds', async () => {
    const a = await collect(generate(bigram(), 'Once upon a time', options(7)));
    const b = await collect(generate(bigram(), 'Once upon a time', options(7)));
    const c = await collect(generate(bigram(), 'Once upon a time', options(8)));
    expect(b).toEqual(a);
    expect(c.map((s) => s.token)).not.toEqual(a.map((s) => s.token));
    expect(new Set(a.map((s) => s.token)).size).toBeGreaterThan(3);
    // the streamed text is the generated part of the whole sequence's text
    const prompt = mistral.encode('Once upon a time');
    const generated = a.filter((s) => s.finishReason !== 'stop').map((s) => s.token);
    const whole = mistral.decode([...prompt, ...generated], { skipSpecialTokens: true });
    expect(a.map((s) => s.text).join('')).toBe(whole.slice(mistral.decode(prompt, { skipSpecialTokens: true }).length));
  });

  it('draws token i with draw i of the seed from the processed distribution of the sequence so far', async () => {
    const steps = await collect(generate(bigram(), 'Once upon a time', options(11)));
    const config = resolveGenerationOptions({ doSample: true, temperature: 0.9, topK: 20, topP: 0.95, repetitionPenalty: 1.2 });
    const sequence = mistral.encode('Once upon a time');
    steps.forEach((step, i) => {
      const expected = sampleFromDistribution(nextTokenDistribution(table.get(sequence.at(-1)!)!, sequence, config), uniform(11n, i));
      expect(step.token, `token ${i}`).toBe(expected);
      sequence.push(step.token);
    });
  });
});

describe('generate() refuses', () => {
  it('bad options and prompts before touching the model', async () => {
    const model = new FakeModel(() => peak(32000, 2));
    await expect(collect(generate(model, 'x', { tokenizer: mistral, topP: 3 }))).rejects.toThrow('generation option topP must be a number in [0, 1]; got 3');
    await expect(collect(generate(model, 'x'))).rejects.toThrow('a text prompt needs a tokenizer (options.tokenizer)');
    await expect(collect(generate(model, [], { tokenizer: mistral }))).rejects.toThrow('the prompt has no tokens');
    await expect(collect(generate(new FakeModel(() => peak(32000, 2), 3), [1, 2, 3, 4]))).rejects.toThrow('the prompt has 4 tokens; the model holds 3');
    expect(model.prefills).toEqual([]);
  });

  it('logits whose length changes, and stops when aborted', async () => {
    let calls = 0;
    const shrinking = new FakeModel(() => peak(calls++ === 0 ? 32000 : 100, 5));
    await expect(collect(generate(shrinking, [1, 5]))).rejects.toThrow('the model returned 100 logits at step 1, 32000 at prefill');
    const controller = new AbortController();
    const steps: GeneratedToken[] = [];
    const model = new FakeModel(() => peak(32000, 5));
    await expect(
      (async () => {
        for await (const step of generate(model, [1], { maxNewTokens: 10, signal: controller.signal })) {
          steps.push(step);
          if (steps.length === 2) controller.abort(new Error('client went away'));
        }
      })(),
    ).rejects.toThrow('client went away');
    expect(steps).toHaveLength(2);
    expect(model.decodes).toHaveLength(1); // no decode step runs after the abort
  });

  it('works without a tokenizer on token ids, with empty text', async () => {
    const steps = await collect(generate(new FakeModel(() => peak(10, 7)), [1, 2], { maxNewTokens: 2 }));
    expect(steps).toEqual([
      { token: 7, text: '', index: 0, finishReason: null },
      { token: 7, text: '', index: 1, finishReason: 'length' },
    ]);
  });
});
