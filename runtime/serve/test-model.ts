// A TEST MODEL, not a language model: a seeded bigram table over a few dozen words of a real
// tokenizer's vocabulary, behind the batched model interface (runtime/text/batch.ts), so the
// server, its scheduler and its clients run end to end before a language-model plan exists
// (`mnc serve --fake-model bigram`). It checks what a KV-cache plan would rely on (slots used
// one sequence at a time, positions contiguous, no slot decoded twice in a step) and throws when
// the caller breaks it, records the size of every decode step, and can take simulated time per
// step so batching shows in the figures.

import type { BatchedLanguageModel, DecodeRequest } from '../text/batch';
import { uniform } from '../text/random';
import type { Tokenizer } from '../text/tokenizer';

export interface BigramTestModelOptions {
  /** seeds the table; default 2024 */
  seed?: number;
  /** slots; default 64 */
  maxBatch?: number;
  /** default 2048 */
  maxSequenceLength?: number;
  /** simulated time of a decode step, ms (default 0: none, the step only yields) */
  stepMs?: number;
  /** simulated time added per sequence in a decode step, ms (default 0) */
  perSequenceMs?: number;
  /** simulated prefill time per prompt token, ms (default 0) */
  prefillMsPerToken?: number;
}

/** The words the table generates (each one token, with its leading space, in most BPE vocabularies). */
const WORDS = (
  'the a of cat dog sat on mat and ran to big small red blue house tree sun moon star is was it he she we they ' +
  'see saw run eat one two three four five six seven eight nine ten'
).split(' ');
/** pieces that let tests stop at punctuation and lines */
const MARKS = ['.', ',', '!', '\n'];

/** A seeded bigram table over real token ids (see the file header): a test model only. */
export class BigramTestModel implements BatchedLanguageModel {
  readonly maxBatch: number;
  readonly maxSequenceLength: number;
  /** decodeBatchSizes[n]: how many decode steps ran n sequences */
  readonly decodeBatchSizes: number[] = [];
  /** how many slots were released */
  releases = 0;
  /** how many prefills ran */
  prefills = 0;
  /** the token ids the table generates */
  readonly vocabulary: readonly number[];
  private readonly rows: Float32Array[];
  private readonly rowOf = new Map<number, number>();
  /** slot → the position its next decode must have; undefined: free */
  private readonly slots: (number | undefined)[];
  private readonly options: Required<Omit<BigramTestModelOptions, 'seed' | 'maxBatch' | 'maxSequenceLength'>>;

  /** The table over `tokenizer`'s ids for the words above, with its eos token now and then. */
  static forTokenizer(tokenizer: Tokenizer, options: BigramTestModelOptions = {}): BigramTestModel {
    const ids = new Set<number>();
    for (const word of WORDS) {
      const pieces = tokenizer.encode(` ${word}`, { addSpecialTokens: false });
      if (pieces.length === 1) ids.add(pieces[0]!);
    }
    for (const mark of MARKS) {
      const pieces = tokenizer.encode(mark, { addSpecialTokens: false });
      if (pieces.length === 1) ids.add(pieces[0]!);
    }
    return new BigramTestModel(tokenizer.vocabSize, [...ids], tokenizer.eos?.id, options);
  }

  constructor(vocabSize: number, vocabulary: readonly number[], eos: number | undefined, options: BigramTestModelOptions = {}) {
    if (vocabulary.length < 2) throw new RangeError('the bigram test model needs at least two token ids');
    this.maxBatch = options.maxBatch ?? 64;
    this.maxSequenceLength = options.maxSequenceLength ?? 2048;
    this.options = { stepMs: options.stepMs ?? 0, perSequenceMs: options.perSequenceMs ?? 0, prefillMsPerToken: options.prefillMsPerToken ?? 0 };
    this.vocabulary = vocabulary;
    this.slots = new Array(this.maxBatch).fill(undefined);
    const seed = BigInt(options.seed ?? 2024);
    let draw = 0;
    this.rows = vocabulary.map((id, r) => {
      this.rowOf.set(id, r);
      const row = new Float32Array(vocabSize).fill(-Infinity);
      for (const to of vocabulary) row[to] = (uniform(seed, draw++) - 0.5) * 6;
      if (eos !== undefined) row[eos] = -1;
      return row;
    });
  }

  /** the largest decode step so far */
  get largestBatch(): number {
    return this.decodeBatchSizes.length - 1;
  }

  /** slots prefilled and not released */
  get slotsInUse(): number {
    return this.slots.filter((s) => s !== undefined).length;
  }

  async prefill(slot: number, tokens: readonly number[]): Promise<Float32Array> {
    this.checkSlot(slot);
    if (this.slots[slot] !== undefined) throw new Error(`bigram test model: slot ${slot} prefilled while in use`);
    if (tokens.length === 0 || tokens.length > this.maxSequenceLength) throw new Error(`bigram test model: a prompt of ${tokens.length} tokens`);
    this.slots[slot] = tokens.length;
    this.prefills++;
    await pause(this.options.prefillMsPerToken * tokens.length);
    return this.row(tokens.at(-1)!);
  }

  async decodeBatch(requests: readonly DecodeRequest[]): Promise<Float32Array[]> {
    const seen = new Set<number>();
    for (const { slot, position } of requests) {
      this.checkSlot(slot);
      if (seen.has(slot)) throw new Error(`bigram test model: slot ${slot} twice in one decode step`);
      seen.add(slot);
      const expected = this.slots[slot];
      if (expected === undefined) throw new Error(`bigram test model: slot ${slot} decoded without a prefill`);
      if (position !== expected) throw new Error(`bigram test model: slot ${slot} decoded at position ${position}; its cache holds ${expected} positions`);
      if (position >= this.maxSequenceLength) throw new Error(`bigram test model: slot ${slot} past the sequence length ${this.maxSequenceLength}`);
    }
    for (const { slot } of requests) this.slots[slot]!++;
    const n = requests.length;
    while (this.decodeBatchSizes.length <= n) this.decodeBatchSizes.push(0);
    this.decodeBatchSizes[n]!++;
    await pause(this.options.stepMs + this.options.perSequenceMs * n);
    return requests.map((r) => this.row(r.token));
  }

  release(slot: number): void {
    this.checkSlot(slot);
    this.slots[slot] = undefined;
    this.releases++;
  }

  /** The logits after `token`: its row, or a row chosen by the id for tokens outside the table (a prompt's last token). */
  private row(token: number): Float32Array {
    return this.rows[this.rowOf.get(token) ?? token % this.rows.length]!;
  }

  private checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.maxBatch) throw new Error(`bigram test model: slot ${slot} outside [0, ${this.maxBatch})`);
  }
}

const pause = (ms: number): Promise<void> => (ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve());
