// Load and faults against `mnc serve`: many concurrent streaming chat clients, some leaving
// mid-stream, with malformed and oversized requests mixed in. Every answer is checked: a
// stream must be well-formed SSE (one id, a role first, a finish reason, usage, [DONE]) and
// clients with the same seed must get the same text (a disconnected one a prefix of it), so a
// batching bug that mixes sequences shows as `garbled`; a request that neither completes, nor
// is refused with an OpenAI error, nor was dropped on purpose is `lost`. The goal is none of
// either. runLoad() is also the short load test in test/serve.test.ts.
//
// A CPU program (the server runs the bigram TEST model; no GPU involved):
//   node scripts/build.mjs && npx tsx bench/serve-load.ts [--step-ms 2] [--max-tokens 64]
// starts `mnc serve --fake-model bigram` in a child process (batch 64, queue 64), then runs
// 64 concurrent streaming clients, then 256 twice, and prints the figures of each phase and the
// server's memory (from its /metrics) before and after each.
//   node --expose-gc --import tsx bench/serve-load.ts --leak-check
// runs the server in this process instead and prints the V8 heap after a full collection
// between rounds of 128 clients: the figure that says whether memory is flat (the child's
// rss and heap move with V8's collection schedule).
//
// On the GPU machine, a real plan (models/llama.ts; bench/models/smollm2-135m-serve.ts):
//   node dist/serve-load.mjs --plan smollm2-batch64.mnplan --tokenizer fixtures/tokenizers/mistral-7b \
//       [--weights model.safetensors] [--baseline-plan smollm2-single.mnplan] [--streams 1,8,32,64] [--max-tokens 64]
// serves the plan and, at each number of concurrent streams, reports the aggregate completion
// tokens/s the clients received and the decode tokens/s of the server's steps (/metrics: tokens
// of every decode step over their time); then the same plan with --max-batch 1 (one request at
// a time, the others queued), and the baseline plan (a single-sequence decode) likewise.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { uniform } from '../runtime/text/random';

export interface LoadOptions {
  /** the server, e.g. http://127.0.0.1:8080 */
  base: string;
  model: string;
  /** concurrent clients, all started at once */
  clients: number;
  maxTokens: number;
  /** share of clients that leave mid-stream (or before the first byte) */
  disconnectFraction: number;
  /** share of clients that send a malformed, oversized or invalid request */
  faultFraction: number;
  /** the size of an oversized body, bytes (above the server's limit); default 2 MiB */
  oversizeBytes?: number;
  /** seeds the mix of clients */
  seed: number;
  /** a client not done by then is lost */
  deadlineMs: number;
  apiKey?: string;
}

export interface LoadReport {
  clients: number;
  completed: number;
  /** clients that left on purpose */
  disconnected: number;
  /** refusals with an OpenAI error body, by status (faults refused as expected included) */
  rejected: Record<string, number>;
  /** malformed, oversized and invalid requests sent, and how many got the refusal expected */
  faults: { sent: number; refusedAsExpected: number };
  lost: number;
  garbled: number;
  /** why each lost or garbled client was counted so (the first few) */
  problems: string[];
  /** time to the first content token, completed streams, ms */
  ttftMs: { p50: number; p99: number };
  /** completion tokens received (usage of completed streams, chunks of the others) */
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
}

type Outcome =
  | { kind: 'completed'; seed: number; text: string; tokens: number; ttftMs: number }
  | { kind: 'disconnected'; seed: number; text: string; tokens: number }
  | { kind: 'rejected'; status: number; fault: boolean; expected: boolean }
  | { kind: 'lost' | 'garbled'; why: string };

const SEEDS = 8; // clients share seeds so their answers can be compared

export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const started = performance.now();
  const outcomes = await Promise.all(Array.from({ length: options.clients }, (_, i) => client(options, i)));
  const seconds = (performance.now() - started) / 1000;
  return report(options, outcomes, seconds);
}

async function client(o: LoadOptions, i: number): Promise<Outcome> {
  const draw = (k: number) => uniform(BigInt(o.seed), i * 4 + k);
  const seed = i % SEEDS;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (o.apiKey) headers.authorization = `Bearer ${o.apiKey}`;
  const body = { model: o.model, messages: [{ role: 'user', content: `Tell me about ${seed}` }], max_tokens: o.maxTokens, seed, stream: true, stream_options: { include_usage: true } };
  const deadline = AbortSignal.timeout(o.deadlineMs);

  if (draw(0) < o.faultFraction) {
    const which = Math.floor(draw(1) * 3);
    const [payload, expected] =
      which === 0
        ? ['{"model": "' + o.model + '", "messages": [{"role": "user", "content": "unterminated', 400]
        : which === 1
          ? [JSON.stringify({ ...body, messages: [{ role: 'user', content: 'x'.repeat(o.oversizeBytes ?? 2 << 20) }] }), 413]
          : [JSON.stringify({ ...body, n: 3 }), 400];
    try {
      const r = await fetch(`${o.base}/v1/chat/completions`, { method: 'POST', headers, body: payload as string, signal: deadline });
      const error = await r.json().catch(() => undefined);
      if (!error?.error?.message || !error.error.type) return { kind: 'garbled', why: `fault ${which}: status ${r.status} without an OpenAI error body` };
      return { kind: 'rejected', status: r.status, fault: true, expected: r.status === expected };
    } catch (e) {
      // the server may close the connection of an oversized body before the client has sent it all
      if (which === 1 && !deadline.aborted) return { kind: 'rejected', status: 413, fault: true, expected: true };
      return { kind: 'lost', why: `fault ${which}: ${(e as Error).message}` };
    }
  }

  // leave after this many content chunks (0: right after sending), or never
  const leaveAfter = draw(2) < o.disconnectFraction ? Math.floor(draw(3) * o.maxTokens * 0.8) : Infinity;
  const abort = new AbortController();
  const signal = AbortSignal.any([abort.signal, deadline]);
  const sent = performance.now();
  let r: Response;
  try {
    if (leaveAfter === 0) setTimeout(() => abort.abort(), 2);
    r = await fetch(`${o.base}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify(body), signal });
  } catch (e) {
    if (abort.signal.aborted) return { kind: 'disconnected', seed, text: '', tokens: 0 };
    return { kind: 'lost', why: `request: ${(e as Error).message}` };
  }
  if (r.status !== 200) {
    const error = await r.json().catch(() => undefined);
    if (!error?.error?.message) return { kind: 'garbled', why: `status ${r.status} without an OpenAI error body` };
    if (r.status === 503 && !r.headers.get('retry-after')) return { kind: 'garbled', why: '503 without Retry-After' };
    return { kind: 'rejected', status: r.status, fault: false, expected: true };
  }

  const events: string[] = [];
  let text = '';
  let chunks = 0;
  let ttftMs = -1;
  let pending = '';
  const decoder = new TextDecoder();
  try {
    for await (const bytes of r.body as unknown as AsyncIterable<Uint8Array>) {
      pending += decoder.decode(bytes, { stream: true });
      let end;
      while ((end = pending.indexOf('\n\n')) >= 0) {
        const event = pending.slice(0, end);
        pending = pending.slice(end + 2);
        events.push(event);
        if (!event.startsWith('data: {')) continue;
        const content = JSON.parse(event.slice(6)).choices?.[0]?.delta?.content;
        if (content) {
          if (ttftMs < 0) ttftMs = performance.now() - sent;
          text += content;
          chunks++;
          if (chunks >= leaveAfter) abort.abort();
        }
      }
    }
  } catch (e) {
    if (abort.signal.aborted) return { kind: 'disconnected', seed, text, tokens: chunks };
    return { kind: 'lost', why: `stream: ${(e as Error).message}` };
  }
  if (abort.signal.aborted) return { kind: 'disconnected', seed, text, tokens: chunks };
  const problem = checkStream(events, pending, o.maxTokens);
  if (problem) return { kind: problem.lost ? 'lost' : 'garbled', why: problem.why };
  const usage = JSON.parse(events.at(-2)!.slice(6)).usage;
  return { kind: 'completed', seed, text, tokens: usage.completion_tokens, ttftMs };
}

/** What is wrong with a finished stream, or undefined. */
function checkStream(events: string[], rest: string, maxTokens: number): { lost: boolean; why: string } | undefined {
  if (rest !== '') return { lost: false, why: `bytes after the last event: ${JSON.stringify(rest.slice(0, 80))}` };
  if (events.at(-1) !== 'data: [DONE]') {
    const error = events.find((e) => e.includes('"error"'));
    return { lost: true, why: error ? `an error event: ${error.slice(0, 200)}` : 'the stream ended without [DONE]' };
  }
  let chunks;
  try {
    chunks = events.slice(0, -1).map((e) => {
      if (!e.startsWith('data: ')) throw new Error(`not a data event: ${e.slice(0, 80)}`);
      return JSON.parse(e.slice(6));
    });
  } catch (e) {
    return { lost: false, why: (e as Error).message };
  }
  if (chunks.length < 3) return { lost: false, why: `${chunks.length} chunks` };
  if (new Set(chunks.map((c) => c.id)).size !== 1) return { lost: false, why: 'chunks of one stream carry different ids' };
  if (chunks.some((c) => c.object !== 'chat.completion.chunk')) return { lost: false, why: 'a chunk is not a chat.completion.chunk' };
  if (chunks[0].choices[0]?.delta?.role !== 'assistant') return { lost: false, why: 'the first chunk carries no role' };
  const finish = chunks.at(-2).choices[0]?.finish_reason;
  const usage = chunks.at(-1).usage;
  if (!['stop', 'length'].includes(finish)) return { lost: false, why: `finish reason ${finish}` };
  if (chunks.at(-1).choices.length !== 0 || !usage) return { lost: false, why: 'no usage chunk' };
  if (usage.total_tokens !== usage.prompt_tokens + usage.completion_tokens) return { lost: false, why: 'usage does not add up' };
  if (finish === 'length' ? usage.completion_tokens !== maxTokens : usage.completion_tokens > maxTokens) return { lost: false, why: `${usage.completion_tokens} tokens, finish ${finish}` };
  return undefined;
}

function report(o: LoadOptions, outcomes: Outcome[], seconds: number): LoadReport {
  const problems: string[] = [];
  const rejected: Record<string, number> = {};
  const faults = { sent: 0, refusedAsExpected: 0 };
  const bySeed = new Map<number, string>();
  let lost = 0;
  let garbled = 0;
  let tokens = 0;
  const ttft: number[] = [];
  for (const out of outcomes) {
    if (out.kind === 'completed') {
      ttft.push(out.ttftMs);
      tokens += out.tokens;
      const other = bySeed.get(out.seed);
      if (other !== undefined && other !== out.text) {
        garbled++;
        problems.push(`seed ${out.seed}: two completed answers differ`);
      }
      bySeed.set(out.seed, out.text);
    } else if (out.kind === 'disconnected') tokens += out.tokens;
    else if (out.kind === 'rejected') {
      rejected[out.status] = (rejected[out.status] ?? 0) + 1;
      if (out.fault) {
        faults.sent++;
        if (out.expected) faults.refusedAsExpected++;
        else {
          garbled++;
          problems.push(`a fault got status ${out.status}`);
        }
      }
    } else {
      if (out.kind === 'lost') lost++;
      else garbled++;
      problems.push(out.why);
    }
  }
  for (const out of outcomes) {
    if (out.kind !== 'disconnected') continue;
    const whole = bySeed.get(out.seed);
    if (whole !== undefined && !whole.startsWith(out.text)) {
      garbled++;
      problems.push(`seed ${out.seed}: a disconnected client's text is not a prefix of the answer`);
    }
  }
  ttft.sort((a, b) => a - b);
  const pick = (q: number) => (ttft.length === 0 ? NaN : ttft[Math.min(ttft.length - 1, Math.floor(q * ttft.length))]!);
  return {
    clients: o.clients,
    completed: outcomes.filter((x) => x.kind === 'completed').length,
    disconnected: outcomes.filter((x) => x.kind === 'disconnected').length,
    rejected,
    faults,
    lost,
    garbled,
    problems: problems.slice(0, 10),
    ttftMs: { p50: pick(0.5), p99: pick(0.99) },
    tokens,
    seconds,
    tokensPerSecond: tokens / seconds,
  };
}

// --- the program ------------------------------------------------------------------------

async function serverMemory(base: string): Promise<{ rss: number; heap: number }> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  return { rss: value('process_resident_memory_bytes'), heap: value('nodejs_heap_used_bytes') };
}

function printPhase(name: string, r: LoadReport): void {
  const rejected = Object.entries(r.rejected).map(([s, n]) => `${s}: ${n}`).join(', ') || 'none';
  console.log(`\n${name}: ${r.clients} clients in ${r.seconds.toFixed(2)} s`);
  console.log(`  completed ${r.completed}, disconnected on purpose ${r.disconnected}, rejected ${rejected} (faults sent ${r.faults.sent}, refused as expected ${r.faults.refusedAsExpected})`);
  console.log(`  lost ${r.lost}, garbled ${r.garbled}${r.problems.length ? `: ${r.problems.join('; ')}` : ''}`);
  console.log(`  time to first token p50 ${r.ttftMs.p50.toFixed(1)} ms, p99 ${r.ttftMs.p99.toFixed(1)} ms; ${r.tokens} tokens, ${r.tokensPerSecond.toFixed(0)} tokens/s aggregate`);
}

/** Rounds of load against a server in this process, with the heap measured after full collections. */
async function leakCheck(tokenizerDir: string, stepMs: number, maxTokens: number): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('--leak-check needs node --expose-gc');
  const { ModelServer, BigramTestModel } = await import('../runtime/serve');
  const { loadTokenizerDirectory } = await import('../runtime/text/node');
  const tokenizer = await loadTokenizerDirectory(tokenizerDir);
  const server = new ModelServer({ onError: () => {}, scheduler: { maxBatch: 64, maxQueue: 64 } });
  const { port } = await server.listen(0);
  server.serve({ name: 'bigram-test', model: BigramTestModel.forTokenizer(tokenizer, { stepMs }), tokenizer });
  const base = `http://127.0.0.1:${port}`;
  const heap = async () => {
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 100));
    }
    return `${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(1)} MiB`;
  };
  console.log(`server in this process; V8 heap used after a full collection: ${await heap()} before load`);
  for (let round = 0; round < 6; round++) {
    const r = await runLoad({ base, model: 'bigram-test', clients: 128, maxTokens, disconnectFraction: 0.2, faultFraction: 0.1, seed: round, deadlineMs: 120_000 });
    console.log(`  round ${round + 1}: 128 clients, completed ${r.completed}, lost ${r.lost}, garbled ${r.garbled}; heap after collection ${await heap()}`);
  }
  await server.shutdown(0);
}

// --- a real plan: decode throughput by concurrent streams ---------------------------------

/** `mnc serve` in a child process until /ready answers 200; its base URL and a stop function. */
async function startServer(args: string[]): Promise<{ base: string; stop: () => Promise<void> }> {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const child = spawn(process.execPath, [join(root, 'dist', 'mnc.mjs'), 'serve', ...args, '--port', '0', '--grace', '5'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  const deadline = Date.now() + 600_000;
  const waitFor = async (ready: () => boolean | Promise<boolean>) => {
    while (!(await ready())) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`mnc serve did not start (run node scripts/build.mjs first):\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await waitFor(() => /listening on/.test(output));
  const base = /listening on (\S+)/.exec(output)![1]!;
  await waitFor(async () => (await fetch(`${base}/ready`)).status === 200);
  const stop = async () => {
    child.kill('SIGTERM');
    if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
  };
  return { base, stop };
}

/** One streamed text completion; the completion tokens its usage reports. */
async function streamCompletion(base: string, prompt: string, maxTokens: number, temperature: number): Promise<number> {
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'served', prompt, max_tokens: maxTokens, temperature, seed: 1, stream: true, stream_options: { include_usage: true } }),
  });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`status ${r.status}: ${text.slice(0, 300)}`);
  const usage = text
    .split('\n\n')
    .filter((e) => e.startsWith('data: {'))
    .map((e) => JSON.parse(e.slice(6)))
    .find((c) => c.usage)?.usage;
  if (!usage) throw new Error(`a stream without usage: ${text.slice(-300)}`);
  return usage.completion_tokens;
}

/** Sums of the server's decode-step figures (/metrics): steps, their sequences and their seconds. */
async function decodeSteps(base: string): Promise<{ steps: number; tokens: number; seconds: number }> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return { steps: value('mnc_decode_step_seconds_count'), tokens: value('mnc_batch_size_sum'), seconds: value('mnc_decode_step_seconds_sum') };
}

interface ThroughputRow {
  streams: number;
  tokens: number;
  seconds: number;
  /** completion tokens the clients received per second of wall time (prefills included) */
  aggregate: number;
  /** tokens of the decode steps per second of decode-step time */
  decode: number;
  meanBatch: number;
  stepMs: number;
}

/** Each number of concurrent streams in turn against one server: c streams of maxTokens tokens, all started at once. */
async function throughput(base: string, streams: readonly number[], maxTokens: number, temperature: number): Promise<ThroughputRow[]> {
  const prompt = (i: number) => `Request ${i}: once upon a time, in a land far away, there lived`;
  await Promise.all(Array.from({ length: 4 }, (_, i) => streamCompletion(base, prompt(i), 4, temperature))); // warm up
  const rows: ThroughputRow[] = [];
  for (const c of streams) {
    const before = await decodeSteps(base);
    const t0 = performance.now();
    const counts = await Promise.all(Array.from({ length: c }, (_, i) => streamCompletion(base, prompt(i), maxTokens, temperature)));
    const seconds = (performance.now() - t0) / 1000;
    const after = await decodeSteps(base);
    const tokens = counts.reduce((a, b) => a + b, 0);
    const [steps, stepTokens, stepSeconds] = [after.steps - before.steps, after.tokens - before.tokens, after.seconds - before.seconds];
    rows.push({ streams: c, tokens, seconds, aggregate: tokens / seconds, decode: stepTokens / stepSeconds, meanBatch: stepTokens / steps, stepMs: (1000 * stepSeconds) / steps });
  }
  return rows;
}

function printThroughput(title: string, rows: readonly ThroughputRow[]): void {
  console.log(`\n${title}`);
  console.log('| streams | tokens | wall s | aggregate tokens/s | decode tokens/s (steps) | mean batch | step ms |');
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    console.log(`| ${r.streams} | ${r.tokens} | ${r.seconds.toFixed(2)} | ${r.aggregate.toFixed(0)} | ${r.decode.toFixed(0)} | ${r.meanBatch.toFixed(1)} | ${r.stepMs.toFixed(2)} |`);
  }
}

/** The --plan mode: the plan batched, then one request at a time, then the baseline plan if given. */
async function planThroughput(arg: (name: string, fallback: string) => string): Promise<void> {
  const plan = arg('--plan', '');
  const tokenizer = arg('--tokenizer', '');
  if (!tokenizer) throw new Error('--plan needs --tokenizer DIR (a tokenizer.json whose vocabulary fits the plan\'s)');
  const weights = arg('--weights', '');
  const baseline = arg('--baseline-plan', '');
  const streams = arg('--streams', '1,8,32,64').split(',').map(Number);
  const maxTokens = Number(arg('--max-tokens', '64'));
  const temperature = Number(arg('--temperature', '0'));
  const served = (file: string, ...flags: string[]) => [file, '--tokenizer', tokenizer, ...(weights ? ['--weights', weights] : []), '--model-name', 'served', '--max-queue', '1024', ...flags];
  console.log(`${plan}: ${maxTokens} completion tokens a stream, temperature ${temperature}`);
  const runs: [string, string[], number[]][] = [
    [`${plan}, batched`, served(plan), streams],
    [`${plan} with --max-batch 1 (one request at a time)`, served(plan, '--max-batch', '1'), streams.filter((c) => c <= 8)],
    ...(baseline ? [[`${baseline} (single-sequence plan, one request at a time)`, served(baseline), streams.filter((c) => c <= 8)] as [string, string[], number[]]] : []),
  ];
  for (const [title, args, counts] of runs) {
    const t0 = performance.now();
    const server = await startServer(args);
    console.log(`\n${title}: ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    try {
      printThroughput(title, await throughput(server.base, counts, maxTokens, temperature));
    } finally {
      await server.stop();
    }
  }
}

async function main(): Promise<void> {
  const arg = (name: string, fallback: string) => {
    const at = process.argv.indexOf(name);
    return at >= 0 ? process.argv[at + 1]! : fallback;
  };
  if (process.argv.includes('--plan')) return planThroughput(arg);
  const root = fileURLToPath(new URL('..', import.meta.url));
  const stepMs = arg('--step-ms', '2');
  const maxTokens = Number(arg('--max-tokens', '64'));
  const tokenizer = arg('--tokenizer', join(root, 'fixtures', 'tokenizers', 'qwen3'));
  if (process.argv.includes('--leak-check')) return leakCheck(tokenizer, Number(stepMs), maxTokens);
  const child = spawn(
    process.execPath,
    [join(root, 'dist', 'mnc.mjs'), 'serve', '--fake-model', 'bigram', '--tokenizer', tokenizer, '--port', '0', '--max-batch', '64', '--max-queue', '64', '--max-body-bytes', '1048576', '--fake-step-ms', stepMs, '--grace', '5'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  const deadline = Date.now() + 30_000;
  while (!/ready: model/.test(output) && !/listening on/.test(output)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`mnc serve did not start (run node scripts/build.mjs first):\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const base = /listening on (\S+)/.exec(output)![1]!;
  while ((await fetch(`${base}/ready`)).status !== 200) await new Promise((r) => setTimeout(r, 50));
  console.log(`mnc serve (bigram TEST model, decode step ${stepMs} ms simulated, batch 64, queue 64) at ${base}; ${maxTokens} tokens a request`);
  // warm up, then the baseline memory
  await runLoad({ base, model: 'bigram-test', clients: 8, maxTokens, disconnectFraction: 0, faultFraction: 0, seed: 0, deadlineMs: 60_000 });
  await new Promise((r) => setTimeout(r, 1000));
  const before = await serverMemory(base);

  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  const memory = async (when: string) => {
    await new Promise((r) => setTimeout(r, 1000));
    const m = await serverMemory(base);
    console.log(`  server memory ${when}: rss ${mib(m.rss)}, V8 heap used ${mib(m.heap)}`);
  };
  console.log(`server memory before: rss ${mib(before.rss)}, V8 heap used ${mib(before.heap)}`);
  const phases: [string, LoadOptions][] = [
    ['64 concurrent streaming clients', { base, model: 'bigram-test', clients: 64, maxTokens, disconnectFraction: 0.2, faultFraction: 0.1, seed: 1, deadlineMs: 120_000 }],
    ['256 concurrent streaming clients (batch 64, queue 64)', { base, model: 'bigram-test', clients: 256, maxTokens, disconnectFraction: 0.2, faultFraction: 0.1, seed: 2, deadlineMs: 120_000 }],
    ['256 again (memory should stay flat)', { base, model: 'bigram-test', clients: 256, maxTokens, disconnectFraction: 0.2, faultFraction: 0.1, seed: 3, deadlineMs: 120_000 }],
  ];
  for (const [name, options] of phases) {
    printPhase(name, await runLoad(options));
    await memory('after');
  }
  // one request at a time, for the batching figure
  const serial = { base, model: 'bigram-test', clients: 1, maxTokens, disconnectFraction: 0, faultFraction: 0, seed: 4, deadlineMs: 60_000 };
  let tokens = 0;
  const t0 = performance.now();
  for (let i = 0; i < 8; i++) tokens += (await runLoad(serial)).tokens;
  console.log(`\none request at a time (8 in turn): ${(tokens / ((performance.now() - t0) / 1000)).toFixed(0)} tokens/s aggregate`);
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
