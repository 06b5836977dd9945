// models/llama.ts with `decodeBatch`: a plan whose cache holds several sequences (slots) and
// whose decode_batch entry advances all of them in one set of dispatches. On the GPU with a
// seeded checkpoint: sequences prefilled into slots at different lengths, joining, pausing,
// leaving and reusing slots between steps, each row's logits against the independent float64
// forward (test/llama-reference.ts) at that sequence's position; then the continuous-batching
// scheduler over planBatchedLanguageModel against generate() on the single-sequence plan of the
// same weights (a second path), greedy and seeded.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { llama, llamaEntries, llamaShape, type HfLlamaConfig, type LlamaOptions } from '../models/llama';
import { encodeSafetensors, loadPlan, type Session } from '../runtime/index';
import { BatchScheduler, Generation, generate, planBatchedLanguageModel, planLanguageModel, type GeneratedToken, type PlanBatchedLanguageModel } from '../runtime/text';
import { expectClose } from './close';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { asSafetensors, randomCheckpoint, referenceLogits } from './llama-reference';

/** SmolLM2's shape at toy size: tied head, GQA 4:2. */
const CONFIG: HfLlamaConfig = {
  architectures: ['LlamaForCausalLM'],
  vocab_size: 300,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  rope_theta: 100000,
  tie_word_embeddings: true,
};
const S = 12;
const BATCHED: LlamaOptions = { maxSequence: S, maxPrompt: 8, decodeBatch: 4 };
const s = llamaShape(CONFIG);
const weights = randomCheckpoint(s, 11);
const checkpoint = encodeSafetensors(asSafetensors(weights));

/** Seeded token sequences of S tokens. */
function sequences(n: number, seed: number): number[][] {
  let x = seed;
  const next = () => ((x = (x * 1103515245 + 12345) % 2147483648) >>> 8) % s.vocab;
  return Array.from({ length: n }, () => Array.from({ length: S }, next));
}

async function session(options: LlamaOptions, name: string): Promise<{ session: Session; plan: Awaited<ReturnType<typeof compileGraph>> }> {
  const g = new Graph(name);
  for (const [output, t] of Object.entries(llama(g, CONFIG, options))) g.output(output, t);
  const plan = await compileGraph(g, { weights: 'none', entries: llamaEntries(options) });
  const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
  expect(session.loadWeights(checkpoint).loaded).toHaveLength(weights.size);
  return { session, plan };
}

let batched: { session: Session; plan: Awaited<ReturnType<typeof compileGraph>> };
let model: PlanBatchedLanguageModel;
beforeAll(async () => {
  batched = await session(BATCHED, 'llama_batch');
  model = planBatchedLanguageModel(batched.session);
}, 300_000);

afterAll(async () => {
  batched?.session.destroy();
  await releaseSharedDevice();
});

describe('the batched plan', () => {
  test('entries, slots, and one set of dispatches per step whatever the batch', async () => {
    const { entryPoints } = batched.plan.manifest;
    expect(Object.keys(entryPoints).sort()).toEqual(['decode_batch', 'prefill']);
    expect(entryPoints.decode_batch.inputs.map((i) => `${i.name} ${i.dtype} [${i.shape}]`).sort()).toEqual(['positions f32 [4]', 'tokens i32 [4]']);
    expect(entryPoints.prefill.inputs.map((i) => i.name).sort()).toEqual(['length', 'prompt', 'slot']);
    expect([model.maxBatch, model.maxSequenceLength, model.maxPromptLength, model.vocabSize]).toEqual([4, S, 8, 300]);
    // the single-sequence plan's decode and a batch of 16's decode_batch: the same dispatch count
    // (give or take the row offsets' few pointwise ops), so nothing loops over the sequences
    const count = async (options: LlamaOptions, entry: string) => {
      const g = new Graph('count');
      for (const [output, t] of Object.entries(llama(g, CONFIG, options))) g.output(output, t);
      return (await compileGraph(g, { weights: 'none', entries: llamaEntries(options) })).manifest.entryPoints[entry].dispatches.length;
    };
    const single = await count({ maxSequence: S, maxPrompt: 8 }, 'decode');
    const four = entryPoints.decode_batch.dispatches.length;
    expect(await count({ ...BATCHED, decodeBatch: 16 }, 'decode_batch')).toBe(four);
    expect(four).toBeLessThanOrEqual(single + 2);
  }, 300_000);

  test('each row of a decode step equals the logits of its own sequence, with joins, pauses, leaves and reused slots', async () => {
    const seqs = sequences(5, 5);
    const reference = seqs.map((q) => referenceLogits(s, weights, q));
    const row = (i: number, p: number) => reference[i].subarray(p * s.vocab, (p + 1) * s.vocab);
    // slot → [sequence, next position]
    const running = new Map<number, [number, number]>();
    const start = async (slot: number, sequence: number, length: number) => {
      const logits = await model.prefill(slot, seqs[sequence].slice(0, length));
      expectClose(logits, row(sequence, length - 1), 2e-4, 2e-4, `prefill of sequence ${sequence} (${length} tokens) in slot ${slot}`);
      running.set(slot, [sequence, length]);
    };
    const step = async (paused: number[] = []) => {
      const requests = [...running].filter(([slot, [, p]]) => p < S && !paused.includes(slot)).map(([slot, [q, p]]) => ({ slot, token: seqs[q][p], position: p }));
      const out = await model.decodeBatch(requests);
      requests.forEach((r, n) => {
        const [q] = running.get(r.slot)!;
        expectClose(out[n], row(q, r.position), 2e-4, 2e-4, `slot ${r.slot}, sequence ${q} at position ${r.position}`);
        running.set(r.slot, [q, r.position + 1]);
      });
    };
    await start(0, 0, 5);
    await start(1, 1, 3);
    await start(3, 3, 10); // longer than one prefill: two decode steps of slot 3 alone
    await step();
    await step([0]); // slot 0 sits out a step: its idle row must write nothing (row 0 of its slot, or the previous slot's last)
    await start(2, 2, 4); // joins between steps
    await step();
    running.delete(1); // leaves; its slot is reused by another sequence
    model.release(1);
    await start(1, 4, 2);
    for (let n = 0; n < 4; n++) await step();
    expect([...running.values()].map(([q, p]) => `${q}@${p}`).sort()).toEqual(['0@11', '2@9', '3@12', '4@6']);
  });
});

async function collect(steps: AsyncIterable<GeneratedToken>): Promise<number[]> {
  const out: number[] = [];
  for await (const step of steps) out.push(step.token);
  return out;
}

test('the scheduler over the batched plan: concurrent sequences get the tokens each gets alone on the single-sequence plan', async () => {
  const single = await session({ maxSequence: S, maxPrompt: 8 }, 'llama_single');
  try {
    const alone = planLanguageModel(single.session);
    const prompts = sequences(6, 9).map((q, i) => q.slice(0, 2 + (i % 4)));
    const options = (i: number) => (i % 2 === 0 ? { maxNewTokens: 6 } : { doSample: true, temperature: 1.5, topK: 0, seed: 100 + i, maxNewTokens: 5 + (i % 3) });
    // six sequences over four slots: two wait and join as others finish
    const scheduler = new BatchScheduler(model, { maxQueue: 8 });
    const together = await Promise.all(prompts.map((p, i) => collect(scheduler.submit(new Generation(p, options(i), model.maxSequenceLength)))));
    for (const [i, p] of prompts.entries()) expect(together[i], `sequence ${i}`).toEqual(await collect(generate(alone, p, options(i))));
    expect(together.map((t) => t.length)).toEqual(prompts.map((_, i) => options(i).maxNewTokens));
  } finally {
    single.session.destroy();
  }
}, 300_000);
