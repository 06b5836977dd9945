// Validation of a whole compile: every kernel and naga-checked variant, from any number of
// lowerings, each distinct source given to naga once, naga's work spread over worker
// threads when there is enough of it. The result does not depend on which thread finished
// first, and the error is the one validating the kernels in order would have raised.
import { availableParallelism } from 'node:os';
import type { LoweredKernel } from '../lower/kernel';
import type { NagaJob } from './job-queue';
import { refusalError, variantName, type KernelOrigin, type ValidatedKernel } from './naga';
import { runNagaJobs } from './naga-pool';
import { nagaSource, type Translated, type Translations } from './translate';

/** A kernel to validate and the node it was generated for (errors name it). */
export interface KernelToValidate {
  kernel: LoweredKernel;
  origin: KernelOrigin;
}

export interface ValidateOptions {
  /** threads running naga, this one included; 1 validates here. Default: from the work and the machine's cores. */
  threads?: number;
}

export interface KernelValidation {
  validated: Map<LoweredKernel, ValidatedKernel>;
  /** modules asked for: each distinct kernel and its naga-checked variants */
  modules: number;
  /** distinct sources among them; naga ran once for each (fewer after a refusal) */
  distinct: number;
  /** threads started to run naga, this one included */
  threads: number;
  /** distinct sources worker threads translated (the rest ran in this thread) */
  byWorkers: number;
}

/**
 * Validates and translates the kernels (the same kernel may come several times: the first
 * origin is kept). Throws the CompileError of the first module, in the order given (a
 * kernel, then its variants), that naga refuses.
 */
export async function validateKernels(kernels: Iterable<KernelToValidate>, options: ValidateOptions = {}): Promise<KernelValidation> {
  // one module per kernel and naga-checked variant, in order; one job per distinct text naga reads
  const modules: { name: string; origin: KernelOrigin; job: number }[] = [];
  const jobs: NagaJob[] = [];
  const jobOf = new Map<string, number>();
  const addModule = (name: string, origin: KernelOrigin, wgsl: string): number => {
    const source = nagaSource(wgsl);
    let job = jobOf.get(source);
    if (job === undefined) {
      job = jobs.push({ source, first: modules.length }) - 1;
      jobOf.set(source, job);
    }
    modules.push({ name, origin, job });
    return job;
  };
  // per kernel: its module's job, then each variant's (undefined: Dawn checks it)
  const kernelJobs = new Map<LoweredKernel, { portable: number; variants: (number | undefined)[] }>();
  for (const { kernel, origin } of kernels) {
    if (kernelJobs.has(kernel)) continue;
    const portable = addModule(kernel.name, origin, kernel.wgsl);
    const variants = (kernel.variants ?? []).map((v) => (v.validatedBy === 'dawn' ? undefined : addModule(variantName(kernel, v.tag), origin, v.wgsl)));
    kernelJobs.set(kernel, { portable, variants });
  }

  const threads = Math.max(1, Math.floor(options.threads ?? threadsFor(jobs)));
  // the longest modules first, so no thread is left alone with a long one at the end
  const order = jobs.map((_, j) => j).sort((a, b) => jobs[b].source.length - jobs[a].source.length || a - b);
  const run = await runNagaJobs(order.map((j) => jobs[j]), threads - 1);
  const results = new Array<Translated | undefined>(jobs.length);
  for (const [k, j] of order.entries()) results[j] = run.results[k];

  // the first module refused, in the order given, is the error (the one validating them one by one meets)
  for (const { name, origin, job } of modules) {
    const result = results[job];
    if (result && 'refusal' in result) throw refusalError(result.refusal, name, origin);
  }
  const translations = (job: number): Translations => {
    const result = results[job];
    if (!result || !('translations' in result)) throw new Error(`naga job ${job} has no answer`);
    return result.translations;
  };
  const validated = new Map<LoweredKernel, ValidatedKernel>();
  for (const [kernel, { portable, variants }] of kernelJobs) {
    validated.set(kernel, { kernel, translations: translations(portable), variants: variants.map((j) => (j === undefined ? undefined : translations(j))) });
  }
  return { validated, modules: modules.length, distinct: jobs.length, threads, byWorkers: run.byWorkers };
}

/**
 * Threads worth starting for these jobs: a worker takes 75-140 ms to start and load naga,
 * and its first modules run while V8 compiles naga's code (80-300 ms more; measured on the
 * 2-core build machine), so each thread should get a few hundred ms of work.
 */
function threadsFor(jobs: readonly NagaJob[]): number {
  const work = jobs.reduce((ms, { source }) => ms + estimatedMs(source.length), 0);
  return Math.max(1, Math.min(Math.floor(work / MIN_WORK_PER_THREAD_MS), availableParallelism(), MAX_THREADS));
}

const MIN_WORK_PER_THREAD_MS = 300;
const MAX_THREADS = 8;

/**
 * naga's time for a module of this many characters (parse, validate, three translations).
 * naga-wasm 30's WGSL parser takes time growing with the square of a function's length
 * (measured: 8000 statements in one function 12 s, in 32 functions 0.8 s); the generated
 * kernels are one function each, so 17 kB take 80 ms, 60 kB 450 ms, 124 kB 1.5 s.
 */
function estimatedMs(chars: number): number {
  return chars * 3e-3 + chars * chars * 1e-7;
}
