// generate(): the decode loop around a language model — prompt to tokens, prefill, then one
// decode step per token, each choosing the next token on the host (sampling.ts) and releasing
// its text (stream.ts) — as an async iterator. The model is anything with prefill and decode;
// a plan with those entry points and its KV cache on the GPU is one, a bigram table in a
// test is another.

import type { ChatMessage, ChatTemplateOptions } from './chat-template';
import { TextError } from './errors';
import { resolveGenerationOptions, type GenerationOptions, type ResolvedGenerationOptions } from './generation-config';
import { uniform } from './random';
import { nextTokenDistribution, sampleFromDistribution } from './sampling';
import type { TextStreamDecoder } from './stream';
import type { Tokenizer } from './tokenizer';

/**
 * What generate() needs of a model. Positions count from 0 at the first prompt token; the
 * model keeps whatever state (the KV cache) makes decode cheap.
 */
export interface LanguageModel {
  /** Runs the prompt (positions 0 … n-1); returns the logits of the token at position n. */
  prefill(tokens: readonly number[]): Promise<Float32Array>;
  /** Runs `token` at `position` (after every earlier position); returns the logits of the token at position + 1. */
  decode(token: number, position: number): Promise<Float32Array>;
  /** the longest sequence (prompt + generated) the model holds; generation ends there */
  readonly maxSequenceLength?: number;
}

/** One generated token. */
export interface GeneratedToken {
  /** the token id */
  readonly token: number;
  /** the text this token completes: '' while a character or piece is unfinished; everything still held back on the last token */
  readonly text: string;
  /** 0 for the first generated token */
  readonly index: number;
  /** set on the last token: `stop` (a stop token; its own text is left out) or `length` (a length limit) */
  readonly finishReason: 'stop' | 'length' | null;
}

export interface GenerateOptions extends GenerationOptions {
  /** turns text or messages into tokens and tokens into text; without one the prompt must be token ids and `text` stays '' */
  tokenizer?: Tokenizer;
  /** chat template options for a messages prompt (add_generation_prompt is on unless set) */
  chat?: ChatTemplateOptions;
  /** stops generation between tokens: the iterator throws the signal's reason */
  signal?: AbortSignal;
}

/**
 * Generates from `prompt` — text (encoded with the tokenizer's special tokens), chat messages
 * (rendered by its chat template with the generation prompt), or token ids — one token at a
 * time.
 *
 *     for await (const step of generate(model, 'The capital of France is', { tokenizer, maxNewTokens: 20 })) {
 *       process.stdout.write(step.text);
 *     }
 */
export async function* generate(
  model: LanguageModel,
  prompt: string | readonly ChatMessage[] | readonly number[],
  options: GenerateOptions = {},
): AsyncGenerator<GeneratedToken, void, undefined> {
  const { signal, ...rest } = options;
  const generation = new Generation(prompt, rest, model.maxSequenceLength);
  if (generation.limit <= 0) return;
  signal?.throwIfAborted();
  let logits = await model.prefill(generation.promptIds);
  for (;;) {
    signal?.throwIfAborted();
    const step = generation.next(logits);
    yield step;
    if (step.finishReason) return;
    signal?.throwIfAborted(); // the consumer may have aborted while it held the token
    logits = await model.decode(step.token, generation.position);
  }
}

/**
 * One sequence's generation, apart from the model: the prompt's tokens, the resolved options,
 * the tokens so far and the text released. Whoever runs the model (generate() for one
 * sequence, scheduler.ts for a batch of them) hands it the logits of each position and gets
 * the next token back.
 *
 *     const generation = new Generation('Hello', { tokenizer, maxNewTokens: 8 });
 *     let step = generation.next(await model.prefill(generation.promptIds));
 *     while (!step.finishReason) step = generation.next(await model.decode(step.token, generation.position));
 */
export class Generation {
  /** the prompt as token ids */
  readonly promptIds: readonly number[];
  /** how many tokens may be generated (0: none; the prompt fills the length limit) */
  readonly limit: number;
  readonly config: ResolvedGenerationOptions;
  private readonly sequence: number[];
  private readonly stopIds: ReadonlySet<number>;
  private readonly stream: TextStreamDecoder | undefined;
  private vocab = -1;
  private finished: 'stop' | 'length' | null = null;

  /** Refuses bad options and prompts (TextError) before any model work. */
  constructor(prompt: string | readonly ChatMessage[] | readonly number[], options: Omit<GenerateOptions, 'signal'> = {}, maxSequenceLength?: number) {
    const { tokenizer, chat, ...generation } = options;
    this.config = resolveGenerationOptions(generation);
    this.promptIds = promptTokens(prompt, tokenizer, chat);
    this.stopIds = new Set(this.config.stopTokenIds ?? (tokenizer?.eos ? [tokenizer.eos.id] : []));
    this.limit = lengthLimit(this.promptIds.length, this.config.maxNewTokens, this.config.maxLength, maxSequenceLength);
    this.stream = tokenizer?.streamDecoder({ context: this.promptIds });
    this.sequence = [...this.promptIds];
  }

  /** generated tokens so far */
  get generated(): number {
    return this.sequence.length - this.promptIds.length;
  }

  /** the position of the last token: where the model decodes it */
  get position(): number {
    return this.sequence.length - 1;
  }

  /** why generation ended, or null while it goes on */
  get finishReason(): 'stop' | 'length' | null {
    return this.finished;
  }

  /** The next token from the logits of the position after the last token. */
  next(logits: Float32Array): GeneratedToken {
    const index = this.generated;
    if (this.finished) throw new TextError('bad-input', `generation has ended (${this.finished}); no token ${index} is chosen`);
    if (this.vocab < 0) this.vocab = logits.length;
    else if (logits.length !== this.vocab) throw new TextError('bad-logits', `the model returned ${logits.length} logits at step ${index}, ${this.vocab} at prefill`);
    if (index < this.config.minNewTokens && this.stopIds.size > 0) logits = suppress(logits, this.stopIds);
    const token = chooseToken(logits, this.sequence, this.config, index, this.promptIds.length);
    this.sequence.push(token);
    const stopped = this.stopIds.has(token);
    const last = stopped || index + 1 >= this.limit;
    let text = '';
    if (this.stream) text = (stopped ? '' : this.stream.push(token)) + (last ? this.stream.flush() : '');
    if (last) this.finished = stopped ? 'stop' : 'length';
    return { token, text, index, finishReason: this.finished };
  }
}

/**
 * The next token: a draw from the processed distribution (a single token when greedy). Token
 * `index` always uses draw `index` of the seed, so runs with one seed agree token for token.
 */
function chooseToken(logits: Float32Array, sequence: readonly number[], config: ResolvedGenerationOptions, index: number, promptLength: number): number {
  return sampleFromDistribution(nextTokenDistribution(logits, sequence, config, promptLength), uniform(config.seed, index));
}

function promptTokens(prompt: string | readonly ChatMessage[] | readonly number[], tokenizer: Tokenizer | undefined, chat: ChatTemplateOptions | undefined): number[] {
  let ids: number[];
  if (typeof prompt === 'string') {
    if (!tokenizer) throw new TextError('bad-input', 'a text prompt needs a tokenizer (options.tokenizer)');
    ids = tokenizer.encode(prompt);
  } else if (Array.isArray(prompt) && prompt.every((t) => typeof t === 'number')) {
    ids = [...(prompt as readonly number[])];
    const bad = ids.find((t) => !Number.isInteger(t) || t < 0);
    if (bad !== undefined) throw new TextError('bad-input', `prompt token ids must be integers >= 0; got ${bad}`);
  } else {
    if (!tokenizer) throw new TextError('bad-input', 'a chat prompt needs a tokenizer (options.tokenizer)');
    ids = tokenizer.encodeChat(prompt as readonly ChatMessage[], { addGenerationPrompt: true, ...chat });
  }
  if (ids.length === 0) throw new TextError('bad-input', 'the prompt has no tokens (an empty prompt with a tokenizer that adds no bos token)');
  return ids;
}

/** How many tokens may be generated: maxNewTokens, else maxLength less the prompt; never past the model's length. */
function lengthLimit(promptLength: number, maxNewTokens: number | undefined, maxLength: number | undefined, modelLength: number | undefined): number {
  let limit = maxNewTokens ?? (maxLength ?? Infinity) - promptLength;
  if (modelLength !== undefined) {
    if (promptLength > modelLength) throw new TextError('bad-input', `the prompt has ${promptLength} tokens; the model holds ${modelLength}`);
    limit = Math.min(limit, modelLength - promptLength);
  }
  return limit;
}

/** A copy of the logits with the stop tokens masked (transformers' MinNewTokensLengthLogitsProcessor). */
function suppress(logits: Float32Array, ids: ReadonlySet<number>): Float32Array {
  const masked = Float32Array.from(logits);
  for (const id of ids) if (id < masked.length) masked[id] = -Infinity;
  return masked;
}
