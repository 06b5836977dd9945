// Split reductions (compiler/lower/split-reductions.ts): which reductions lowering computes
// in two steps and into how many chunks, at the benchmark's sizes (lowering only) and at
// small sizes with lowered thresholds, where both plans (with and without the optimizer) run
// on the GPU and must match the CPU reference of the graph as written.
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph, type Tensor } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { elementCount, type Shape } from '../compiler/ir/types';
import { lowerGraph } from '../compiler/lower';
import { splitReductionSteps } from '../compiler/lower/split-reductions';
import { NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import type { AxisTuning } from '../compiler/target/tuning';
import { loadPlan } from '../runtime/session';
import { loadTrainingPlan } from '../runtime/training';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

type Reduce = 'sum' | 'mean' | 'max';

function reduction(op: Reduce, shape: Shape, axis: number, keepDims = false): Graph {
  const g = new Graph('split');
  g.output('y', g[op](g.input('x', shape), axis, { keepDims }));
  return g;
}

/** nvidia-hopper with some axis knobs changed */
const tuned = (axis: Partial<AxisTuning>) => withTuning(NVIDIA_HOPPER, { axis: { ...NVIDIA_HOPPER.tuning.axis, ...axis } });

/** The reduction's schedule (the graph's last node) as its steps' `label op operand -> result` lines; undefined: one dispatch. */
function steps(g: Graph, target = NVIDIA_HOPPER): string[] | undefined {
  const node = g.nodes[g.nodes.length - 1];
  const schedule = splitReductionSteps(g, node, target);
  return schedule?.steps.map((s) => `${s.subject.name} ${s.subject.op} ${s.operandTypes[0].shape.join('x')} -> ${s.subject.type.shape.join('x')}`);
}

describe('which reductions split (nvidia-hopper, lowering only)', () => {
  test('sum of 16 rows of 4194304: 256 chunks of 16384, then the 16 rows of 256 partial sums in one workgroup', () => {
    const g = reduction('sum', [16, 4194304], -1);
    expect(steps(g)).toEqual(['sum_1.partial sum 16x256x16384 -> 16x256', 'sum_1 sum 16x256 -> 16']);
    const lowered = lowerGraph(g, NVIDIA_HOPPER);
    expect(lowered.steps.map((s) => s.workgroups)).toEqual([
      [4096, 1, 1],
      [1, 1, 1],
    ]);
    // the partial sums are a scratch value, the graph keeps one node
    expect(lowered.scratch.map((v) => [v.name, v.type.shape])).toEqual([['sum_1.partial', [16, 256]]]);
    expect(g.nodes).toHaveLength(2);
  });

  test('sum over axis 0 of 4096x8192: 16 chunks of 256 rows, then the 16 partial rows', () => {
    const g = reduction('sum', [4096, 8192], 0);
    expect(steps(g)).toEqual(['sum_1.partial sum 16x256x8192 -> 16x8192', 'sum_1 sum 16x8192 -> 8192']);
    expect(lowerGraph(g, NVIDIA_HOPPER).steps[0].workgroups).toEqual([4096, 1, 1]);
  });

  test('rows that fill the GPU, short data, a prime length and the row ops stay one kernel', () => {
    for (const g of [
      reduction('sum', [8192, 4096], -1),
      reduction('sum', [65536, 576], -1),
      reduction('max', [1024, 32768], -1),
      reduction('sum', [4, 1000], -1),
      reduction('mean', [4, 1000003], -1),
    ]) {
      expect(steps(g)).toBeUndefined();
    }
    const g = new Graph('rows');
    g.output('y', g.softmax(g.input('x', [4, 1 << 20])));
    expect(steps(g)).toBeUndefined();
  });

  test('kept dims: the final step keeps them', () => {
    expect(steps(reduction('mean', [16, 4194304], 1, true))).toEqual(['mean_1.partial mean 16x256x16384 -> 16x256', 'mean_1 mean 16x256 -> 16x1']);
  });
});

// small shapes split by lowered thresholds: at least 1024 elements and fewer than 16
// workgroups split, into the fewest chunks that give 16 (of at least 16 elements)
const SMALL = { splitMinElements: 1024, splitBelowWorkgroups: 16, splitTargetWorkgroups: 16, splitMinChunk: 16 };

describe('split reductions on the GPU against the CPU reference', () => {
  // [label, op, shape, axis, keepDims, the first step's reshape (undefined: no split)]
  const cases: [string, Reduce, Shape, number, boolean, Shape | undefined][] = [
    ['sum of 2 rows of 65536', 'sum', [2, 65536], -1, false, [2, 8, 8192]],
    ['mean of 3 rows of 45000 (chunks of 7500)', 'mean', [3, 45000], 1, false, [3, 6, 7500]],
    ['max of 4 rows of 40000, kept dims', 'max', [4, 40000], -1, true, [4, 4, 10000]],
    ['max of 2 rows of 15015 (scalar loads, 11 chunks of 1365)', 'max', [2, 15015], -1, false, [2, 11, 1365]],
    ['mean of 2 rows of 15015, kept dims', 'mean', [2, 15015], 1, true, [2, 11, 1365]],
    ['sum over the middle axis of 3x20000x5', 'sum', [3, 20000, 5], 1, false, [3, 2, 10000, 5]],
    ['sum over axis 0 of 8192x64 (interleaved, 4 rows per vec4)', 'sum', [8192, 64], 0, false, [8, 1024, 64]],
    ['mean over axis 0 of 4096x40, kept dims', 'mean', [4096, 40], 0, true, [16, 256, 40]],
    ['sum of 2 rows of the prime 65537: no split', 'sum', [2, 65537], -1, false, undefined],
  ];
  for (const [label, op, shape, axis, keepDims, chunked] of cases) {
    for (const optimize of [false, true]) {
      test(`${label}, optimize: ${optimize}`, async () => {
        const target = tuned(SMALL);
        const g = reduction(op, shape, axis, keepDims);
        const schedule = splitReductionSteps(g, g.nodes[1], target);
        expect(schedule?.steps[0].operandTypes[0].shape).toEqual(chunked);
        const plan = await compileGraph(g, { optimize, targets: [target] });
        const dispatches = plan.manifest.entryPoints.run.dispatches;
        expect(dispatches).toHaveLength(chunked ? 2 : 1);
        expect(plan.manifest.entryPoints.run.outputs.map((o) => [o.name, o.shape])).toEqual([['y', g.nodes[g.outputs[0].node].type.shape]]);

        const u = uniformStream(11);
        const x = Float32Array.from({ length: elementCount(shape) }, () => 4 * u() - 2);
        const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
        try {
          const actual = (await session.run({ x })).y;
          const expected = interpret(g, { x }, new Map()).y;
          const n = shape[axis < 0 ? shape.length + axis : axis];
          // f32 sums of n terms in another order than float64's: a few ulps of √n·|x|
          const atol = op === 'sum' ? 4e-5 * Math.sqrt(n) : op === 'mean' ? 4e-5 / Math.sqrt(n) : 0;
          expect(actual.length).toBe(expected.length);
          for (let i = 0; i < expected.length; i++) {
            if (!(Math.abs(actual[i] - expected[i]) <= atol + 1e-6 * Math.abs(expected[i]))) {
              expect.fail(`element ${i}: gpu ${actual[i]} vs cpu ${expected[i]} (atol ${atol})`);
            }
          }
        } finally {
          session.destroy();
        }
      });
    }
  }
});

// compileGraph splits by itself: lowering schedules the reduction for the target; the graph,
// and so the training graph, keep one node.
describe('compileGraph splits by itself', () => {
  test('the final step keeps the name of the reduction, every other node its own, with and without the optimizer', async () => {
    for (const optimize of [false, true]) {
      const g = new Graph('names');
      g.output('y', g.relu(g.sum(g.exp(g.input('x', [16, 4194304])), -1)));
      const plan = await compileGraph(g, { optimize, weights: 'none', targets: [NVIDIA_HOPPER] });
      expect(plan.manifest.entryPoints.run.dispatches.map((d) => d.node)).toEqual(['exp_1', 'sum_2.partial', 'sum_2', 'relu_3']);
    }
  });

  test('inference, with and without the optimizer: the split plan, the output under its name', async () => {
    for (const optimize of [false, true]) {
      const plan = await compileGraph(reduction('mean', [3, 45000], -1, true), { optimize, targets: [tuned(SMALL)] });
      expect(plan.manifest.entryPoints.run.dispatches).toHaveLength(2);
      expect(plan.manifest.entryPoints.run.outputs.map((o) => [o.name, o.shape])).toEqual([['y', [3, 1]]]);
    }
  });

  test('training steps through a split reduction equal those of the unsplit plan', async () => {
    // compiling for training extends the graph given, so each plan gets its own
    const compile = (tuning: Partial<AxisTuning>) => {
      const g = new Graph('trained');
      const x = g.input('x', [2, 65536]);
      const w = g.parameter('w', [65536], { init: { uniform: [-0.01, 0.01] } });
      const rows = g.sum(g.mul(x, w), -1);
      g.output('loss', g.mean(g.mul(rows, rows), 0));
      return compileGraph(g, { seed: 1, training: { loss: 'loss', optimizer: { kind: 'sgd', lr: 1e-3 } }, targets: [tuned({ ...SMALL, ...tuning })] });
    };
    const split = await compile({});
    const whole = await compile({ splitBelowWorkgroups: 0 });
    const dispatches = (p: typeof split) => p.manifest.entryPoints.train_step.dispatches.length;
    // split in two: the rows' sums, and the step check's sum of w's 65536-element gradient
    expect(dispatches(split)).toBe(dispatches(whole) + 2);
    const device = (await sharedDevice()).device;
    const sessions = await Promise.all([split, whole].map((p) => loadTrainingPlan(p.bundle, device)));
    try {
      const u = uniformStream(3);
      for (let t = 0; t < 3; t++) {
        const batch = { x: Float32Array.from({ length: 2 * 65536 }, () => 2 * u() - 1) };
        const [a, b] = [await sessions[0].step(batch), await sessions[1].step(batch)];
        expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-4 * Math.abs(b));
      }
    } finally {
      for (const s of sessions) s.destroy();
    }
  });
});
