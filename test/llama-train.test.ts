// models/llama.ts's training plan: the causal-LM loss (logits at 0 .. T-2 against tokens
// 1 .. T-1, as LlamaForCausalLM with labels = input_ids) on the CPU reference and on the GPU
// with a seeded checkpoint loaded by name, against the float64 reference's loss; then AdamW
// steps on one sequence lower it.
import { afterAll, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { interpret } from '../compiler/ir/interpret';
import { DEFAULT_OPTIMIZER, llama, llamaEntries, llamaModel, llamaShape, type HfLlamaConfig, type LlamaOptions } from '../models/llama';
import { encodeSafetensors } from '../runtime/index';
import { loadTrainingPlan } from '../runtime/training';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { asSafetensors, randomCheckpoint, referenceLoss } from './llama-reference';
import { LLAMA_TRAIN_CONFIG } from '../fixtures/models/llama-train-tiny';

afterAll(releaseSharedDevice);

/** SmolLM2's keys at toy size: tied head, GQA 4:2 (the CLI tests' fixture model's config). */
const CONFIG: HfLlamaConfig = LLAMA_TRAIN_CONFIG;
const OPTIONS: LlamaOptions = { forward: 12, train: true };
const TOKENS = Int32Array.from([17, 203, 5, 99, 250, 1, 42, 131, 77, 8, 299, 60]);
const s = llamaShape(CONFIG);
const weights = randomCheckpoint(s, 7);
const expected = referenceLoss(s, weights, TOKENS);

test('the model definition compiles a train_step with AdamW by default', () => {
  expect(llamaModel(CONFIG, OPTIONS).train).toEqual({ loss: 'loss', optimizer: DEFAULT_OPTIMIZER });
  expect(llamaModel(CONFIG, { forward: 12 }).train).toBeUndefined();
  expect(() => llama(new Graph('no_forward'), CONFIG, { maxSequence: 8, train: true })).toThrow(/train needs forward/);
});

test('CPU reference of the loss equals the float64 causal-LM loss', () => {
  const g = new Graph('llama_loss_cpu');
  g.output('loss', llama(g, CONFIG, OPTIONS).loss);
  const parameters = new Map([...weights].map(([name, w]) => [name, w.data]));
  const cpu = interpret(g, { tokens: TOKENS }, parameters);
  expect(Math.abs(cpu.loss[0] - expected)).toBeLessThan(1e-9);
});

test('GPU train_step: the first loss equals the reference; AdamW steps lower it', async () => {
  const g = new Graph('llama_train');
  for (const [name, t] of Object.entries(llama(g, CONFIG, OPTIONS))) g.output(name, t);
  const plan = await compileGraph(g, { weights: 'none', entries: llamaEntries(OPTIONS), training: { loss: 'loss', optimizer: { kind: 'adamw', lr: 1e-3 } } });
  const step = plan.manifest.entryPoints.train_step;
  // the ids are checked against the vocabulary before they reach the GPU
  expect(step.inputs.find((i) => i.name === 'tokens')?.range).toEqual({ min: 0, max: s.vocab - 1 });
  const session = await loadTrainingPlan(plan.bundle, (await sharedDevice()).device);
  try {
    expect(session.loadWeights(encodeSafetensors(asSafetensors(weights))).loaded.length).toBe(weights.size);
    const losses: number[] = [];
    for (let i = 0; i < 6; i++) losses.push(await session.step({ tokens: TOKENS }));
    // f32 on the GPU against float64: the loss (about 22: the seeded tied head is sharp) within 1e-4 absolute
    expect(Math.abs(losses[0] - expected)).toBeLessThan(1e-4);
    for (let i = 1; i < losses.length; i++) expect(losses[i]).toBeLessThan(losses[i - 1]);
    expect(losses[5]).toBeLessThan(losses[0] - 0.1);
  } finally {
    session.destroy();
  }
}, 180_000); // a cold shader cache made the first run here take 77 s; warm, 5 s
