// A validation worker, started by naga-pool.ts: loads naga-wasm once, runs the compile's
// jobs from the shared queue until none is left, posting each answer back (the SPIR-V's
// buffer moved, not copied). Built to dist/naga-worker.mjs beside the CLI bundle.
import { parentPort, workerData } from 'node:worker_threads';
import { JobQueue, type NagaJob } from './job-queue';
import type { Translated } from './translate';

/** What a worker posts, once per job it took: the answer (undefined: skipped, see JobQueue.drain). */
export interface WorkerMessage {
  job: number;
  result: Translated | undefined;
}

const { jobs, shared } = workerData as { jobs: NagaJob[]; shared: SharedArrayBuffer };
const port = parentPort!;
new JobQueue(jobs, shared).drain((job, result) => {
  const message: WorkerMessage = { job, result };
  port.postMessage(message, result && 'translations' in result ? [result.translations.spirv.buffer as ArrayBuffer] : []);
});
