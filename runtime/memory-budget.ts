// The GPU memory a plan's target asks for, checked against the budget the loader states
// (LoadOptions.memoryBudget) before anything is allocated: a plan's limits bound each buffer,
// not their number, so a small file could otherwise declare gigabytes in many buffers.
import type { Manifest } from '../schemas/manifest';
import { PlanError } from './errors';

/** LoadOptions.memoryBudget when none is given: 4 GiB, above every plan the examples build. */
export const DEFAULT_MEMORY_BUDGET = 4 * 2 ** 30;

const paddedSize = (byteLength: number) => Math.max(4, Math.ceil(byteLength / 4) * 4);

/** Bytes of the GPUBuffers a session creates for this (single-target) manifest: its own buffers and arenas. */
export function planMemoryBytes(manifest: Manifest): number {
  const own = manifest.buffers.filter((b) => !b.arena).reduce((n, b) => n + paddedSize(b.byteLength), 0);
  const arenas = (manifest.arenas?.byteLengths ?? []).reduce((n, l) => n + paddedSize(l), 0);
  return own + arenas;
}

/** Throws PlanError('out-of-memory') naming the total and the budget when the plan needs more than `budget` bytes. */
export function checkMemoryBudget(manifest: Manifest, budget: number = DEFAULT_MEMORY_BUDGET): void {
  if (!(budget >= 0)) throw new PlanError('bad-input', `memoryBudget must be a non-negative number of bytes, got ${String(budget)}`);
  const total = planMemoryBytes(manifest);
  if (total > budget) {
    throw new PlanError(
      'out-of-memory',
      `plan "${manifest.model.name}" (target "${manifest.target.name}") needs ${total} bytes of GPU buffers, more than the loader's budget of ${budget} bytes; ` +
        `raise LoadOptions.memoryBudget (mnc run/train: --memory-budget) to load it`,
    );
  }
}
