// Shared by the tests of the graph rewrites that split a product into two steps (split-K,
// stream-K): the ops a plan's dispatches run, and the check that a training plan through a
// rewritten product steps like the plan without the rewrite.
import { expect } from 'vitest';
import type { CompiledPlan } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { loadTrainingPlan } from '../runtime/training';
import { sharedDevice } from './gpu';

/** The ops of each dispatch's kernel in an entry point, flattened. */
export const kernelOps = (plan: CompiledPlan, entry: string) => plan.manifest.entryPoints[entry].dispatches.flatMap((d) => plan.manifest.kernels[d.kernel].ops);

/** loss = mean((x · w)²) for x [m, k] fed and w [k, n] trained. */
export function trainedProduct(m: number, k: number, n: number): Graph {
  const g = new Graph('trained');
  const y = g.matmul(g.input('x', [m, k]), g.parameter('w', [k, n], { init: { uniform: [-0.1, 0.1] } }));
  g.output('loss', g.mean(g.mean(g.mul(y, y), -1), 0));
  return g;
}

/** Steps both training plans of trainedProduct(m, k, n) on the same batches: equal losses, to f32 rounding. */
export async function expectSameSteps(rewritten: CompiledPlan, plain: CompiledPlan, m: number, k: number, steps: number): Promise<void> {
  const device = (await sharedDevice()).device;
  const sessions = await Promise.all([rewritten, plain].map((p) => loadTrainingPlan(p.bundle, device)));
  try {
    const u = uniformStream(3);
    let first = 0;
    for (let t = 0; t < steps; t++) {
      const batch = { x: Float32Array.from({ length: m * k }, () => 2 * u() - 1) };
      const [a, b] = [await sessions[0].step(batch), await sessions[1].step(batch)];
      expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-5 * Math.abs(b));
      if (t === 0) first = b;
    }
    expect(first).toBeGreaterThan(0);
  } finally {
    for (const s of sessions) s.destroy();
  }
}
