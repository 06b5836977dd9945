// mnc serve with the real `openai` client: a server started here on 127.0.0.1 (port 0) over the
// bigram test model (runtime/serve/test-model.ts) and Qwen3's real tokenizer and chat template.
// Streaming and not, stop strings, seeds, usage, every refusal in OpenAI's error shape, metrics
// as Prometheus text, readiness, disconnects freeing their slot, batching under concurrency, and
// `mnc serve` itself in a child process for SIGTERM. Every test is bounded in time and count.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTokenizerFixtures } from '../scripts/tokenizer-fixtures.mjs';
import { ApiKeys, BigramTestModel, ModelServer, parseKeysFile, RateLimiter, type BigramTestModelOptions, type ServerOptions } from '../runtime/serve';
import type { Tokenizer } from '../runtime/text';
import { loadTokenizerDirectory } from '../runtime/text/node';
import { runLoad } from '../bench/serve-load';

const root = fileURLToPath(new URL('..', import.meta.url));
let tokenizer: Tokenizer;
let qwenDir: string;
const servers: ModelServer[] = [];

beforeAll(async () => {
  qwenDir = ensureTokenizerFixtures().qwen3!;
  tokenizer = await loadTokenizerDirectory(qwenDir);
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.shutdown(0)));
});

interface Started {
  server: ModelServer;
  model: BigramTestModel;
  base: string;
  client: (apiKey?: string) => OpenAI;
}

async function start(options: ServerOptions = {}, modelOptions: BigramTestModelOptions = {}, name = 'bigram'): Promise<Started> {
  const server = new ModelServer({ onError: () => {}, ...options });
  servers.push(server);
  const { port } = await server.listen(0, '127.0.0.1');
  const model = BigramTestModel.forTokenizer(tokenizer, modelOptions);
  server.serve({ name, model, tokenizer });
  const base = `http://127.0.0.1:${port}`;
  const client = (apiKey = 'sk-test') => new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 15_000 });
  return { server, model, base, client };
}

const hi = [{ role: 'user' as const, content: 'Hi there' }];

async function until(condition: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What an API call threw (its status, code and param), for expect(). */
async function failure(call: Promise<unknown>): Promise<{ status: unknown; code: unknown; param: unknown; type: unknown; message: string }> {
  try {
    await call;
  } catch (error) {
    const e = error as InstanceType<typeof OpenAI.APIError>;
    return { status: e.status, code: e.code, param: e.param, type: e.type, message: e.message };
  }
  throw new Error('the call succeeded');
}

/** A POST with a raw body (what the client library would never send). */
async function rawPost(base: string, path: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; json: any }> {
  const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test', ...headers }, body });
  const text = await r.text();
  return { status: r.status, headers: r.headers, json: text ? JSON.parse(text) : undefined };
}

describe('completions with the openai client', () => {
  let s: Started;
  beforeAll(async () => {
    s = await start({}, { stepMs: 1 });
  });

  it('chat, not streamed: text, finish reason and usage', async () => {
    const r = await s.client().chat.completions.create({ model: 'bigram', messages: hi, max_tokens: 8, seed: 3 });
    expect(r.object).toBe('chat.completion');
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.message.role).toBe('assistant');
    expect(r.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(r.choices[0]!.finish_reason).toBe('length');
    const promptTokens = tokenizer.encodeChat(hi, { addGenerationPrompt: true }).length;
    expect(r.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: 8, total_tokens: promptTokens + 8 });
  });

  it('chat, streamed: the same text as chunks, a role first, usage last with include_usage, then [DONE]', async () => {
    const whole = await s.client().chat.completions.create({ model: 'bigram', messages: hi, max_tokens: 12, seed: 9 });
    const stream = await s.client().chat.completions.create({ model: 'bigram', messages: hi, max_tokens: 12, seed: 9, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]!.id)).toBe(true);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(whole.choices[0]!.message.content);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(whole.usage);
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('length');
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    // the raw stream ends with data: [DONE]
    const raw = await fetch(`${s.base}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'bigram', messages: hi, max_tokens: 3, stream: true }) });
    expect(raw.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = (await raw.text()).split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    expect(events.slice(0, -1).every((e) => e.startsWith('data: {'))).toBe(true);
  });

  it('text completions, streamed and not, with usage', async () => {
    const prompt = 'Once upon a time';
    const r = await s.client().completions.create({ model: 'bigram', prompt, max_tokens: 10, seed: 4 });
    expect(r.object).toBe('text_completion');
    expect(r.usage).toEqual({ prompt_tokens: tokenizer.encode(prompt).length, completion_tokens: 10, total_tokens: tokenizer.encode(prompt).length + 10 });
    const stream = await s.client().completions.create({ model: 'bigram', prompt, max_tokens: 10, seed: 4, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(r.choices[0]!.text);
    expect(usage).toEqual(r.usage);
    // token ids as the prompt
    const ids = await s.client().completions.create({ model: 'bigram', prompt: tokenizer.encode(prompt), max_tokens: 10, seed: 4 });
    expect(ids.choices[0]!.text).toBe(r.choices[0]!.text);
  });

  it('seeds reproduce a sampled answer; other seeds and settings differ', async () => {
    const ask = (seed: number, extra: object = {}) =>
      s
        .client()
        // top_k and min_p are extensions the client passes through
        .chat.completions.create({ model: 'bigram', messages: hi, max_tokens: 24, seed, temperature: 1.2, top_p: 0.95, top_k: 30, min_p: 0.01, ...extra } as OpenAI.ChatCompletionCreateParamsNonStreaming)
        .then((r) => r.choices[0]!.message.content);
    const a = await ask(11);
    expect(await ask(11)).toBe(a);
    expect(await ask(12)).not.toBe(a);
    // penalties change the draw: a frequency penalty makes repeats rarer
    const words = (t: string | null) => t!.trim().split(/\s+/);
    const repeats = (t: string | null) => words(t).length - new Set(words(t)).size;
    const plain = await Promise.all([1, 2, 3, 4].map((seed) => ask(seed, { max_tokens: 60 })));
    const penalised = await Promise.all([1, 2, 3, 4].map((seed) => ask(seed, { max_tokens: 60, frequency_penalty: 2, presence_penalty: 2 })));
    expect(penalised.map(repeats).reduce((a, b) => a + b)).toBeLessThan(plain.map(repeats).reduce((a, b) => a + b));
    // temperature 0 is greedy: every seed agrees
    expect(await ask(1, { temperature: 0 })).toBe(await ask(2, { temperature: 0 }));
  });

  it('stop strings end the answer before them, also across token boundaries, streamed and not', async () => {
    const full = (await s.client().chat.completions.create({ model: 'bigram', messages: hi, max_tokens: 40, seed: 21 })).choices[0]!.message.content!;
    const middle = Math.floor(full.length / 2);
    const stop = full.slice(middle, middle + 4); // starts and ends wherever the characters fall
    const expected = full.slice(0, full.indexOf(stop));
    const r = await s.client().chat.completions.create({ model: 'bigram', messages: hi, max_tokens: 40, seed: 21, stop: [stop, 'never appears'] });
    expect(r.choices[0]!.message.content).toBe(expected);
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.usage!.completion_tokens).toBeLessThan(40);
    const stream = await s.client().chat.completions.create({ model: 'bigram', messages: hi, max_tokens: 40, seed: 21, stop, stream: true });
    let text = '';
    let finish;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe(expected);
    expect(finish).toBe('stop');
    // a stop string that never completes holds nothing back at the end
    const none = await s.client().chat.completions.create({ model: 'bigram', messages: hi, max_tokens: 40, seed: 21, stop: [full.slice(-2) + '\u0000'] });
    expect(none.choices[0]!.message.content).toBe(full);
  });

  it('lists the model', async () => {
    const models = await s.client().models.list();
    expect(models.data.map((m) => m.id)).toEqual(['bigram']);
    expect((await s.client().models.retrieve('bigram')).id).toBe('bigram');
  });
});

describe('refusals in OpenAI error shape', () => {
  let s: Started;
  beforeAll(async () => {
    s = await start({ apiKeys: ['sk-test', 'sk-other'], maxPromptTokens: 64, maxBodyBytes: 4096 }, { maxSequenceLength: 100 });
  });

  it('a missing or wrong API key: 401', async () => {
    expect(await failure(s.client('sk-wrong').chat.completions.create({ model: 'bigram', messages: hi }))).toMatchObject({ status: 401, code: 'invalid_api_key' });
    const r = await fetch(`${s.base}/v1/models`);
    expect(r.status).toBe(401);
    expect(await r.json()).toEqual({ error: { message: expect.stringMatching(/didn't provide an API key/), type: 'invalid_request_error', param: null, code: 'invalid_api_key' } });
    expect((await s.client('sk-other').models.list()).data).toHaveLength(1);
  });

  it('bad JSON, a body that is not an object, an oversized body', async () => {
    let r = await rawPost(s.base, '/v1/chat/completions', '{"model": "bigram", "messages": [');
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json', param: null });
    r = await rawPost(s.base, '/v1/chat/completions', '[1, 2]');
    expect(r.status).toBe(400);
    r = await rawPost(s.base, '/v1/completions', JSON.stringify({ model: 'bigram', prompt: 'x'.repeat(5000) }));
    expect(r.status).toBe(413);
    expect(r.json.error.code).toBe('request_too_large');
  });

  it('an unknown model: 404', async () => {
    expect(await failure(s.client().chat.completions.create({ model: 'gpt-4o', messages: hi }))).toMatchObject({ status: 404, code: 'model_not_found', param: 'model' });
    expect(await failure(s.client().models.retrieve('gpt-4o'))).toMatchObject({ status: 404 });
  });

  it('a prompt too long, or too long with max_tokens: 400 context_length_exceeded', async () => {
    const long = [{ role: 'user' as const, content: 'the cat sat on the mat '.repeat(20) }];
    expect(await failure(s.client().chat.completions.create({ model: 'bigram', messages: long }))).toMatchObject({ status: 400, code: 'context_length_exceeded', param: 'messages' });
    expect(await failure(s.client().completions.create({ model: 'bigram', prompt: 'hello', max_tokens: 100 }))).toMatchObject({ status: 400, code: 'context_length_exceeded', param: 'max_tokens' });
  });

  it('fields out of range or unsupported: 400 naming the field', async () => {
    const ask = (extra: object) => failure(s.client().chat.completions.create({ model: 'bigram', messages: hi, ...extra } as never));
    expect(await ask({ n: 2 })).toMatchObject({ status: 400, param: 'n' });
    expect(await ask({ temperature: 3 })).toMatchObject({ status: 400, param: 'temperature' });
    expect(await ask({ top_p: -0.1 })).toMatchObject({ status: 400, param: 'top_p' });
    expect(await ask({ presence_penalty: 2.5 })).toMatchObject({ status: 400, param: 'presence_penalty' });
    expect(await ask({ max_tokens: 0 })).toMatchObject({ status: 400, param: 'max_tokens' });
    expect(await ask({ stop: ['a', 'b', 'c', 'd', 'e'] })).toMatchObject({ status: 400, param: 'stop' });
    expect(await ask({ logprobs: true })).toMatchObject({ status: 400, param: 'logprobs' });
    expect(await ask({ tools: [{ type: 'function', function: { name: 'f' } }] })).toMatchObject({ status: 400, param: 'tools' });
    expect(await ask({ messages: [] })).toMatchObject({ status: 400, param: 'messages' });
    // the server reads no URL or file a request names
    const image = [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://127.0.0.1:1/x.png' } }] }];
    expect(await ask({ messages: image })).toMatchObject({ status: 400, param: 'messages[0].content[0]' });
    expect(await failure(s.client().completions.create({ model: 'bigram', prompt: ['a', 'b'] }))).toMatchObject({ status: 400, param: 'prompt' });
    expect(await failure(s.client().completions.create({ model: 'bigram', prompt: [999_999_999] }))).toMatchObject({ status: 400, param: 'prompt' });
  });

  it('unknown paths and methods', async () => {
    let r = await fetch(`${s.base}/v1/embeddings`, { method: 'POST', headers: { authorization: 'Bearer sk-test' } });
    expect(r.status).toBe(404);
    expect((await r.json()).error.code).toBe('unknown_url');
    r = await fetch(`${s.base}/v1/chat/completions`, { headers: { authorization: 'Bearer sk-test' } });
    expect(r.status).toBe(405);
    // no CORS headers unless asked for
    r = await fetch(`${s.base}/health`, { headers: { origin: 'http://evil.example' } });
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('access', () => {
  it('API keys: Bearer only, any of the keys, nothing for a near miss', () => {
    const keys = new ApiKeys(['sk-one', 'sk-two']);
    expect(keys.required).toBe(true);
    expect(keys.check('Bearer sk-two')).toBe(1);
    expect(keys.check('bearer sk-one')).toBe(0);
    for (const header of [undefined, '', 'sk-one', 'Basic sk-one', 'Bearer sk-on', 'Bearer sk-one2', 'Bearer  ']) expect(keys.check(header)).toBe(-1);
    expect(new ApiKeys([]).required).toBe(false);
    expect(() => new ApiKeys(['has space'])).toThrow(/no whitespace/);
    expect(parseKeysFile('# keys\nsk-a\n\n  sk-b  \r\n#sk-c\n')).toEqual(['sk-a', 'sk-b']);
  });

  it('a token bucket refills at its rate', () => {
    const limiter = new RateLimiter(60, 2); // one a second, two at once
    expect(limiter.take('k', 0).ok).toBe(true);
    expect(limiter.take('k', 0).ok).toBe(true);
    expect(limiter.take('k', 0)).toEqual({ ok: false, retryAfterSeconds: 1 });
    expect(limiter.take('other', 0).ok).toBe(true);
    expect(limiter.take('k', 999).ok).toBe(false);
    expect(limiter.take('k', 2000).ok).toBe(true);
  });
});

describe('limits', () => {
  it('a rate limit per key: 429 with Retry-After once the burst is spent', async () => {
    const s = await start({ apiKeys: ['sk-test', 'sk-b'], rateLimit: { perMinute: 6, burst: 2 } });
    await s.client().models.list();
    await s.client().models.list();
    const refused = await fetch(`${s.base}/v1/models`, { headers: { authorization: 'Bearer sk-test' } });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await refused.json()).error.code).toBe('rate_limit_exceeded');
    expect((await s.client('sk-b').models.list()).data).toHaveLength(1); // another key has its own bucket
  });

  it('beyond the batch and the queue: 503 with Retry-After; queued requests run when slots free', async () => {
    const s = await start({ scheduler: { maxBatch: 1, maxQueue: 1 } }, { stepMs: 5 });
    const long = s.client().completions.create({ model: 'bigram', prompt: 'a', max_tokens: 60, seed: 3 }); // seed 3 draws no eos in its first 60 tokens
    await until(() => s.server.scheduler!.activeSequences === 1);
    const queued = s.client().completions.create({ model: 'bigram', prompt: 'b', max_tokens: 3, seed: 2 });
    await until(() => s.server.scheduler!.queueDepth === 1);
    const r = await rawPost(s.base, '/v1/completions', JSON.stringify({ model: 'bigram', prompt: 'c', max_tokens: 3 }));
    expect(r.status).toBe(503);
    expect(r.json.error).toMatchObject({ type: 'server_error', code: 'server_overloaded' });
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await long).usage!.completion_tokens).toBe(60);
    expect((await queued).usage!.completion_tokens).toBe(3);
    expect(s.model.largestBatch).toBe(1);
  });

  it('the KV-cache budget holds requests back until tokens free up', async () => {
    const s = await start({ scheduler: { kvCacheTokens: 60 } }, { stepMs: 5 });
    const prompt = tokenizer.encode('x'); // a one-token prompt: each request reserves 1 + 25
    const answers = await Promise.all([1, 2, 3].map((seed) => s.client().completions.create({ model: 'bigram', prompt, max_tokens: 25, seed })));
    expect(answers.map((a) => a.usage!.completion_tokens)).toEqual([25, 25, 25]);
    expect(s.model.largestBatch).toBe(2); // the third waited for 26 tokens to free up
    expect(await failure(s.client().completions.create({ model: 'bigram', prompt, max_tokens: 80 }))).toMatchObject({ status: 400, code: 'context_length_exceeded' });
  });

  it('CORS only for the origin given', async () => {
    const s = await start({ cors: 'http://app.example' });
    const pre = await fetch(`${s.base}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: 'http://app.example', 'access-control-request-method': 'POST' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('http://app.example');
    expect(pre.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
    const other = await fetch(`${s.base}/v1/models`, { headers: { origin: 'http://other.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('batching and disconnects', () => {
  it('concurrent streams share decode steps, and each gets the answer it gets alone', async () => {
    const s = await start({}, { stepMs: 4 });
    const ask = (seed: number) => s.client().chat.completions.create({ model: 'bigram', messages: hi, max_tokens: 20, seed, stream: true });
    const read = async (seed: number) => {
      let text = '';
      for await (const chunk of await ask(seed)) text += chunk.choices[0]?.delta.content ?? '';
      return text;
    };
    const together = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map(read));
    expect(s.model.largestBatch).toBeGreaterThan(1);
    const steps = s.model.decodeBatchSizes.reduce((a, b) => a + b, 0);
    expect(steps).toBeLessThan(8 * 19); // fewer steps than one request at a time would take
    const alone: string[] = [];
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) alone.push(await read(seed));
    expect(together).toEqual(alone);
  });

  it('a client that disconnects mid-stream frees its slot at the next step', async () => {
    const s = await start({}, { stepMs: 10 });
    const stream = await s.client().chat.completions.create({ model: 'bigram', messages: hi, max_tokens: 500, seed: 3, stream: true });
    let chunks = 0;
    for await (const _ of stream) if (++chunks === 4) break; // leaving the loop aborts the request
    await until(() => s.model.slotsInUse === 0 && s.server.scheduler!.activeSequences === 0);
    expect(s.model.releases).toBe(1);
    const steps = s.model.decodeBatchSizes.reduce((a, b) => a + b, 0);
    expect(steps).toBeLessThan(30);
    await new Promise((r) => setTimeout(r, 50));
    expect(s.model.decodeBatchSizes.reduce((a, b) => a + b, 0)).toBe(steps); // no more decoding for it
    expect(s.server.scheduler!.reservedTokens).toBe(0);
    const metrics = await (await fetch(`${s.base}/metrics`)).text();
    expect(metrics).toMatch(/^mnc_client_disconnects_total 1$/m);
  });
});

/** Prometheus text format 0.0.4, strictly: every sample in a declared family, values numbers, histograms cumulative. */
function parsePrometheus(text: string): Map<string, { type: string; samples: { name: string; labels: Record<string, string>; value: number }[] }> {
  const families = new Map<string, { type: string; samples: { name: string; labels: Record<string, string>; value: number }[] }>();
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.slice(0, -1).split('\n')) {
    let m;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$/.exec(line))) continue;
    if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      expect(families.has(m[1]!), `family ${m[1]} declared twice`).toBe(false);
      families.set(m[1]!, { type: m[2]!, samples: [] });
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (\S+)$/.exec(line);
    expect(m, `not a sample line: ${line}`).not.toBeNull();
    const [, name, labelText, valueText] = m!;
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    expect(Number.isNaN(value) && valueText !== 'NaN', `value of ${line}`).toBe(false);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (labelText ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!;
    const family = families.get(name!) ?? families.get(name!.replace(/_(bucket|sum|count)$/, ''));
    expect(family, `sample ${name} outside a declared family`).toBeDefined();
    family!.samples.push({ name: name!, labels, value });
  }
  for (const [name, family] of families) {
    if (family.type !== 'histogram') continue;
    const buckets = family.samples.filter((s) => s.name === `${name}_bucket`);
    buckets.slice(1).forEach((b, i) => expect(b.value).toBeGreaterThanOrEqual(buckets[i]!.value));
    expect(buckets.at(-1)!.labels.le).toBe('+Inf');
    expect(buckets.at(-1)!.value).toBe(family.samples.find((s) => s.name === `${name}_count`)!.value);
  }
  return families;
}

describe('metrics and readiness', () => {
  it('/metrics is Prometheus text with requests by status, tokens, latencies, queue and batch', async () => {
    const s = await start({ apiKeys: ['sk-test'] }, { stepMs: 1 });
    await Promise.all([1, 2, 3].map((seed) => s.client().chat.completions.create({ model: 'bigram', messages: hi, max_tokens: 5, seed })));
    await failure(s.client('sk-bad').models.list());
    const r = await fetch(`${s.base}/metrics`);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = parsePrometheus(await r.text());
    const sample = (family: string, labels: Record<string, string> = {}, name = family) =>
      families.get(family)!.samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))?.value;
    expect(sample('mnc_requests_total', { endpoint: '/v1/chat/completions', status: '200' })).toBe(3);
    expect(sample('mnc_requests_total', { endpoint: '/v1/models', status: '401' })).toBe(1);
    expect(sample('mnc_generation_tokens_total')).toBe(15);
    expect(sample('mnc_prompt_tokens_total')).toBe(3 * tokenizer.encodeChat(hi, { addGenerationPrompt: true }).length);
    expect(sample('mnc_time_to_first_token_seconds', {}, 'mnc_time_to_first_token_seconds_count')).toBe(3);
    expect(sample('mnc_inter_token_latency_seconds', {}, 'mnc_inter_token_latency_seconds_count')).toBe(12);
    expect(sample('mnc_batch_size', {}, 'mnc_batch_size_count')).toBeGreaterThan(0);
    expect(families.get('mnc_queue_depth')!.type).toBe('gauge');
    expect(sample('mnc_ready')).toBe(1);
    expect(sample('process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('/ready is 503 until the model is served, /health 200 throughout', async () => {
    const server = new ModelServer();
    servers.push(server);
    const { port } = await server.listen(0);
    const base = `http://127.0.0.1:${port}`;
    expect((await fetch(`${base}/ready`)).status).toBe(503);
    expect((await fetch(`${base}/health`)).status).toBe(200);
    const early = await rawPost(base, '/v1/chat/completions', JSON.stringify({ model: 'bigram', messages: hi }));
    expect(early.status).toBe(503);
    expect(early.json.error.code).toBe('model_not_ready');
    server.serve({ name: 'bigram', model: BigramTestModel.forTokenizer(tokenizer), tokenizer });
    expect((await fetch(`${base}/ready`)).status).toBe(200);
    expect(await (await fetch(`${base}/ready`)).json()).toEqual({ status: 'ready' });
  });
});

describe('mnc serve in a child process', () => {
  beforeAll(() => {
    execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'pipe' });
  });

  /** Starts `mnc serve` with the test model; resolves once it is ready, with its base URL. */
  async function serve(args: string[]): Promise<{ child: ChildProcess; base: string; output: () => string }> {
    const child = spawn(process.execPath, [join(root, 'dist', 'mnc.mjs'), 'serve', '--fake-model', 'bigram', '--tokenizer', qwenDir, '--port', '0', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    await until(() => /ready: model/.test(output) || child.exitCode !== null, 20_000);
    const base = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
    if (!base) throw new Error(`mnc serve did not start:\n${output}`);
    return { child, base, output: () => output };
  }

  async function exitOf(child: ChildProcess, ms: number): Promise<number | null> {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    const [code] = child.exitCode !== null ? [child.exitCode] : await once(child, 'exit');
    clearTimeout(timer);
    return code as number | null;
  }

  it('SIGTERM: refuses new requests, lets the stream in flight finish, exits 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mnc-serve-'));
    writeFileSync(join(dir, 'keys'), '# the keys of this test\nsk-test\n');
    const { child, base, output } = await serve(['--fake-step-ms', '20', '--grace', '10', '--api-keys-file', join(dir, 'keys')]);
    rmSync(dir, { recursive: true });
    expect((await fetch(`${base}/v1/models`)).status).toBe(401);
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-test', maxRetries: 0, timeout: 15_000 });
    const stream = await client.chat.completions.create({ model: 'bigram-test', messages: hi, max_tokens: 40, seed: 3, stream: true, stream_options: { include_usage: true } });
    let usage;
    let chunks = 0;
    for await (const chunk of stream) {
      if (++chunks === 3) {
        child.kill('SIGTERM');
        await until(() => /draining/.test(output()));
        // no new connections (or, on a kept-alive one, 503)
        const refused = await fetch(`${base}/v1/models`, { headers: { authorization: 'Bearer sk-test' } }).then((r) => r.status, () => 'refused');
        expect([503, 'refused']).toContain(refused);
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(usage!.completion_tokens).toBe(40);
    expect(await exitOf(child, 10_000)).toBe(0);
    expect(output()).toMatch(/stopped: 1 in-flight requests finished, 0 cancelled/);
  });

  it('SIGTERM: cancels what is still running after the grace period with an error event, exits 0', async () => {
    const { child, base, output } = await serve(['--fake-step-ms', '20', '--grace', '0.3']);
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0, timeout: 15_000 });
    const stream = await client.chat.completions.create({ model: 'bigram-test', messages: hi, max_tokens: 1000, seed: 3, stream: true });
    const read = (async () => {
      let chunks = 0;
      for await (const _ of stream) if (++chunks === 2) child.kill('SIGTERM');
    })();
    const error = await failure(read);
    expect(error.code).toBe('server_shutdown');
    expect(await exitOf(child, 10_000)).toBe(0);
    expect(output()).toMatch(/stopped: 0 in-flight requests finished, 1 cancelled/);
  });

  it('refuses to start on a plan it cannot read, naming it', () => {
    let status = 0;
    let stderr = '';
    try {
      execFileSync(process.execPath, [join(root, 'dist', 'mnc.mjs'), 'serve', 'model.mnplan', '--tokenizer', qwenDir, '--port', '0'], { cwd: root, stdio: 'pipe', timeout: 20_000 });
    } catch (error) {
      status = (error as { status: number }).status;
      stderr = String((error as { stderr: Buffer }).stderr);
    }
    expect(status).toBe(1);
    expect(stderr).toMatch(/model\.mnplan/);
  });
});

describe('load and faults (short)', () => {
  it('48 streaming clients over a batch of 16 and a queue of 16, with disconnects, malformed and oversized requests: nothing lost or garbled', async () => {
    const s = await start({ scheduler: { maxBatch: 16, maxQueue: 16 }, maxBodyBytes: 64 * 1024 }, { stepMs: 2 });
    const report = await runLoad({ base: s.base, model: 'bigram', clients: 48, maxTokens: 24, disconnectFraction: 0.2, faultFraction: 0.15, seed: 5, deadlineMs: 30_000 });
    expect(report.lost).toBe(0);
    expect(report.garbled).toBe(0);
    expect(report.completed).toBeGreaterThan(0);
    expect(report.completed + report.disconnected + Object.values(report.rejected).reduce((a, b) => a + b, 0)).toBe(48);
    expect(Object.keys(report.rejected).every((status) => ['400', '413', '503'].includes(status))).toBe(true);
    await until(() => s.server.scheduler!.activeSequences === 0 && s.model.slotsInUse === 0);
    expect(s.server.scheduler!.reservedTokens).toBe(0);
    expect(s.model.largestBatch).toBeGreaterThan(1);
  });
});
