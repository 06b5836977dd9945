// The OpenAI-compatible HTTP server on a batched language model: routes, API keys and rate
// limits, body and prompt limits, chat templates, streaming as server-sent events, metrics,
// readiness, and a graceful shutdown. Generation runs through the text layer's scheduler, so
// concurrent requests share decode steps. The server keeps no state beyond in-flight requests:
// more traffic than one process holds is served by replicas behind a load balancer.

import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BatchedLanguageModel } from '../text/batch';
import { isTextError } from '../text/errors';
import { Generation } from '../text/generate';
import type { GenerationOptions } from '../text/generation-config';
import { BatchScheduler, SchedulerError, type ScheduledSequence, type SchedulerLimits } from '../text/scheduler';
import { StopStrings } from '../text/stop-strings';
import type { Tokenizer } from '../text/tokenizer';
import { ApiKeys, RateLimiter } from './access';
import { MetricRegistry } from './metrics';
import { ApiError, completionResponse, parseChatRequest, parseCompletionRequest, streamChunk, usage, type CompletionRequest, type FinishReason, type ResponseHead } from './openai';

/** What the server serves: a batched model, its tokenizer, the name clients ask for. */
export interface ServedModel {
  /** the `model` requests name, listed by /v1/models */
  readonly name: string;
  readonly model: BatchedLanguageModel;
  readonly tokenizer: Tokenizer;
  /**
   * the model's generation defaults (its generation_config.json): temperature, top_k, top_p,
   * min_p, repetition_penalty, stop token ids and max_new_tokens are taken, as vLLM takes them;
   * a request's own fields win
   */
  readonly defaults?: GenerationOptions;
}

export interface ServerOptions {
  /** API keys; requests to /v1/ must carry one as `Authorization: Bearer <key>`. None: no authentication */
  apiKeys?: readonly string[];
  /** requests per minute per key (per client address without keys), with a burst; none: no limit */
  rateLimit?: { perMinute: number; burst?: number };
  /** the largest request body, bytes; default 1 MiB */
  maxBodyBytes?: number;
  /** the longest prompt, tokens; default the model's maximum sequence length */
  maxPromptTokens?: number;
  /** max_tokens when a request gives none (capped by the room the model has left); default 512 */
  defaultMaxTokens?: number;
  /** batch size, KV-cache budget and queue length */
  scheduler?: SchedulerLimits;
  /** an origin allowed to call from a browser (`*` for any); default none: no CORS headers */
  cors?: string;
  /** where unexpected errors (answered 500) are reported; default console.error */
  onError?: (error: unknown) => void;
}

type State = 'loading' | 'ready' | 'draining' | 'closed';

const ENDPOINTS = ['/v1/chat/completions', '/v1/completions', '/v1/models', '/health', '/ready', '/metrics'];
const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const STEP_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/** Why a request's generation was cancelled from the server's side. */
class ClientClosed extends Error {}

/**
 * The server. Listen first, then hand it the model once loaded (/ready turns 200 then):
 *
 *     const server = new ModelServer({ apiKeys: ['sk-local'] });
 *     const { port } = await server.listen(8080);            // 127.0.0.1 unless a host is given
 *     server.serve({ name: 'smollm2', model, tokenizer });
 *     process.once('SIGTERM', () => server.shutdown(30_000));
 */
export class ModelServer {
  readonly http: Server;
  readonly metrics = new MetricRegistry();
  private state: State = 'loading';
  private served: { model: ServedModel; scheduler: BatchScheduler } | undefined;
  private readonly inflight = new Set<Promise<void>>();
  private readonly keys: ApiKeys;
  private readonly limiter: RateLimiter | undefined;
  private readonly maxBodyBytes: number;
  private readonly onError: (error: unknown) => void;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly m: ReturnType<typeof serverMetrics>;

  constructor(private readonly options: ServerOptions = {}) {
    this.keys = new ApiKeys(options.apiKeys ?? []);
    this.limiter = options.rateLimit ? new RateLimiter(options.rateLimit.perMinute, options.rateLimit.burst) : undefined;
    this.maxBodyBytes = options.maxBodyBytes ?? 1 << 20;
    this.onError = options.onError ?? ((error) => console.error(error));
    this.m = serverMetrics(this.metrics, () => this.served?.scheduler, () => this.state === 'ready');

    this.http = createServer({ noDelay: true, requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: 5_000 }, (req, res) => {
      this.handle(req, res).catch((error) => this.fail(res, error));
    });
  }

  /** Listens on `host` (default 127.0.0.1: this machine only) and `port` (0: any free one). */
  listen(port = 0, host = '127.0.0.1'): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        resolve(this.http.address() as AddressInfo);
      });
    });
  }

  /** Starts serving `model`: /ready answers 200 from now on. */
  serve(model: ServedModel): void {
    if (this.state !== 'loading') throw new Error(`the server is ${this.state}; it serves one model, once`);
    const scheduler = new BatchScheduler(model.model, this.options.scheduler, {
      decodeStep: (size, seconds) => {
        this.m.batch.observe(size);
        this.m.step.observe(seconds);
      },
    });
    this.served = { model, scheduler };
    this.state = 'ready';
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  /** the scheduler, once serving (for tests and metrics) */
  get scheduler(): BatchScheduler | undefined {
    return this.served?.scheduler;
  }

  /**
   * Stops taking connections and requests (new ones get 503), lets in-flight requests finish
   * for `graceMs`, then cancels the rest (a stream ends with an error event) and closes every
   * connection. Resolves with how many requests finished and how many were cancelled.
   */
  async shutdown(graceMs = 30_000): Promise<{ finished: number; cancelled: number }> {
    if (this.state === 'closed' || this.state === 'draining') return { finished: 0, cancelled: 0 };
    this.state = 'draining';
    this.served?.scheduler.close();
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.http.closeIdleConnections();
    const pending = this.inflight.size;
    const drained = await within(Promise.all([...this.inflight]), graceMs);
    const cancelled = drained ? 0 : this.inflight.size;
    if (!drained) {
      this.served?.scheduler.cancelAll(new ApiError(503, 'the server is shutting down', 'server_error', null, 'server_shutdown'));
      await within(Promise.all([...this.inflight]), 2_000);
    }
    this.http.closeAllConnections();
    await closed;
    this.state = 'closed';
    return { finished: pending - cancelled, cancelled };
  }

  // --- routing ----------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const path = (req.url ?? '/').split('?')[0]!;
    const endpoint = ENDPOINTS.includes(path) || path.startsWith('/v1/models/') ? (path.startsWith('/v1/models/') ? '/v1/models/{id}' : path) : 'other';
    res.once('close', () => {
      this.m.requests.inc({ endpoint, status: String(res.statusCode) });
      if (!res.writableFinished) this.m.disconnects.inc();
    });
    if (this.state === 'draining') res.setHeader('Connection', 'close');
    this.allowOrigin(req, res);
    const method = req.method ?? 'GET';
    if (method === 'OPTIONS' && this.options.cors) return this.preflight(res);

    if (path === '/health') return this.only(method, 'GET', () => json(res, 200, { status: 'ok' }));
    if (path === '/ready') return this.only(method, 'GET', () => json(res, this.ready ? 200 : 503, { status: this.ready ? 'ready' : this.state }));
    if (path === '/metrics') {
      return this.only(method, 'GET', () => {
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(this.metrics.render());
      });
    }
    if (path.startsWith('/v1/')) {
      this.admit(req);
      if (path === '/v1/models') return this.only(method, 'GET', () => json(res, 200, { object: 'list', data: this.modelList() }));
      if (path.startsWith('/v1/models/')) {
        return this.only(method, 'GET', () => {
          let id: string;
          try {
            id = decodeURIComponent(path.slice('/v1/models/'.length));
          } catch {
            throw new ApiError(400, 'the model id in the URL is not valid percent-encoding', 'invalid_request_error', 'model', 'invalid_value');
          }
          const found = this.modelList().find((m) => m.id === id);
          if (!found) throw modelNotFound(id);
          json(res, 200, found);
        });
      }
      if (path === '/v1/chat/completions' || path === '/v1/completions') {
        if (method !== 'POST') throw methodNotAllowed(method, path);
        const work = this.complete(req, res, path === '/v1/chat/completions' ? 'chat' : 'completion', started);
        this.inflight.add(work);
        try {
          await work;
        } finally {
          this.inflight.delete(work);
        }
        return;
      }
    }
    throw new ApiError(404, `Unknown request URL: ${method} ${path.slice(0, 200)}`, 'invalid_request_error', null, 'unknown_url');
  }

  private only(method: string, allowed: string, answer: () => void): void {
    if (method !== allowed) throw methodNotAllowed(method, '');
    answer();
  }

  /** Checks a /v1/ request's API key and rate limit (counted per key, else per client address). */
  private admit(req: IncomingMessage): void {
    let client = `address ${req.socket.remoteAddress ?? '?'}`;
    if (this.keys.required) {
      const key = this.keys.check(req.headers.authorization);
      if (key < 0) {
        const message = req.headers.authorization ? 'Incorrect API key provided.' : "You didn't provide an API key. Send it as the HTTP header Authorization: Bearer YOUR_KEY.";
        throw new ApiError(401, message, 'invalid_request_error', null, 'invalid_api_key', { 'WWW-Authenticate': 'Bearer' });
      }
      client = `key ${key}`;
    }
    const verdict = this.limiter?.take(client);
    if (verdict && !verdict.ok) {
      throw new ApiError(429, `Rate limit reached: ${this.limiter!.perMinute} requests per minute. Retry in ${verdict.retryAfterSeconds} s.`, 'requests', null, 'rate_limit_exceeded', {
        'Retry-After': String(verdict.retryAfterSeconds),
      });
    }
  }

  private modelList(): { id: string; object: 'model'; created: number; owned_by: string }[] {
    if (!this.served) return [];
    return [{ id: this.served.model.name, object: 'model', created: this.created, owned_by: 'mnc' }];
  }

  private allowOrigin(req: IncomingMessage, res: ServerResponse): void {
    const allowed = this.options.cors;
    const origin = req.headers.origin;
    if (!allowed || !origin || (allowed !== '*' && origin !== allowed)) return;
    res.setHeader('Access-Control-Allow-Origin', allowed === '*' ? '*' : origin);
    res.setHeader('Vary', 'Origin');
  }

  private preflight(res: ServerResponse): void {
    res.writeHead(204, {
      'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
      'Access-Control-Allow-Headers': 'Authorization, Content-Type',
      'Access-Control-Max-Age': '600',
    });
    res.end();
  }

  // --- completions ------------------------------------------------------------------------

  private async complete(req: IncomingMessage, res: ServerResponse, endpoint: 'chat' | 'completion', started: number): Promise<void> {
    if (this.state === 'loading') throw new ApiError(503, 'the model is still loading; retry shortly', 'server_error', null, 'model_not_ready', { 'Retry-After': '5' });
    if (this.state !== 'ready' || !this.served) throw new ApiError(503, 'the server is shutting down', 'server_error', null, 'server_shutdown', { 'Retry-After': '1' });
    const { model: served, scheduler } = this.served;
    const body = await readBody(req, this.maxBodyBytes);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new ApiError(400, 'We could not parse the JSON body of your request: it is not valid JSON.', 'invalid_request_error', null, 'invalid_json');
    }
    const request = endpoint === 'chat' ? parseChatRequest(parsed) : parseCompletionRequest(parsed);
    if (request.model !== served.name) throw modelNotFound(request.model);

    const promptIds = tokenize(request, served.tokenizer);
    const maxTokens = this.maxNewTokens(request, promptIds.length, scheduler.maxSequenceLength, served.defaults);
    const generation = textErrorsAs400(() => new Generation(promptIds, { ...sampling(served.defaults), ...request.options, maxNewTokens: maxTokens, tokenizer: served.tokenizer }, scheduler.maxSequenceLength));

    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort(new ClientClosed('the client closed the connection'));
    });
    let sequence: ScheduledSequence;
    try {
      sequence = scheduler.submit(generation, abort.signal);
    } catch (error) {
      if (!(error instanceof SchedulerError)) throw error;
      if (error.kind === 'too-large') throw new ApiError(400, error.message, 'invalid_request_error', 'max_tokens', 'context_length_exceeded');
      if (error.kind === 'closed') throw new ApiError(503, error.message, 'server_error', null, 'server_shutdown', { 'Retry-After': '1' });
      throw new ApiError(503, error.message, 'server_error', null, 'server_overloaded', { 'Retry-After': String(this.retryAfterSeconds()) });
    }
    this.m.promptTokens.inc({}, promptIds.length);
    const head: ResponseHead = { id: `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replaceAll('-', '')}`, created: Math.floor(Date.now() / 1000), model: served.name };
    try {
      if (request.stream) await this.stream(res, request, head, sequence, promptIds.length, started);
      else {
        const parts: string[] = [];
        const { finish, tokens } = await this.collect(sequence, request.stop, (text) => parts.push(text), started);
        json(res, 200, completionResponse(endpoint, head, parts.join(''), finish, usage(promptIds.length, tokens)));
      }
    } catch (error) {
      if (error instanceof ClientClosed) return; // nobody to answer
      throw error;
    } finally {
      this.m.duration.observe((performance.now() - started) / 1000);
    }
  }

  /** max_tokens: the request's, else the default capped by the room left; a request for more than the model holds is a 400, as OpenAI's. */
  private maxNewTokens(request: CompletionRequest, promptLength: number, maxSequence: number | undefined, defaults: GenerationOptions | undefined): number {
    const param = request.endpoint === 'chat' ? 'messages' : 'prompt';
    const promptLimit = Math.min(this.options.maxPromptTokens ?? Infinity, maxSequence === undefined ? Infinity : maxSequence - 1);
    if (promptLength > promptLimit) {
      throw new ApiError(400, `This model's maximum prompt length is ${promptLimit} tokens. However, your ${param} resulted in ${promptLength} tokens.`, 'invalid_request_error', param, 'context_length_exceeded');
    }
    const room = maxSequence === undefined ? Infinity : maxSequence - promptLength;
    if (request.maxTokens !== undefined) {
      if (request.maxTokens > room) {
        throw new ApiError(
          400,
          `This model's maximum context length is ${maxSequence} tokens. However, you requested ${promptLength + request.maxTokens} tokens (${promptLength} in the ${param}, ${request.maxTokens} in the completion).`,
          'invalid_request_error',
          'max_tokens',
          'context_length_exceeded',
        );
      }
      return request.maxTokens;
    }
    return Math.min(defaults?.maxNewTokens ?? this.options.defaultMaxTokens ?? 512, room);
  }

  /** A guess at when a slot frees up: one second per full queue of the batch, at least 1. */
  private retryAfterSeconds(): number {
    const s = this.served?.scheduler;
    return s ? Math.max(1, Math.ceil(s.queueDepth / Math.max(1, s.maxBatch))) : 1;
  }

  private async stream(res: ServerResponse, request: CompletionRequest, head: ResponseHead, sequence: ScheduledSequence, promptTokens: number, started: number): Promise<void> {
    const { endpoint, includeUsage } = request;
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
    const send = (chunk: object) => {
      if (!res.destroyed) res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    };
    if (endpoint === 'chat') send(streamChunk(endpoint, head, { role: true, text: '' }, includeUsage));
    try {
      const { finish, tokens } = await this.collect(sequence, request.stop, (text) => send(streamChunk(endpoint, head, { text }, includeUsage)), started);
      send(streamChunk(endpoint, head, endpoint === 'chat' ? { finish } : { text: '', finish }, includeUsage));
      if (includeUsage) send(streamChunk(endpoint, head, { usage: usage(promptTokens, tokens) }, includeUsage));
      if (!res.destroyed) res.end('data: [DONE]\n\n');
    } catch (error) {
      if (error instanceof ClientClosed || res.destroyed) throw error;
      // the status line has gone: the error becomes an event, as OpenAI's streams carry them
      const apiError = error instanceof ApiError ? error : this.internal(error);
      send(apiError.body());
      res.end();
    }
  }

  /** Runs a sequence to its end, releasing text through the stop strings; returns the finish reason and how many tokens were generated. */
  private async collect(sequence: ScheduledSequence, stop: readonly string[], emit: (text: string) => void, started: number): Promise<{ finish: FinishReason; tokens: number }> {
    const stops = stop.length > 0 ? new StopStrings(stop) : undefined;
    let tokens = 0;
    let last = started;
    let finish: FinishReason = 'length';
    for await (const step of sequence) {
      const now = performance.now();
      (tokens === 0 ? this.m.ttft : this.m.itl).observe((now - last) / 1000);
      last = now;
      tokens++;
      this.m.generatedTokens.inc();
      let text = step.text;
      if (stops) {
        const released = stops.push(text);
        text = released.text;
        if (released.stopped) {
          if (text) emit(text);
          finish = 'stop';
          break; // leaving the loop cancels the sequence: its slot is freed at the next step
        }
        if (step.finishReason) text += stops.flush();
      }
      if (text) emit(text);
      if (step.finishReason) {
        finish = step.finishReason;
        break;
      }
    }
    return { finish, tokens };
  }

  // --- errors -----------------------------------------------------------------------------

  private internal(error: unknown): ApiError {
    this.onError(error);
    return new ApiError(500, 'The server had an error while processing your request.', 'server_error', null, 'internal_error');
  }

  private fail(res: ServerResponse, error: unknown): void {
    if (error instanceof ClientClosed) return;
    const apiError = error instanceof ApiError ? error : isTextError(error) ? new ApiError(400, error.message) : this.internal(error);
    if (res.headersSent) {
      if (!res.destroyed) res.destroy();
      return;
    }
    if (apiError.status === 413) res.setHeader('Connection', 'close'); // the rest of the body is not read
    json(res, apiError.status, apiError.body(), apiError.headers);
  }
}

/** The server's own figures, on `registry`; gauges read the scheduler when scraped. */
function serverMetrics(registry: MetricRegistry, scheduler: () => BatchScheduler | undefined, ready: () => boolean) {
  const r = registry;
  r.gauge('mnc_queue_depth', 'requests waiting for a slot', () => scheduler()?.queueDepth ?? 0);
  r.gauge('mnc_running_sequences', 'sequences holding a slot', () => scheduler()?.activeSequences ?? 0);
  r.gauge('mnc_kv_cache_reserved_tokens', 'KV-cache tokens reserved by running sequences (their worst case)', () => scheduler()?.reservedTokens ?? 0);
  r.gauge('mnc_kv_cache_tokens', 'KV-cache tokens the running sequences may reserve together', () => scheduler()?.kvCacheTokens ?? 0);
  r.gauge('mnc_max_batch', 'the most sequences per decode step', () => scheduler()?.maxBatch ?? 0);
  r.gauge('mnc_ready', '1 once the model is loaded and the server takes requests', () => (ready() ? 1 : 0));
  r.gauge('process_resident_memory_bytes', 'resident set size of the server process', () => process.memoryUsage.rss());
  r.gauge('nodejs_heap_used_bytes', 'V8 heap in use', () => process.memoryUsage().heapUsed);
  return {
    requests: r.counter('mnc_requests_total', 'HTTP requests answered, by endpoint and status code'),
    promptTokens: r.counter('mnc_prompt_tokens_total', 'prompt tokens of admitted requests'),
    generatedTokens: r.counter('mnc_generation_tokens_total', 'tokens generated'),
    disconnects: r.counter('mnc_client_disconnects_total', 'requests whose client went away before the answer was complete'),
    ttft: r.histogram('mnc_time_to_first_token_seconds', 'time from a request arriving to its first generated token', SECONDS),
    itl: r.histogram('mnc_inter_token_latency_seconds', 'time between consecutive tokens of one request', STEP_SECONDS),
    duration: r.histogram('mnc_request_duration_seconds', 'time from a completion request arriving to its answer ending', SECONDS),
    batch: r.histogram('mnc_batch_size', 'sequences per decode step', BATCH_SIZES),
    step: r.histogram('mnc_decode_step_seconds', 'time of one decode step of the model', STEP_SECONDS),
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  if (res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const modelNotFound = (model: string) =>
  new ApiError(404, `The model \`${model.slice(0, 200)}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model', 'model_not_found');

const methodNotAllowed = (method: string, path: string) => new ApiError(405, `Method ${method} is not allowed${path ? ` on ${path}` : ''}.`, 'invalid_request_error', null, 'method_not_allowed');

/** The request body, refusing (413) past `limit` bytes without reading the rest. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () => new ApiError(413, `The request body is larger than this server's limit of ${limit} bytes.`, 'invalid_request_error', null, 'request_too_large');
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(new ClientClosed(error.message));
    };
    const onAborted = () => {
      cleanup();
      reject(new ClientClosed('the client closed the connection while sending the request'));
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

/** The prompt's token ids: the chat template with the generation prompt, the text encoded (with the tokenizer's bos), or ids as given. */
function tokenize(request: CompletionRequest, tokenizer: Tokenizer): number[] {
  const param = request.endpoint === 'chat' ? 'messages' : 'prompt';
  const ids = textErrorsAs400(() => {
    if (request.endpoint === 'chat') return tokenizer.encodeChat(request.prompt as never, { addGenerationPrompt: true });
    if (typeof request.prompt === 'string') return tokenizer.encode(request.prompt);
    return [...(request.prompt as readonly number[])];
  }, param);
  const outside = ids.find((id) => id >= tokenizer.vocabSize);
  if (outside !== undefined) throw new ApiError(400, `token id ${outside} is outside the vocabulary [0, ${tokenizer.vocabSize})`, 'invalid_request_error', param, 'invalid_value');
  if (ids.length === 0) throw new ApiError(400, `the ${param} has no tokens`, 'invalid_request_error', param, 'invalid_value');
  return ids;
}

/** The model defaults a request starts from: OpenAI's (sampling at temperature 1, no top-k) under the model's generation_config. */
function sampling(defaults: GenerationOptions | undefined): GenerationOptions {
  const d = defaults ?? {};
  const options: GenerationOptions = { doSample: true, temperature: 1, topK: 0, topP: 1 };
  for (const key of ['temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'stopTokenIds'] as const) {
    if (d[key] !== undefined) (options as Record<string, unknown>)[key] = d[key];
  }
  if (options.temperature === 0) options.doSample = false;
  return options;
}

function textErrorsAs400<T>(run: () => T, param: string | null = null): T {
  try {
    return run();
  } catch (error) {
    if (isTextError(error)) throw new ApiError(400, error.message, 'invalid_request_error', param, error.kind === 'bad-option' ? 'invalid_value' : null);
    throw error;
  }
}

/** true if `promise` settled within `ms` */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
