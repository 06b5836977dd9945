// Runs a compile's naga jobs on worker threads and on this one. Workers are started per
// call and leave when the queue is empty (a pool that outlived the compile would keep
// Node alive); each loads naga-wasm once. Where no worker starts, this thread does it all.
import { Worker } from 'node:worker_threads';
import { workerModule } from '../worker-module';
import { JobQueue, type NagaJob } from './job-queue';
import type { WorkerMessage } from './naga-worker';
import { translateWgsl, type Translated } from './translate';

export interface NagaRun {
  /** by job, whatever order they came in; undefined for jobs skipped after a refusal */
  results: (Translated | undefined)[];
  /** how many jobs worker threads ran (the rest ran here) */
  byWorkers: number;
}

/**
 * Translates every job with `workers` worker threads, and this thread too unless `here` is
 * false (it then only waits, and runs what no worker could).
 */
export async function runNagaJobs(jobs: readonly NagaJob[], workers: number, { here = true } = {}): Promise<NagaRun> {
  const queue = new JobQueue(jobs);
  const results: (Translated | undefined)[] = new Array(jobs.length);
  const answered = new Array<boolean>(jobs.length).fill(false);
  let pending = jobs.length;
  let byWorkers = 0;
  const answer = (job: number, result: Translated | undefined) => {
    if (answered[job]) return;
    answered[job] = true;
    results[job] = result;
    pending--;
  };

  const script = workers > 0 ? await workerScript() : undefined;
  const started = script
    ? startWorkers(script, workers, queue, (job, result) => {
        if (result) byWorkers++;
        answer(job, result);
      })
    : [];
  if (here) queue.drain(answer);
  // wait for the answers still out (every job is taken once this thread is done), or for every worker to be gone
  await new Promise<void>((resolve) => {
    let running = started.length;
    const check = () => (pending === 0 || running === 0) && resolve();
    for (const w of started) {
      w.on('message', check);
      w.once('exit', () => {
        running--;
        check();
      });
    }
    check();
  });
  // workers still loading naga have taken nothing: stop them rather than wait
  for (const w of started) void w.terminate();
  // jobs no worker answered (none started, or one died) run here
  for (const [job, { source }] of jobs.entries()) if (!answered[job] && !queue.skips(job)) answer(job, translateWgsl(source));
  return { results, byWorkers };
}

function startWorkers(script: URL, count: number, queue: JobQueue, answer: (job: number, result: Translated | undefined) => void): Worker[] {
  const workers: Worker[] = [];
  for (let i = 0; i < count; i++) {
    try {
      // no execArgv: a worker needs none of this process's loaders (tsx, vitest's), and loads faster without
      const worker = new Worker(script, { workerData: { jobs: queue.jobs, shared: queue.shared }, execArgv: [] });
      worker.on('message', ({ job, result }: WorkerMessage) => answer(job, result));
      // a worker that cannot start or crashes answers nothing more; its jobs fall to this thread
      worker.on('error', () => {});
      workers.push(worker);
    } catch {
      break;
    }
  }
  return workers;
}

/** The worker's module (naga-worker.mjs or .ts beside this module); undefined: validation stays in this thread. */
function workerScript(): Promise<URL | undefined> {
  return workerModule(import.meta.url, 'naga-worker', ['naga-wasm']);
}
