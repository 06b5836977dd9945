// The naga jobs of one compile, shared by the compiling thread and the validation workers.
// Every thread takes the next job from a cursor in shared memory, so a thread busy with a
// large module never holds back the others and no job waits on a message round trip.
import { translateWgsl, type Translated } from './translate';

export interface NagaJob {
  /** the text naga checks (nagaSource) */
  source: string;
  /** the position, in the order modules were asked for, of the first module with this source */
  first: number;
}

/**
 * The queue's state lives in a SharedArrayBuffer (the cursor, and the first refused
 * module's position), so a JobQueue rebuilt in a worker from `shared` is the same queue.
 */
export class JobQueue {
  readonly shared: SharedArrayBuffer;
  private readonly cells: Int32Array;

  constructor(
    readonly jobs: readonly NagaJob[],
    shared?: SharedArrayBuffer,
  ) {
    this.shared = shared ?? new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT);
    this.cells = new Int32Array(this.shared);
    if (!shared) this.cells[REFUSED] = NONE_REFUSED;
  }

  /**
   * Runs jobs until none is left, handing each result to `answer`; a job skipped because an
   * earlier module was refused (it cannot change the error) is answered with undefined.
   * After a refusal that is not naga's report (a panic, which leaves naga's instance
   * unusable) this thread takes no more jobs; the others go on.
   */
  drain(answer: (job: number, result: Translated | undefined) => void): void {
    for (;;) {
      const job = Atomics.add(this.cells, CURSOR, 1);
      if (job >= this.jobs.length) return;
      const { source, first } = this.jobs[job];
      if (first > Atomics.load(this.cells, REFUSED)) {
        answer(job, undefined);
        continue;
      }
      const result = translateWgsl(source);
      if ('refusal' in result) this.refuse(first);
      answer(job, result);
      if ('refusal' in result && result.refusal.thrown !== undefined) return;
    }
  }

  /** Whether a job needs no answer: a module before it was refused. */
  skips(job: number): boolean {
    return this.jobs[job].first > Atomics.load(this.cells, REFUSED);
  }

  /** Lowers the first refused position to `first` (an atomic min). */
  private refuse(first: number): void {
    let seen = Atomics.load(this.cells, REFUSED);
    while (first < seen) {
      const previous = Atomics.compareExchange(this.cells, REFUSED, seen, first);
      if (previous === seen) return;
      seen = previous;
    }
  }
}

const CURSOR = 0;
const REFUSED = 1;
const NONE_REFUSED = 0x7fffffff;
