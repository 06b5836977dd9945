// Plan files at the command line: reading one, and tying the runtime's PlanErrors to the
// file they are about so the CLI prints `plan.mnplan: error: message`.
import { isPlanError } from '../../runtime';
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

export function readPlanBytes(file: string): Uint8Array {
  const buffer = readFileOrFail(file, 'plan');
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** `--memory-budget GiB` as LoadOptions.memoryBudget in bytes (absent: the runtime's default). */
export function memoryBudget(text: string | undefined): { memoryBudget?: number } {
  if (text === undefined) return {};
  const gib = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(gib > 0)) throw new CompileError('input', `--memory-budget expects a positive number of GiB; got '${text}'`);
  return { memoryBudget: Math.round(gib * 2 ** 30) };
}
