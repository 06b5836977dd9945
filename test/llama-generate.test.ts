// A language-model plan end to end with a real tokenizer (Mistral-7B's, 32000 tokens): the
// toy Llama of fixtures/models/llama-tiny.ts compiled by the built CLI without weights, a seeded
// checkpoint written as safetensors, then generate() over planLanguageModel, `mnc generate` and
// `mnc serve` — each greedy continuation against the float64 reference's (test/llama-reference.ts);
// then the same model compiled with a cache of 4 slots (fixtures/models/llama-tiny-batch.ts)
// behind `mnc serve`, concurrent streams from the openai client decoded together.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { ensureTokenizerFixtures } from '../scripts/tokenizer-fixtures.mjs';
import { LLAMA_TINY_CONFIG, LLAMA_TINY_OPTIONS } from '../fixtures/models/llama-tiny';
import { llamaShape } from '../models/llama';
import { encodeSafetensors, loadPlan } from '../runtime/index';
import { generate, planLanguageModel, type Tokenizer } from '../runtime/text';
import { loadTokenizerDirectory } from '../runtime/text/node';
import { cliRunner, diagnostics } from './cli-runner';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { asSafetensors, randomCheckpoint, referenceLogits } from './llama-reference';

const root = fileURLToPath(new URL('..', import.meta.url));
const mnc = cliRunner(join(root, 'dist', 'mnc.mjs'), root);
const s = llamaShape(LLAMA_TINY_CONFIG);
const weights = randomCheckpoint(s, 3);
// longer than the plan's 8-token prefill: the rest of the prompt goes through decode steps
const PROMPT = 'The quick brown fox jumps over the lazy dog';
const NEW_TOKENS = 5;

let dir: string;
let plan: string;
let batchPlan: string;
let checkpoint: string;
let tokenizerDir: string;
let tokenizer: Tokenizer;
let expectedIds: number[];
/** the continuation's text as a stream after the prompt gives it (SentencePiece's leading spaces kept) */
let expectedText: string;

beforeAll(async () => {
  tokenizerDir = ensureTokenizerFixtures()['mistral-7b'];
  tokenizer = await loadTokenizerDirectory(tokenizerDir);
  expect(tokenizer.vocabSize).toBe(s.vocab);
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'pipe' });
  dir = mkdtempSync(join(tmpdir(), 'mnc-llama-'));
  plan = join(dir, 'tiny.mnplan');
  checkpoint = join(dir, 'model.safetensors');
  writeFileSync(checkpoint, encodeSafetensors(asSafetensors(weights)));
  const compiled = mnc('compile', 'fixtures/models/llama-tiny.ts', '--no-weights', '-o', plan);
  expect(compiled.status, diagnostics(compiled).join('\n')).toBe(0);
  batchPlan = join(dir, 'tiny-batch.mnplan');
  const compiledBatch = mnc('compile', 'fixtures/models/llama-tiny-batch.ts', '--no-weights', '-o', batchPlan);
  expect(compiledBatch.status, diagnostics(compiledBatch).join('\n')).toBe(0);
  expect(tokenizer.encode(PROMPT).length).toBeGreaterThan(LLAMA_TINY_OPTIONS.maxPrompt);
  [expectedIds, expectedText] = referenceContinuation(PROMPT, NEW_TOKENS);
}, 600_000);

/** The reference's greedy continuation of a prompt (ids and text), each step clear of a near tie (so f32 picks the same). */
function referenceContinuation(prompt: string, tokens: number): [number[], string] {
  const promptIds = tokenizer.encode(prompt);
  const ids = [...promptIds];
  const generated: number[] = [];
  for (let n = 0; n < tokens; n++) {
    const logits = referenceLogits(s, weights, ids);
    const last = Array.from(logits.subarray((ids.length - 1) * s.vocab));
    const order = last.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0]);
    expect(order[0][0] - order[1][0], `margin of the reference's step ${n} after "${prompt}"`).toBeGreaterThan(1e-3);
    generated.push(order[0][1]);
    ids.push(order[0][1]);
  }
  const text = (t: number[]) => tokenizer.decode(t, { skipSpecialTokens: true });
  return [generated, text([...promptIds, ...generated]).slice(text(promptIds).length)];
}

/** `mnc serve` on a plan in a child process, until it says it is ready; returns its base URL and a stop function. */
async function serve(planFile: string, ...flags: string[]): Promise<{ base: string; output: () => string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [join(root, 'dist', 'mnc.mjs'), 'serve', planFile, '--weights', checkpoint, '--tokenizer', tokenizerDir, '--port', '0', '--model-name', 'tiny', ...flags], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const stop = async () => {
    child.kill('SIGTERM');
    if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
  };
  const started = Date.now();
  while (!/ready: model/.test(output) && child.exitCode === null && Date.now() - started < 60_000) await new Promise((r) => setTimeout(r, 50));
  const base = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
  if (!/ready: model 'tiny'/.test(output) || !base) {
    await stop();
    throw new Error(`mnc serve did not start:\n${output}`);
  }
  return { base, output: () => output, stop };
}

afterAll(async () => {
  await releaseSharedDevice();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('generate() over the plan: the greedy continuation of a prompt longer than one prefill', async () => {
  const session = await loadPlan(new Uint8Array(readFileSync(plan)), (await sharedDevice()).device);
  try {
    expect(session.loadWeights(readFileSync(checkpoint)).loaded).toHaveLength(weights.size);
    const model = planLanguageModel(session);
    expect([model.maxSequenceLength, model.maxPromptLength, model.vocabSize]).toEqual([24, 8, 32000]);
    const steps = [];
    for await (const step of generate(model, PROMPT, { tokenizer, maxNewTokens: NEW_TOKENS })) steps.push(step);
    expect(steps.map((t) => t.token)).toEqual(expectedIds);
    expect(steps.at(-1)!.finishReason).toBe('length');
    // a second generation on the same session starts over (the prefill replaces the cache)
    const again = [];
    for await (const step of generate(model, PROMPT, { tokenizer, maxNewTokens: 2 })) again.push(step.token);
    expect(again).toEqual(expectedIds.slice(0, 2));
  } finally {
    session.destroy();
  }
});

test('mnc generate streams the same text, with tokens/s; a seeded sample repeats', () => {
  const greedy = mnc('generate', plan, '--weights', checkpoint, '--tokenizer', tokenizerDir, '--prompt', PROMPT, '--max-new-tokens', String(NEW_TOKENS));
  expect(greedy.status, diagnostics(greedy).join('\n')).toBe(0);
  expect(greedy.stdout).toBe(`${expectedText}\n`);
  expect(diagnostics(greedy).join('\n')).toMatch(/prompt tokens, prefill [\d.]+ ms; 5 tokens generated \(length\), decode [\d.]+ ms: [\d.]+ tokens\/s/);
  // the plan of 4 slots generates the same in its first slot
  const batched = mnc('generate', batchPlan, '--weights', checkpoint, '--tokenizer', tokenizerDir, '--prompt', PROMPT, '--max-new-tokens', String(NEW_TOKENS));
  expect(batched.status, diagnostics(batched).join('\n')).toBe(0);
  expect(batched.stdout).toBe(`${expectedText}\n`);
  const sampled = () => mnc('generate', plan, '--weights', checkpoint, '--tokenizer', tokenizerDir, '--prompt', PROMPT, '--max-new-tokens', '4', '--temperature', '0.8', '--top-p', '0.9', '--seed', '7');
  const [a, b] = [sampled(), sampled()];
  expect(a.status, diagnostics(a).join('\n')).toBe(0);
  expect(a.stdout).toBe(b.stdout);
});

test('mnc serve answers a completion from the plan', async () => {
  const server = await serve(plan);
  try {
    const response = await fetch(`${server.base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', prompt: PROMPT, max_tokens: NEW_TOKENS, temperature: 0 }),
    });
    const body = (await response.json()) as { choices: { text: string; finish_reason: string }[]; usage: { completion_tokens: number } };
    expect(response.status, JSON.stringify(body)).toBe(200);
    expect(body.choices[0].text).toBe(expectedText);
    expect(body.usage.completion_tokens).toBe(NEW_TOKENS);
  } finally {
    await server.stop();
  }
});

test('mnc serve on a plan of 4 slots: concurrent streams from the openai client decode together, each as it would alone', async () => {
  const server = await serve(batchPlan);
  try {
    expect(server.output()).toMatch(/batch up to 4/);
    const client = new OpenAI({ baseURL: `${server.base}/v1`, apiKey: 'none', maxRetries: 0, timeout: 60_000 });
    const streamed = async (prompt: string, options: { max_tokens: number; temperature: number; seed?: number }) => {
      const stream = await client.completions.create({ model: 'tiny', prompt, stream: true, ...options });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
      return text;
    };
    // greedy: the reference's continuations; prompts of different lengths (one longer than a prefill), so positions differ
    const prompts = [PROMPT, 'Once upon a time', 'A B C', 'The rain in Spain stays mainly in the plain'];
    const expected = prompts.map((p, i) => (i === 0 ? expectedText : referenceContinuation(p, NEW_TOKENS)[1]));
    const sampled = { max_tokens: 6, temperature: 0.9, seed: 5 };
    // four greedy and two sampled streams over four slots: two wait for a slot and join mid-way
    const together = await Promise.all([...prompts.map((p) => streamed(p, { max_tokens: NEW_TOKENS, temperature: 0 })), streamed('Hello', sampled), streamed('Hello', { ...sampled, seed: 6 })]);
    expect(together.slice(0, 4)).toEqual(expected);
    // a seeded sample is the same alone as it was among the others
    expect(await streamed('Hello', sampled)).toBe(together[4]);
    expect(await streamed('Hello', { ...sampled, seed: 6 })).toBe(together[5]);
    // the steps ran several sequences at once: the batch-size histogram saw a step of more than one
    const metrics = await (await fetch(`${server.base}/metrics`)).text();
    const single = Number(/mnc_batch_size_bucket\{le="1"\} (\d+)/.exec(metrics)?.[1]);
    const steps = Number(/mnc_batch_size_count (\d+)/.exec(metrics)?.[1]);
    expect(steps, metrics).toBeGreaterThan(single);
  } finally {
    await server.stop();
  }
});
