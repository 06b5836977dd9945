// `mnc serve`: the OpenAI-compatible server (runtime/serve) from the command line. It listens
// first (so /health answers and /ready says 503 while loading), loads the model with a progress
// line, then serves until SIGTERM or SIGINT, when it drains in-flight requests for the grace
// period, cancels the rest and returns (exit status 0).
//
// What it serves: a language-model plan (models/llama.ts) with its weights, or a GGUF model
// (compiled on the spot, its own tokenizer unless --tokenizer): one that decodes a batch of
// slots (a decode_batch entry) shares each decode step among concurrent requests; one with a
// single-sequence decode is served one request at a time through batchFromModels' adapter. Or
// a TEST model (`--fake-model bigram`, a bigram table over a real tokenizer's words).
import { readFileSync } from 'node:fs';
import { ModelServer, BigramTestModel, parseKeysFile, type ServedModel, type ServerOptions } from '../../runtime/serve';
import { loadPlan, readWeightsFiles, requestNodeDevice } from '../../runtime';
import { batchFromModels, decodesBatches, withinVocabulary, isTextError, loadTokenizerDirectory, planBatchedLanguageModel, planLanguageModel, readGenerationConfigFile } from '../../runtime/text/node';
import { isGgufPath, languageModelPlan, languageModelText } from './language-model';
import { CompileError } from '../ir/errors';

export interface ServeOptions {
  fakeModel?: string;
  tokenizer?: string;
  weights?: string;
  maxSequence?: string;
  decodeBatch?: string;
  target?: string;
  modelName?: string;
  host: string;
  port: string;
  apiKey?: string[];
  apiKeysFile?: string;
  rateLimit?: string;
  rateBurst?: string;
  maxBatch?: string;
  kvCacheTokens?: string;
  maxQueue: string;
  maxBodyBytes: string;
  maxPromptTokens?: string;
  maxTokensDefault: string;
  cors?: string;
  grace: string;
  fakeStepMs: string;
  fakeMaxSequence: string;
}

function integer(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min) throw new CompileError('input', `${flag} expects a whole number from ${min}; got '${text}'`);
  return value;
}

function positive(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new CompileError('input', `${flag} expects a positive number; got '${text}'`);
  return value;
}

/** One line on stderr that a terminal rewrites in place; a log gets one line per stage. */
function progress(): { say(text: string): void; done(text: string): void } {
  const tty = process.stderr.isTTY;
  return {
    say: (text) => process.stderr.write(tty ? `\r\x1b[2K${text}` : `${text}\n`),
    done: (text) => process.stderr.write(tty ? `\r\x1b[2K${text}\n` : `${text}\n`),
  };
}

function apiKeys(options: ServeOptions): string[] {
  const keys = [...(options.apiKey ?? [])];
  if (options.apiKeysFile) {
    let text: string;
    try {
      text = readFileSync(options.apiKeysFile, 'utf8');
    } catch (error) {
      throw new CompileError('io', `${options.apiKeysFile}: cannot read the API keys file: ${(error as Error).message}`);
    }
    const fromFile = parseKeysFile(text);
    if (fromFile.length === 0) throw new CompileError('input', `${options.apiKeysFile}: the API keys file holds no keys (one a line; # starts a comment)`);
    keys.push(...fromFile);
  }
  if (keys.some((k) => k.length === 0 || /\s/.test(k))) throw new CompileError('input', 'an API key must be non-empty and hold no whitespace');
  return keys;
}

function serverOptions(options: ServeOptions): ServerOptions {
  return {
    apiKeys: apiKeys(options),
    rateLimit: options.rateLimit
      ? { perMinute: positive('--rate-limit', options.rateLimit), burst: options.rateBurst ? integer('--rate-burst', options.rateBurst, 1) : undefined }
      : undefined,
    maxBodyBytes: integer('--max-body-bytes', options.maxBodyBytes, 1),
    maxPromptTokens: options.maxPromptTokens ? integer('--max-prompt-tokens', options.maxPromptTokens, 1) : undefined,
    defaultMaxTokens: integer('--max-tokens-default', options.maxTokensDefault, 1),
    scheduler: {
      maxBatch: options.maxBatch ? integer('--max-batch', options.maxBatch, 1) : undefined,
      kvCacheTokens: options.kvCacheTokens ? integer('--kv-cache-tokens', options.kvCacheTokens, 1) : undefined,
      maxQueue: integer('--max-queue', options.maxQueue, 0),
    },
    cors: options.cors,
  };
}

/**
 * The model to serve: a language-model plan (its KV cache on the GPU; models/llama.ts) with
 * --weights, or the bigram test model. A plan with decode_batch holds a slot per sequence and
 * decodes them together; a plan with a single-sequence decode is served through
 * batchFromModels' adapter: one slot, one request at a time (the scheduler queues the rest).
 */
async function loadServedModel(plan: string | undefined, options: ServeOptions, say: (text: string) => void): Promise<ServedModel & { close?: () => Promise<void> }> {
  if (!options.fakeModel) {
    if (!plan) throw new CompileError('input', 'give a language-model plan to serve (mnc serve plan.mnplan --weights … --tokenizer DIR, or mnc serve model.gguf), or --fake-model bigram for a test model');
    return loadPlanModel(plan, options, say);
  }
  if (!options.tokenizer) throw new CompileError('input', '--tokenizer DIR is required: the directory holding tokenizer.json (and tokenizer_config.json for chat)');
  if (plan) throw new CompileError('input', '--fake-model serves a test model: give no plan with it');
  if (options.fakeModel !== 'bigram') throw new CompileError('input', `--fake-model knows 'bigram'; got '${options.fakeModel}'`);
  say(`mnc serve: loading tokenizer ${options.tokenizer}…`);
  try {
    const tokenizer = await loadTokenizerDirectory(options.tokenizer);
    const defaults = await readGenerationConfigFile(options.tokenizer);
    say('mnc serve: building the bigram test model…');
    const model = BigramTestModel.forTokenizer(tokenizer, {
      maxBatch: options.maxBatch ? integer('--max-batch', options.maxBatch, 1) : 64,
      maxSequenceLength: integer('--fake-max-sequence', options.fakeMaxSequence, 2),
      stepMs: Number(options.fakeStepMs),
    });
    return { name: options.modelName ?? 'bigram-test', model, tokenizer, defaults };
  } catch (error) {
    if (isTextError(error)) throw new CompileError('io', error.message);
    throw error;
  }
}

async function loadPlanModel(plan: string, options: ServeOptions, say: (text: string) => void): Promise<ServedModel & { close: () => Promise<void> }> {
  say(`mnc serve: loading tokenizer ${options.tokenizer ?? `from ${plan}`}…`);
  const { tokenizer, defaults } = await languageModelText(plan, options.tokenizer);
  say(isGgufPath(plan) ? `mnc serve: compiling ${plan}…` : `mnc serve: loading ${plan}…`);
  const bytes = await languageModelPlan(plan, options.weights, options);
  const gpu = await requestNodeDevice();
  try {
    const session = await loadPlan(bytes, gpu.device);
    if (options.weights) {
      say(`mnc serve: loading weights ${options.weights}…`);
      session.loadWeights(readWeightsFiles(options.weights));
    }
    let model, vocabSize;
    try {
      if (decodesBatches(session)) {
        model = planBatchedLanguageModel(session);
        vocabSize = model.vocabSize;
      } else {
        const lm = planLanguageModel(session);
        [model, vocabSize] = [batchFromModels([lm]), lm.vocabSize];
      }
    } catch (error) {
      if (isTextError(error)) throw new CompileError('input', `${plan}: ${error.message}`);
      throw error;
    }
    if (vocabSize < tokenizer.vocabSize) throw new CompileError('input', `${plan}: the plan's vocabulary (${vocabSize}) is smaller than the tokenizer's (${tokenizer.vocabSize})`);
    const name = options.modelName ?? session.manifest.model.name;
    const close = async () => {
      session.destroy();
      await gpu.destroy();
    };
    return { name, model: withinVocabulary(model, tokenizer.vocabSize), tokenizer, defaults, close };
  } catch (error) {
    await gpu.destroy();
    throw error;
  }
}

export async function serveCommand(plan: string | undefined, options: ServeOptions): Promise<void> {
  const port = integer('--port', options.port, 0);
  const graceMs = positive('--grace', options.grace) * 1000;
  if (!Number.isFinite(Number(options.fakeStepMs)) || Number(options.fakeStepMs) < 0) throw new CompileError('input', `--fake-step-ms expects a number >= 0; got '${options.fakeStepMs}'`);
  const server = new ModelServer(serverOptions(options));
  const started = performance.now();
  let address;
  try {
    address = await server.listen(port, options.host);
  } catch (error) {
    throw new CompileError('io', `cannot listen on ${options.host}:${port}: ${(error as Error).message}`);
  }
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  console.log(`mnc serve: listening on ${url} (/ready answers 503 until the model is loaded)`);

  let stop: (signal: string) => void = () => {};
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  const onSignal = (signal: NodeJS.Signals) => stop(signal);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const line = progress();
    const loading = loadServedModel(plan, options, line.say);
    loading.catch(() => {}); // a failure after a signal has nobody to tell; before one, the race below throws it
    const loaded = await Promise.race([loading, stopped.then(() => undefined)]);
    if (loaded) {
      server.serve(loaded);
      const test = options.fakeModel ? ` (TEST MODEL --fake-model ${options.fakeModel}: not a language model)` : '';
      line.done(`mnc serve: ready: model '${loaded.name}'${test}, batch up to ${server.scheduler!.maxBatch}, loaded in ${((performance.now() - started) / 1000).toFixed(2)} s`);
      const signal = await stopped;
      console.log(`mnc serve: ${signal}: draining in-flight requests (grace ${graceMs / 1000} s)`);
    }
    const { finished, cancelled } = await server.shutdown(graceMs);
    await loaded?.close?.();
    console.log(`mnc serve: stopped: ${finished} in-flight requests finished, ${cancelled} cancelled`);
  } catch (error) {
    await server.shutdown(0);
    throw error;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
