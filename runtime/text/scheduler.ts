// Continuous batching over a BatchedLanguageModel (batch.ts): sequences join and leave between
// decode steps, so concurrent requests share each step instead of queueing behind each other.
// Each step: release the slots of cancelled sequences, admit waiting sequences while a slot is
// free and the KV-cache budget holds their worst case (prompt + every token they may generate:
// admitted sequences never have to be preempted), prefill the newcomers, then decode every
// running sequence in one decodeBatch call. Beyond the slots, requests wait in a bounded FIFO
// queue; beyond the queue, submit() refuses at once so a server can answer 503 with Retry-After.

import type { DecodeRequest, BatchedLanguageModel } from './batch';
import type { GeneratedToken, Generation } from './generate';

export type SchedulerErrorKind =
  /** the waiting queue is full: try again later */
  | 'queue-full'
  /** the request's worst case (prompt + max new tokens) exceeds the whole KV-cache budget: it can never run */
  | 'too-large'
  /** the scheduler was closed (the server is shutting down) */
  | 'closed';

export class SchedulerError extends Error {
  constructor(
    readonly kind: SchedulerErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'SchedulerError';
  }
}

export interface SchedulerLimits {
  /** the most sequences in one decode step; default and upper bound: the model's maxBatch */
  maxBatch?: number;
  /**
   * KV-cache tokens the running sequences may hold together, each counted at its worst case
   * (prompt + max new tokens); default maxBatch × the model's maxSequenceLength (no bound
   * without one)
   */
  kvCacheTokens?: number;
  /** requests that may wait for a slot; beyond them submit() throws queue-full; default 64 */
  maxQueue?: number;
}

/** Figures the scheduler reports as it works (for metrics). */
export interface SchedulerObserver {
  /** a decode step ran `batchSize` sequences in `seconds` */
  decodeStep?(batchSize: number, seconds: number): void;
  /** a prompt of `tokens` tokens was prefilled in `seconds` */
  prefill?(tokens: number, seconds: number): void;
}

/** A submitted sequence: its tokens as they are generated. Iterate it once; leaving the loop early cancels it. */
export interface ScheduledSequence extends AsyncIterable<GeneratedToken> {
  /** Ends the sequence: its slot is released at the next step; an iterator waiting on it throws `reason` if given, else ends. */
  cancel(reason?: unknown): void;
  /** waiting for a slot, running, or done (finished, cancelled or failed) */
  readonly state: 'waiting' | 'running' | 'done';
}

/**
 * Runs submitted generations (generate.ts's Generation) on a batched model.
 *
 *     const scheduler = new BatchScheduler(model, { maxBatch: 8, kvCacheTokens: 8 * 2048, maxQueue: 64 });
 *     const generation = new Generation(messages, { tokenizer, maxNewTokens: 100 }, scheduler.maxSequenceLength);
 *     for await (const step of scheduler.submit(generation, request.signal)) res.write(step.text);
 */
export class BatchScheduler {
  readonly maxBatch: number;
  readonly kvCacheTokens: number;
  readonly maxQueue: number;
  private readonly waiting: Sequence[] = [];
  /** slot → its sequence, from admission until release */
  private readonly slots = new Map<number, Sequence>();
  private reserved = 0;
  private running = false;
  private closed = false;

  constructor(
    private readonly model: BatchedLanguageModel,
    limits: SchedulerLimits = {},
    private readonly observer: SchedulerObserver = {},
  ) {
    this.maxBatch = Math.min(limits.maxBatch ?? model.maxBatch, model.maxBatch);
    if (!(this.maxBatch >= 1) || !Number.isInteger(this.maxBatch)) throw new RangeError(`maxBatch must be an integer >= 1; got ${limits.maxBatch ?? model.maxBatch}`);
    this.kvCacheTokens = limits.kvCacheTokens ?? (model.maxSequenceLength === undefined ? Infinity : this.maxBatch * model.maxSequenceLength);
    if (!(this.kvCacheTokens >= 1)) throw new RangeError(`kvCacheTokens must be >= 1; got ${limits.kvCacheTokens}`);
    this.maxQueue = limits.maxQueue ?? 64;
    if (!(this.maxQueue >= 0) || !Number.isInteger(this.maxQueue)) throw new RangeError(`maxQueue must be an integer >= 0; got ${limits.maxQueue}`);
  }

  /** the model's longest sequence: give it to each Generation */
  get maxSequenceLength(): number | undefined {
    return this.model.maxSequenceLength;
  }

  /** sequences waiting for a slot */
  get queueDepth(): number {
    return this.waiting.length;
  }

  /** sequences holding a slot */
  get activeSequences(): number {
    return this.slots.size;
  }

  /** KV-cache tokens the running sequences reserve (their worst case) */
  get reservedTokens(): number {
    return this.reserved;
  }

  /**
   * Queues `generation`; its tokens arrive through the returned sequence. Throws a
   * SchedulerError, before any work, when the queue is full, the request could never fit
   * the KV-cache budget, or the scheduler is closed. An abort of `signal` cancels it with the
   * signal's reason.
   */
  submit(generation: Generation, signal?: AbortSignal): ScheduledSequence {
    if (this.closed) throw new SchedulerError('closed', 'the server is shutting down and takes no new requests');
    const need = generation.promptIds.length + generation.limit;
    if (need > this.kvCacheTokens) {
      throw new SchedulerError('too-large', `the request needs up to ${need} tokens of KV cache (prompt ${generation.promptIds.length} + up to ${generation.limit} new); the server holds ${this.kvCacheTokens} in all`);
    }
    const sequence = new Sequence(generation, need, (s) => this.cancelled(s));
    if (generation.limit <= 0) {
      sequence.end();
      return sequence;
    }
    if (this.waiting.length > 0 || !this.fits(sequence)) {
      if (this.waiting.length >= this.maxQueue) throw new SchedulerError('queue-full', `the server is at capacity (${this.slots.size} running, ${this.waiting.length} waiting); retry later`);
      this.waiting.push(sequence);
    } else {
      this.admit(sequence);
    }
    if (signal) {
      if (signal.aborted) sequence.cancel(signal.reason);
      else {
        const onAbort = () => sequence.cancel(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        sequence.onEnd = () => signal.removeEventListener('abort', onAbort);
      }
    }
    this.kick();
    return sequence;
  }

  /** Refuses new requests from now on; running and waiting ones go on. */
  close(): void {
    this.closed = true;
  }

  /** Cancels every waiting and running sequence with `reason` (their slots are released at the next step). */
  cancelAll(reason: unknown): void {
    for (const s of [...this.waiting, ...this.slots.values()]) s.cancel(reason);
  }

  private fits(sequence: Sequence): boolean {
    return this.slots.size < this.maxBatch && this.reserved + sequence.reserve <= this.kvCacheTokens;
  }

  private admit(sequence: Sequence): void {
    let slot = 0;
    while (this.slots.has(slot)) slot++;
    sequence.slot = slot;
    sequence.state = 'running';
    this.slots.set(slot, sequence);
    this.reserved += sequence.reserve;
  }

  private release(sequence: Sequence): void {
    if (this.slots.get(sequence.slot) !== sequence) return;
    this.slots.delete(sequence.slot);
    this.reserved -= sequence.reserve;
    if (sequence.prefilled) {
      try {
        this.model.release(sequence.slot);
      } catch {
        // a model that cannot drop a cache still gets the slot prefilled over next time
      }
    }
  }

  /** A cancelled sequence leaves the queue at once; a running one at the next step (the model may be using its slot now). */
  private cancelled(sequence: Sequence): void {
    const at = this.waiting.indexOf(sequence);
    if (at >= 0) this.waiting.splice(at, 1);
  }

  /** Starts the step loop if it is idle, after the current task: requests submitted together join its first step. */
  private kick(): void {
    if (this.running) return;
    this.running = true;
    queueMicrotask(() => void this.run());
  }

  private async run(): Promise<void> {
    try {
      while (this.slots.size > 0 || this.waiting.length > 0) {
        this.sweep();
        while (this.waiting.length > 0 && this.fits(this.waiting[0]!)) this.admit(this.waiting.shift()!);
        await this.prefillNewcomers();
        await this.decodeStep();
        await yieldToEventLoop(); // let requests arrive and responses go out between steps
      }
    } finally {
      this.running = false;
    }
  }

  /** Releases the slots of sequences that ended (cancelled, or failed) since the last step. */
  private sweep(): void {
    for (const s of [...this.slots.values()]) if (s.state === 'done') this.release(s);
  }

  private async prefillNewcomers(): Promise<void> {
    for (const s of [...this.slots.values()]) {
      if (s.prefilled || s.state === 'done') continue;
      const started = performance.now();
      s.prefilled = true;
      try {
        const logits = await this.model.prefill(s.slot, s.generation.promptIds);
        this.observer.prefill?.(s.generation.promptIds.length, (performance.now() - started) / 1000);
        this.deliver(s, logits);
      } catch (error) {
        s.end(error);
        this.release(s);
      }
    }
  }

  private async decodeStep(): Promise<void> {
    const batch = [...this.slots.values()].filter((s) => s.prefilled && s.state === 'running');
    if (batch.length === 0) return;
    const requests: DecodeRequest[] = batch.map((s) => ({ slot: s.slot, token: s.lastToken, position: s.generation.position }));
    const started = performance.now();
    let logits: Float32Array[];
    try {
      logits = await this.model.decodeBatch(requests);
      if (logits.length !== batch.length) throw new Error(`the model returned ${logits.length} logits for a decode step of ${batch.length} sequences`);
    } catch (error) {
      for (const s of batch) {
        s.end(error);
        this.release(s);
      }
      return;
    }
    this.observer.decodeStep?.(batch.length, (performance.now() - started) / 1000);
    batch.forEach((s, i) => this.deliver(s, logits[i]!));
  }

  /** Chooses the sequence's next token and hands it over; a finished sequence gives its slot back now. */
  private deliver(s: Sequence, logits: Float32Array): void {
    if (s.state === 'done') return this.release(s); // cancelled while the model ran
    try {
      const step = s.generation.next(logits);
      s.lastToken = step.token;
      s.push(step);
      if (step.finishReason) s.end();
    } catch (error) {
      s.end(error);
    }
    if ((s.state as Sequence['state']) === 'done') this.release(s); // ended above
  }
}

/** One submitted generation: scheduler state and the queue of tokens its consumer reads. */
class Sequence implements ScheduledSequence {
  state: 'waiting' | 'running' | 'done' = 'waiting';
  slot = -1;
  prefilled = false;
  lastToken = -1;
  onEnd: (() => void) | undefined;
  private readonly tokens: GeneratedToken[] = [];
  private failure: { error: unknown } | undefined;
  private wake: (() => void) | undefined;
  private iterated = false;

  constructor(
    readonly generation: Generation,
    /** KV-cache tokens reserved while it runs */
    readonly reserve: number,
    private readonly onCancel: (s: Sequence) => void,
  ) {}

  push(step: GeneratedToken): void {
    this.tokens.push(step);
    this.wake?.();
  }

  end(error?: unknown): void {
    if (this.state === 'done') return;
    this.state = 'done';
    if (error !== undefined) this.failure = { error };
    this.onEnd?.();
    this.wake?.();
  }

  cancel(reason?: unknown): void {
    if (this.state === 'done') return;
    this.end(reason);
    this.onCancel(this);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<GeneratedToken, void, undefined> {
    if (this.iterated) throw new Error('a scheduled sequence can be iterated once');
    this.iterated = true;
    try {
      for (;;) {
        const step = this.tokens.shift();
        if (step) {
          yield step;
          continue;
        }
        if (this.state === 'done') {
          if (this.failure) throw this.failure.error;
          return;
        }
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
      }
    } finally {
      this.cancel(); // the consumer left early (a stop string, a closed connection): free the slot
    }
  }
}

const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) => (typeof setImmediate === 'function' ? setImmediate(resolve) : setTimeout(resolve, 0)));
