// Shared by the tests of the schedules that compute a product in several dispatches (split-K,
// stream-K): a plain product graph, the ops a plan's dispatches run, and the check that a
// training plan through a scheduled product steps like the plan without the schedule.
import { expect } from 'vitest';
import { compileGraph, type CompiledPlan } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import type { Target } from '../compiler/target/target';
import { loadTrainingPlan } from '../runtime/training';
import { sharedDevice } from './gpu';

/** y = a · b for a [m, k] and b [k, n], both inputs. */
export function product(m: number, k: number, n: number): Graph {
  const g = new Graph('mm');
  g.output('y', g.matmul(g.input('a', [m, k]), g.input('b', [k, n])));
  return g;
}

/** The ops of each dispatch's kernel in an entry point, flattened. */
export const kernelOps = (plan: CompiledPlan, entry: string) => plan.manifest.entryPoints[entry].dispatches.flatMap((d) => plan.manifest.kernels[d.kernel].ops);

/** loss = mean((x · w)²) for x [m, k] fed and w [k, n] trained. */
function trainedProduct(m: number, k: number, n: number): Graph {
  const g = new Graph('trained');
  const y = g.matmul(g.input('x', [m, k]), g.parameter('w', [k, n], { init: { uniform: [-0.1, 0.1] } }));
  g.output('loss', g.mean(g.mean(g.mul(y, y), -1), 0));
  return g;
}

/** Steps both training plans of trainedProduct(m, k, n) on the same batches: equal losses, to f32 rounding. */
async function expectSameSteps(rewritten: CompiledPlan, plain: CompiledPlan, m: number, k: number, steps: number): Promise<void> {
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

/**
 * The training plans of trainedProduct(m, k, n) compiled for `scheduled` (a target whose
 * tuning schedules the product) and for `plain` (one that does not): the first's step runs
 * `op` once, the second's never, and both step alike for `steps` batches.
 */
export async function expectStepsThroughSchedule(op: string, scheduled: Target, plain: Target, [m, k, n]: [number, number, number], steps: number): Promise<void> {
  const compile = (target: Target) => compileGraph(trainedProduct(m, k, n), { seed: 1, training: { loss: 'loss', optimizer: { kind: 'sgd', lr: 1e-2 } }, targets: [target] });
  const rewritten = await compile(scheduled);
  const unscheduled = await compile(plain);
  expect(kernelOps(rewritten, 'train_step').filter((o) => o === op)).toHaveLength(1);
  expect(kernelOps(unscheduled, 'train_step').filter((o) => o === op)).toHaveLength(0);
  await expectSameSteps(rewritten, unscheduled, m, k, steps);
}
