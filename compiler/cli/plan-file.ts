// Plan files at the command line: reading one, and tying the runtime's PlanErrors to the
// file they are about so the CLI prints `plan.mnplan: error: message`.
import { isPlanError } from '../../runtime';
import { statSync } from 'node:fs';
import { CompileError } from '../ir/errors';
import { readFileOrFail } from './tensors';

/** A runtime error about a plan file, printed as `plan.mnplan: error: message`. */
export class PlanFileError extends Error {
  constructor(
    readonly file: string,
    readonly error: Error,
  ) {
    super(error.message);
  }
}

/** Runs `work`, turning a PlanError it throws into a PlanFileError naming `file`. */
export async function aboutPlan<T>(file: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (isPlanError(error)) throw new PlanFileError(file, error);
    throw error;
  }
}

/**
 * The most bytes a plan may have here: Node reads no larger file at once, and the runtime,
 * which takes a plan as one array, checks sections with Web Crypto, which digests no more.
 */
export const MAX_PLAN_BYTES = 2 ** 31 - 1;

export function readPlanBytes(file: string): Uint8Array {
  const size = sizeOf(file);
  if (size !== undefined && size > MAX_PLAN_BYTES) {
    throw new CompileError(
      'io',
      `cannot read plan '${file}': it is ${size} bytes (${(size / 2 ** 30).toFixed(2)} GiB), above the ${MAX_PLAN_BYTES} bytes (2 GiB) a plan may have to be read at once; compile the model with --no-weights`,
    );
  }
  const buffer = readFileOrFail(file, 'plan');
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** A file's size, or undefined where it cannot be told (readFileOrFail then says why). */
function sizeOf(file: string): number | undefined {
  try {
    return statSync(file).size;
  } catch {
    return undefined;
  }
}

/** `--memory-budget GiB` as LoadOptions.memoryBudget in bytes (absent: the runtime's default). */
export function memoryBudget(text: string | undefined): { memoryBudget?: number } {
  if (text === undefined) return {};
  const gib = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(gib > 0)) throw new CompileError('input', `--memory-budget expects a positive number of GiB; got '${text}'`);
  return { memoryBudget: Math.round(gib * 2 ** 30) };
}
