// The text layer's serving pieces without HTTP: the continuous-batching scheduler over the
// bigram test model (which throws if a slot or position is misused), the adapter from
// single-sequence models, stop strings over split text, and OpenAI's presence and frequency
// penalties in the sampler.
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureTokenizerFixtures } from '../scripts/tokenizer-fixtures.mjs';
import { BigramTestModel } from '../runtime/serve/test-model';
import {
  BatchScheduler,
  batchFromModels,
  withinVocabulary,
  generate,
  Generation,
  nextTokenDistribution,
  SchedulerError,
  StopStrings,
  type GeneratedToken,
  type LanguageModel,
  type Tokenizer,
} from '../runtime/text';
import { loadTokenizerDirectory } from '../runtime/text/node';

let tokenizer: Tokenizer;
beforeAll(async () => {
  tokenizer = await loadTokenizerDirectory(ensureTokenizerFixtures().qwen3!);
});

async function collect(steps: AsyncIterable<GeneratedToken>): Promise<GeneratedToken[]> {
  const out: GeneratedToken[] = [];
  for await (const step of steps) out.push(step);
  return out;
}

const sampled = (seed: number, maxNewTokens = 12) => ({ tokenizer, doSample: true, temperature: 1, topK: 0, seed, maxNewTokens });

describe('BatchScheduler', () => {
  it('runs sequences together and gives each the tokens generate() gives it alone', async () => {
    const model = BigramTestModel.forTokenizer(tokenizer, { maxBatch: 4 });
    const scheduler = new BatchScheduler(model, { maxQueue: 8 });
    const prompts = ['one', 'two three', 'four', 'five six seven', 'eight', 'nine'];
    const batched = await Promise.all(prompts.map((p, i) => collect(scheduler.submit(new Generation(p, sampled(i), model.maxSequenceLength)))));
    expect(model.largestBatch).toBe(4);
    // alone: the same model, one sequence through generate()
    const single = BigramTestModel.forTokenizer(tokenizer, { maxBatch: 1 });
    const one: LanguageModel = { prefill: (t) => single.prefill(0, t), decode: async (token, position) => (await single.decodeBatch([{ slot: 0, token, position }]))[0]! };
    for (const [i, p] of prompts.entries()) {
      single.release(0);
      expect(batched[i]).toEqual(await collect(generate(one, p, sampled(i))));
    }
    expect(model.slotsInUse).toBe(0);
    expect(scheduler.reservedTokens).toBe(0);
  });

  it('refuses beyond the queue and the KV-cache budget, and after close', async () => {
    const model = BigramTestModel.forTokenizer(tokenizer, { maxBatch: 1, stepMs: 2 });
    const scheduler = new BatchScheduler(model, { maxQueue: 1, kvCacheTokens: 40 });
    const running = collect(scheduler.submit(new Generation([1, 2], sampled(1, 20))));
    const waiting = collect(scheduler.submit(new Generation([1, 2], sampled(2, 20))));
    const thrown = (run: () => unknown) => {
      try {
        run();
      } catch (error) {
        return error as SchedulerError;
      }
      throw new Error('no error');
    };
    expect(thrown(() => scheduler.submit(new Generation([1], sampled(3, 5)))).kind).toBe('queue-full');
    expect(thrown(() => scheduler.submit(new Generation([1], sampled(3, 40)))).kind).toBe('too-large');
    scheduler.close();
    expect(thrown(() => scheduler.submit(new Generation([1], sampled(3, 5)))).kind).toBe('closed');
    expect((await running).length).toBe(20);
    expect((await waiting).length).toBe(20); // close lets admitted work finish
  });

  it('cancels: a waiting sequence leaves the queue at once, a running one frees its slot at the next step', async () => {
    const model = BigramTestModel.forTokenizer(tokenizer, { maxBatch: 1, stepMs: 2 });
    const scheduler = new BatchScheduler(model);
    const controller = new AbortController();
    const first = scheduler.submit(new Generation([5], sampled(1, 500)), controller.signal);
    const second = scheduler.submit(new Generation([6], sampled(2, 3)));
    const third = scheduler.submit(new Generation([7], sampled(3, 500)));
    expect(scheduler.queueDepth).toBe(2);
    third.cancel();
    expect(scheduler.queueDepth).toBe(1);
    expect(await collect(third)).toEqual([]);
    const read = collect(first);
    await new Promise((r) => setTimeout(r, 20));
    controller.abort(new Error('client went away'));
    await expect(read).rejects.toThrow('client went away');
    expect((await collect(second)).length).toBe(3);
    expect(model.slotsInUse).toBe(0);
    expect(model.prefills).toBe(2); // the cancelled waiting one never ran
  });

  it('a model failure ends every sequence of the step with its error, and the scheduler goes on', async () => {
    const model = BigramTestModel.forTokenizer(tokenizer, { maxBatch: 2 });
    let fail = true;
    const flaky = { ...model, maxBatch: 2, maxSequenceLength: 2048, prefill: model.prefill.bind(model), release: model.release.bind(model), decodeBatch: async (r: never[]) => { if (fail) throw new Error('device lost'); return model.decodeBatch(r); } };
    const scheduler = new BatchScheduler(flaky);
    const a = collect(scheduler.submit(new Generation([1], sampled(1, 5))));
    const b = collect(scheduler.submit(new Generation([2], sampled(2, 5))));
    await expect(a).rejects.toThrow('device lost');
    await expect(b).rejects.toThrow('device lost');
    fail = false;
    expect((await collect(scheduler.submit(new Generation([3], sampled(3, 5))))).length).toBe(5);
    expect(model.slotsInUse).toBe(0);
  });

  it('batchFromModels runs single-sequence models one slot each', async () => {
    const calls: string[] = [];
    const fake = (name: string): LanguageModel => ({
      maxSequenceLength: 50,
      prefill: async (t) => (calls.push(`${name} prefill ${t.length}`), Float32Array.of(0, 5, 0)),
      decode: async (token, position) => (calls.push(`${name} decode ${token}@${position}`), Float32Array.of(0, 0, 5)),
    });
    const model = batchFromModels([fake('a'), fake('b')]);
    expect(model.maxBatch).toBe(2);
    const scheduler = new BatchScheduler(model);
    const [x, y] = await Promise.all([collect(scheduler.submit(new Generation([0, 0], { maxNewTokens: 2 }))), collect(scheduler.submit(new Generation([0], { maxNewTokens: 2 })))]);
    expect(x.map((s) => s.token)).toEqual([1, 2]);
    expect(y.map((s) => s.token)).toEqual([1, 2]);
    expect(calls).toEqual(['a prefill 2', 'b prefill 1', 'a decode 1@2', 'b decode 1@1']);
  });

  it('withinVocabulary: ids past the tokenizer (a padded vocabulary) are never chosen, greedy or sampled', async () => {
    // the padding ids 4 and 5 score highest; of the real ones, id 2 after the prompt, then id 3
    const padded = batchFromModels([
      { prefill: async () => Float32Array.of(0, 1, 3, 2, 9, 9), decode: async () => Float32Array.of(0, 1, 2, 3, 9, 9) },
    ]);
    const scheduler = new BatchScheduler(withinVocabulary(padded, 4));
    const greedy = await collect(scheduler.submit(new Generation([0], { maxNewTokens: 3 })));
    expect(greedy.map((s) => s.token)).toEqual([2, 3, 3]);
    const sampled = await collect(scheduler.submit(new Generation([0], { doSample: true, temperature: 5, topK: 0, seed: 1, maxNewTokens: 40 })));
    expect(sampled.every((s) => s.token < 4)).toBe(true);
    // without the cut, the padding ids win
    const unguarded = await collect(new BatchScheduler(padded).submit(new Generation([0], { maxNewTokens: 1 })));
    expect(unguarded[0]!.token).toBeGreaterThanOrEqual(4);
  });
});

describe('StopStrings', () => {
  it('holds back a possible beginning, releases it when it is not one, stops before the string', () => {
    const stops = new StopStrings(['END', '\n\n']);
    expect(stops.push('Hello E')).toEqual({ text: 'Hello ', stopped: false });
    expect(stops.push('ric, EN')).toEqual({ text: 'Eric, ', stopped: false });
    expect(stops.push('D and more')).toEqual({ text: '', stopped: true });
    expect(stops.push('x')).toEqual({ text: '', stopped: true });
    const other = new StopStrings(['abc']);
    expect(other.push('xa')).toEqual({ text: 'x', stopped: false });
    expect(other.push('b')).toEqual({ text: '', stopped: false });
    expect(other.flush()).toBe('ab');
    // the earliest of several
    expect(new StopStrings(['c', 'ab']).push('xabc')).toEqual({ text: 'x', stopped: true });
  });
});

describe('presence and frequency penalties', () => {
  it('subtract count · frequency + presence from generated tokens only', () => {
    const logits = Float32Array.of(1, 1, 1, 1);
    const greedy = { doSample: false, temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 };
    // prompt [0, 0], generated [1, 1, 2]: token 3 wins once 1 and 2 are penalised; 0 is prompt only
    const seen = [0, 0, 1, 1, 2];
    expect(nextTokenDistribution(logits, seen, { ...greedy, presencePenalty: 0.5 }, 2).ids).toEqual(Int32Array.of(0));
    const sampled = nextTokenDistribution(logits, seen, { ...greedy, doSample: true, frequencyPenalty: 0.5, presencePenalty: 0.25 }, 2);
    const z = [1, 1 - 1 - 0.25, 1 - 0.5 - 0.25, 1].map(Math.exp);
    const sum = z.reduce((a, b) => a + b);
    expect([...sampled.probs].map((p) => p.toFixed(6))).toEqual(z.map((v) => (v / sum).toFixed(6)));
  });
});
