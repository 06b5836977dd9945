// Generation options: what the sampler and generate() take, with transformers' names in
// camelCase and transformers' defaults, and the reader for a HuggingFace generation_config.json
// (snake_case, the same fields). Every bad value is refused with the field's name and the value.

import { TextError } from './errors';
import { parseJsonObject } from './json';
import { randomSeed } from './random';
import type { SamplingConfig } from './sampling';

/**
 * What a caller may set; everything is optional. Defaults are transformers' GenerationConfig's
 * (greedy unless `doSample`; with it, top-k 50), except the length: 256 new tokens unless
 * `maxNewTokens` or `maxLength` says otherwise (transformers: max_length 20).
 */
export interface GenerationOptions {
  /** sample from the processed distribution; false (the default) takes the most likely token */
  doSample?: boolean;
  /** divides the logits before sampling; > 0, default 1; 0 is taken as greedy */
  temperature?: number;
  /** keep the k most likely tokens (and ties with the k-th); 0 disables; default 50 */
  topK?: number;
  /** keep the smallest set of most likely tokens whose mass reaches p; in [0, 1]; 1 (the default) disables */
  topP?: number;
  /** keep tokens at least min_p times as likely as the most likely one; in [0, 1]; 0 (the default) disables */
  minP?: number;
  /** > 0; 1 (the default) disables; positive logits of seen tokens divided by it, negative ones multiplied */
  repetitionPenalty?: number;
  /** OpenAI's presence_penalty: in [-2, 2], subtracted from the logit of each token generated so far; 0 (the default) disables */
  presencePenalty?: number;
  /** OpenAI's frequency_penalty: in [-2, 2], subtracted from a token's logit once per time it was generated; 0 (the default) disables */
  frequencyPenalty?: number;
  /** stop after this many generated tokens (>= 1); takes precedence over maxLength */
  maxNewTokens?: number;
  /** stop when prompt + generated tokens reach this many (>= 1) */
  maxLength?: number;
  /** the stop tokens cannot be chosen before this many tokens are generated (default 0) */
  minNewTokens?: number;
  /** generation ends after any of these tokens (transformers' eos_token_id); default: the tokenizer's eos token */
  stopTokenIds?: readonly number[];
  /** seeds the sampler (random.ts: SplitMix64); an integer in [0, 2^53) or a bigint; default: a random seed */
  seed?: number | bigint;
}

/** Every option with its value decided. */
export interface ResolvedGenerationOptions extends SamplingConfig {
  readonly presencePenalty: number;
  readonly frequencyPenalty: number;
  readonly maxNewTokens: number | undefined;
  readonly maxLength: number | undefined;
  readonly minNewTokens: number;
  readonly stopTokenIds: readonly number[] | undefined;
  readonly seed: bigint;
}

/** transformers' defaults for the processors. */
export const DEFAULT_SAMPLING: SamplingConfig = { doSample: false, temperature: 1, topK: 50, topP: 1, minP: 0, repetitionPenalty: 1 };
/** New tokens generated when neither maxNewTokens nor maxLength is given. */
export const DEFAULT_MAX_NEW_TOKENS = 256;

type Check = (value: unknown) => string | null; // what was expected, or null when the value is fine

const isInteger = (v: unknown, min: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min;
const boolean: Check = (v) => (typeof v === 'boolean' ? null : 'a boolean');
const integerFrom = (min: number): Check => (v) => (isInteger(v, min) ? null : `an integer >= ${min}`);
const numberIn = (min: number, max: number): Check => (v) =>
  typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max ? null : `a number in [${min}, ${max}]`;
const nonNegative: Check = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? null : 'a finite number >= 0');
const positive: Check = (v) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? null : 'a finite number > 0');
const tokenIds: Check = (v) => (Array.isArray(v) && v.every((id) => isInteger(id, 0)) ? null : 'an array of token ids (integers >= 0)');
const seed: Check = (v) =>
  typeof v === 'bigint' || (isInteger(v, 0) && v < 2 ** 53) ? null : 'an integer in [0, 2^53) or a bigint';

/** Each option: its check, and its name in generation_config.json (absent: not read from the file). */
const FIELDS: Record<keyof GenerationOptions, { check: Check; hf?: string }> = {
  doSample: { check: boolean, hf: 'do_sample' },
  temperature: { check: nonNegative, hf: 'temperature' },
  topK: { check: integerFrom(0), hf: 'top_k' },
  topP: { check: numberIn(0, 1), hf: 'top_p' },
  minP: { check: numberIn(0, 1), hf: 'min_p' },
  repetitionPenalty: { check: positive, hf: 'repetition_penalty' },
  presencePenalty: { check: numberIn(-2, 2) },
  frequencyPenalty: { check: numberIn(-2, 2) },
  maxNewTokens: { check: integerFrom(1), hf: 'max_new_tokens' },
  maxLength: { check: integerFrom(1), hf: 'max_length' },
  minNewTokens: { check: integerFrom(0), hf: 'min_new_tokens' },
  stopTokenIds: { check: tokenIds },
  seed: { check: seed },
};

function show(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number') return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * Checks `options` and fills in the defaults. Unknown keys are refused too (a JavaScript
 * caller's `top_p` would otherwise be ignored silently).
 */
export function resolveGenerationOptions(options: GenerationOptions = {}): ResolvedGenerationOptions {
  for (const [key, value] of Object.entries(options)) {
    const field = FIELDS[key as keyof GenerationOptions];
    if (!field) {
      const known = Object.entries(FIELDS).find(([, f]) => f.hf === key)?.[0];
      throw new TextError('bad-option', `unknown generation option ${key}${known ? ` (did you mean ${known}?)` : ''}; the options are ${Object.keys(FIELDS).join(', ')}`);
    }
    if (value === undefined) continue;
    const expected = field.check(value);
    if (expected) throw new TextError('bad-option', `generation option ${key} must be ${expected}; got ${show(value)}`);
  }
  const d = DEFAULT_SAMPLING;
  return {
    doSample: options.doSample ?? d.doSample,
    temperature: options.temperature ?? d.temperature,
    topK: options.topK ?? d.topK,
    topP: options.topP ?? d.topP,
    minP: options.minP ?? d.minP,
    repetitionPenalty: options.repetitionPenalty ?? d.repetitionPenalty,
    presencePenalty: options.presencePenalty ?? 0,
    frequencyPenalty: options.frequencyPenalty ?? 0,
    maxNewTokens: options.maxNewTokens ?? (options.maxLength === undefined ? DEFAULT_MAX_NEW_TOKENS : undefined),
    maxLength: options.maxLength,
    minNewTokens: options.minNewTokens ?? 0,
    stopTokenIds: options.stopTokenIds,
    seed: options.seed === undefined ? randomSeed() : BigInt.asUintN(64, BigInt(options.seed)),
  };
}

/**
 * The options a HuggingFace generation_config.json sets (parsed JSON, a JSON string or its
 * bytes): do_sample, temperature, top_k, top_p, min_p, repetition_penalty, max_new_tokens,
 * max_length, min_new_tokens, and eos_token_id (a number or a list) as stopTokenIds. Fields
 * that are null or absent are left out, so the result spreads under a caller's own options:
 * `{ ...readGenerationConfig(json), temperature: 0.7 }`. Other fields are ignored.
 */
export function readGenerationConfig(json: unknown, file = 'generation_config.json'): GenerationOptions {
  const config = parseJsonObject(json, file, 'bad-option');
  const options: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(FIELDS)) {
    if (!field.hf) continue;
    const value = config[field.hf];
    if (value === undefined || value === null) continue;
    const expected = field.check(value);
    if (expected) throw new TextError('bad-option', `${field.hf} must be ${expected}; got ${show(value)}`, { file });
    options[key] = value;
  }
  const eos = config['eos_token_id'];
  if (eos !== undefined && eos !== null) {
    const ids = Array.isArray(eos) ? eos : [eos];
    if (tokenIds(ids)) throw new TextError('bad-option', `eos_token_id must be a token id or a list of them; got ${show(eos)}`, { file });
    options.stopTokenIds = ids as number[];
  }
  return options as GenerationOptions;
}
