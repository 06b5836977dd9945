// The OpenAI HTTP API as this server speaks it: request bodies of /v1/chat/completions and
// /v1/completions checked field by field into generation options, the response and stream
// chunk objects, and errors in OpenAI's shape `{ error: { message, type, param, code } }`.
// Field names and ranges follow https://platform.openai.com/docs/api-reference/chat/create;
// top_k, min_p and repetition_penalty are the extensions vLLM and others accept.

import type { ChatMessage } from '../text/chat-template';
import type { GenerationOptions } from '../text/generation-config';

/** An error answered as OpenAI answers it: a status, and `{ error: { message, type, param, code } }`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** extra response headers (Retry-After, ...) */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 about one field. */
const invalid = (param: string, message: string, code: string | null = 'invalid_value') => new ApiError(400, message, 'invalid_request_error', param, code);

/** A completion request, checked: what to generate and how to answer. */
export interface CompletionRequest {
  readonly endpoint: 'chat' | 'completion';
  readonly model: string;
  /** chat messages (chat), text or token ids (completion) */
  readonly prompt: readonly ChatMessage[] | string | readonly number[];
  /** sampling options the request sets (the model's defaults fill the rest) */
  readonly options: GenerationOptions;
  /** max_completion_tokens, else max_tokens; undefined: the server's default */
  readonly maxTokens: number | undefined;
  readonly stop: readonly string[];
  readonly stream: boolean;
  readonly includeUsage: boolean;
}

type Body = Record<string, unknown>;

function isObject(value: unknown): value is Body {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The value of an optional field: undefined when absent or null. */
function optional(body: Body, name: string): unknown {
  const value = body[name];
  return value === null ? undefined : value;
}

function numberField(body: Body, name: string, min: number, max: number): number | undefined {
  const value = optional(body, name);
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalid(name, `${name} must be a number; got ${JSON.stringify(value)}`, 'invalid_type');
  if (value < min || value > max) throw invalid(name, `${name} must be in [${min}, ${max}]; got ${value}`);
  return value;
}

function integerField(body: Body, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const value = optional(body, name);
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw invalid(name, `${name} must be an integer; got ${JSON.stringify(value)}`, 'invalid_type');
  if (value < min || value > max) throw invalid(name, `${name} must be ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`}; got ${value}`);
  return value;
}

function booleanField(body: Body, name: string): boolean | undefined {
  const value = optional(body, name);
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw invalid(name, `${name} must be a boolean; got ${JSON.stringify(value)}`, 'invalid_type');
  return value;
}

/** Fields whose meaning this server does not implement: refused rather than ignored, so no answer is silently wrong. */
function refuseUnsupported(body: Body): void {
  const n = integerField(body, 'n', 1);
  if (n !== undefined && n !== 1) throw invalid('n', `n must be 1: this server generates one choice per request; got ${n}`, 'unsupported_value');
  const bestOf = integerField(body, 'best_of', 1);
  if (bestOf !== undefined && bestOf !== 1) throw invalid('best_of', `best_of must be 1; got ${bestOf}`, 'unsupported_value');
  const logprobs = optional(body, 'logprobs');
  if (logprobs !== undefined && logprobs !== false) throw invalid('logprobs', 'logprobs are not supported by this server', 'unsupported_parameter');
  if (optional(body, 'top_logprobs') !== undefined) throw invalid('top_logprobs', 'top_logprobs is not supported by this server', 'unsupported_parameter');
  if (optional(body, 'echo') === true) throw invalid('echo', 'echo is not supported by this server', 'unsupported_parameter');
  if (optional(body, 'suffix') !== undefined) throw invalid('suffix', 'suffix is not supported by this server', 'unsupported_parameter');
  for (const name of ['tools', 'functions']) {
    const value = optional(body, name);
    if (value !== undefined && !(Array.isArray(value) && value.length === 0)) throw invalid(name, `${name} (tool calling) is not supported by this server`, 'unsupported_parameter');
  }
  const bias = optional(body, 'logit_bias');
  if (bias !== undefined && !(isObject(bias) && Object.keys(bias).length === 0)) throw invalid('logit_bias', 'logit_bias is not supported by this server', 'unsupported_parameter');
  const format = optional(body, 'response_format');
  if (format !== undefined && !(isObject(format) && format.type === 'text')) throw invalid('response_format', 'only response_format {"type": "text"} is supported by this server', 'unsupported_parameter');
}

/** Sampling fields → generation options. temperature 0 is greedy; otherwise the request samples (OpenAI's default temperature is 1). */
function samplingOptions(body: Body): GenerationOptions {
  const options: GenerationOptions = {};
  const temperature = numberField(body, 'temperature', 0, 2);
  if (temperature !== undefined) {
    options.doSample = temperature > 0;
    if (temperature > 0) options.temperature = temperature;
  }
  const topP = numberField(body, 'top_p', 0, 1);
  if (topP !== undefined) options.topP = topP;
  const topK = integerField(body, 'top_k', -1);
  if (topK !== undefined) options.topK = topK === -1 ? 0 : topK;
  const minP = numberField(body, 'min_p', 0, 1);
  if (minP !== undefined) options.minP = minP;
  const presence = numberField(body, 'presence_penalty', -2, 2);
  if (presence !== undefined) options.presencePenalty = presence;
  const frequency = numberField(body, 'frequency_penalty', -2, 2);
  if (frequency !== undefined) options.frequencyPenalty = frequency;
  const repetition = numberField(body, 'repetition_penalty', Number.MIN_VALUE, 10);
  if (repetition !== undefined) options.repetitionPenalty = repetition;
  const seed = integerField(body, 'seed', Number.MIN_SAFE_INTEGER);
  if (seed !== undefined) options.seed = BigInt.asUintN(64, BigInt(seed));
  return options;
}

function stopField(body: Body): string[] {
  const value = optional(body, 'stop');
  if (value === undefined) return [];
  const stops = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string')) throw invalid('stop', 'stop must be a string or an array of up to 4 strings', 'invalid_type');
  if (stops.length > 4) throw invalid('stop', `stop takes up to 4 strings; got ${stops.length}`);
  return (stops as string[]).filter((s) => s.length > 0);
}

function maxTokensField(body: Body): number | undefined {
  return integerField(body, 'max_completion_tokens', 1) ?? integerField(body, 'max_tokens', 1);
}

function streamFields(body: Body): { stream: boolean; includeUsage: boolean } {
  const stream = booleanField(body, 'stream') ?? false;
  const options = optional(body, 'stream_options');
  if (options === undefined) return { stream, includeUsage: false };
  if (!isObject(options)) throw invalid('stream_options', 'stream_options must be an object', 'invalid_type');
  if (!stream) throw invalid('stream_options', 'stream_options is only allowed when stream is true');
  const include = options.include_usage;
  if (include !== undefined && include !== null && typeof include !== 'boolean') throw invalid('stream_options.include_usage', 'stream_options.include_usage must be a boolean', 'invalid_type');
  return { stream, includeUsage: include === true };
}

function modelField(body: Body): string {
  const model = body.model;
  if (typeof model !== 'string' || model.length === 0) throw invalid('model', 'you must provide a model parameter (a string)', 'missing_required_parameter');
  return model;
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);

/**
 * Chat messages for the template: text content only (a string, or text parts joined). Image,
 * audio and file parts are refused: the server fetches and reads nothing a request names.
 */
function messagesField(body: Body): ChatMessage[] {
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) throw invalid('messages', 'messages must be a non-empty array of { role, content }', 'invalid_type');
  return messages.map((m, i) => {
    const param = `messages[${i}]`;
    if (!isObject(m) || typeof m.role !== 'string') throw invalid(param, `${param} must be an object with a string role`, 'invalid_type');
    if (!ROLES.has(m.role)) throw invalid(`${param}.role`, `${param}.role must be one of ${[...ROLES].join(', ')}; got ${JSON.stringify(m.role)}`);
    let content: string;
    if (typeof m.content === 'string') content = m.content;
    else if (m.content === null || m.content === undefined) content = '';
    else if (Array.isArray(m.content)) {
      content = m.content
        .map((part, j) => {
          if (isObject(part) && part.type === 'text' && typeof part.text === 'string') return part.text;
          const type = isObject(part) ? JSON.stringify(part.type) : 'a non-object';
          throw invalid(`${param}.content[${j}]`, `only text content parts are supported; got a part of type ${type}`, 'unsupported_value');
        })
        .join('');
    } else throw invalid(`${param}.content`, `${param}.content must be a string or an array of text parts`, 'invalid_type');
    // templates know system, user, assistant and tool; OpenAI's developer role is its newer name for system
    return { role: m.role === 'developer' ? 'system' : m.role, content };
  });
}

/** The completions endpoint's prompt: a string, a list of one string, token ids, or a list of one list of ids. */
function promptField(body: Body): string | number[] {
  let prompt = body.prompt;
  if (Array.isArray(prompt) && prompt.length === 1 && (typeof prompt[0] === 'string' || Array.isArray(prompt[0]))) prompt = prompt[0];
  if (typeof prompt === 'string') return prompt;
  if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((t) => Number.isSafeInteger(t) && (t as number) >= 0)) return prompt as number[];
  if (Array.isArray(prompt) && prompt.length > 1 && prompt.every((p) => typeof p === 'string' || Array.isArray(p))) {
    throw invalid('prompt', 'one prompt per request: this server does not take a batch of prompts', 'unsupported_value');
  }
  throw invalid('prompt', 'prompt must be a string or an array of token ids', 'invalid_type');
}

function checked(body: unknown): Body {
  if (!isObject(body)) throw new ApiError(400, 'the request body must be a JSON object', 'invalid_request_error', null, 'invalid_json');
  refuseUnsupported(body);
  return body;
}

/** A /v1/chat/completions body, checked. */
export function parseChatRequest(json: unknown): CompletionRequest {
  const body = checked(json);
  return { endpoint: 'chat', model: modelField(body), prompt: messagesField(body), options: samplingOptions(body), maxTokens: maxTokensField(body), stop: stopField(body), ...streamFields(body) };
}

/** A /v1/completions body, checked. */
export function parseCompletionRequest(json: unknown): CompletionRequest {
  const body = checked(json);
  return { endpoint: 'completion', model: modelField(body), prompt: promptField(body), options: samplingOptions(body), maxTokens: maxTokensField(body), stop: stopField(body), ...streamFields(body) };
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export const usage = (prompt: number, completion: number): Usage => ({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion });

/** What identifies one response: the same in every chunk of a stream. */
export interface ResponseHead {
  id: string;
  created: number;
  model: string;
}

export type FinishReason = 'stop' | 'length';

/** A non-streaming response. */
export function completionResponse(endpoint: 'chat' | 'completion', head: ResponseHead, text: string, finish: FinishReason, counts: Usage): object {
  if (endpoint === 'chat') {
    return {
      ...head,
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: finish }],
      usage: counts,
    };
  }
  return { ...head, object: 'text_completion', choices: [{ index: 0, text, logprobs: null, finish_reason: finish }], usage: counts };
}

/**
 * One chunk of a stream: text (the chat endpoint's first chunk carries the role), the last
 * one's finish reason, or (`usage` set) the usage chunk with no choices. With include_usage
 * every other chunk carries `usage: null`, as OpenAI's do.
 */
export function streamChunk(
  endpoint: 'chat' | 'completion',
  head: ResponseHead,
  part: { text?: string; role?: boolean; finish?: FinishReason; usage?: Usage },
  includeUsage: boolean,
): object {
  const object = endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  const extra = includeUsage ? { usage: part.usage ?? null } : {};
  if (part.usage) return { ...head, object, choices: [], ...extra };
  const finish_reason = part.finish ?? null;
  if (endpoint === 'chat') {
    const delta: Record<string, string> = {};
    if (part.role) delta.role = 'assistant';
    if (part.text !== undefined) delta.content = part.text;
    return { ...head, object, choices: [{ index: 0, delta, logprobs: null, finish_reason }], ...extra };
  }
  return { ...head, object, choices: [{ index: 0, text: part.text ?? '', logprobs: null, finish_reason }], ...extra };
}
