// Stream-K (compiler/lower/stream-k.ts): which products lowering computes as partial tiles
// and a product at the H200's sizes (lowering only), and at small sizes with a pretend 5-SM
// GPU, plans that run on the GPU and match the CPU reference of the graph as written, and a
// training plan through such a product that steps like the one-dispatch plan.
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { elementCount } from '../compiler/ir/types';
import { streamKSchedule, streamKSteps } from '../compiler/lower/stream-k';
import type { Target } from '../compiler/target/target';
import { GENERIC, NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import type { StreamKTuning } from '../compiler/target/tuning';
import { expectClose } from './close';
import { releaseSharedDevice, runOnGpu } from './gpu';
import { expectStepsThroughSchedule, kernelOps, product } from './rewrite-steps';

afterAll(releaseSharedDevice);

/** The product's schedule (the graph's last node) as `label op -> shape` lines; undefined: one dispatch. */
function steps(g: Graph, target: Target = NVIDIA_HOPPER): string[] | undefined {
  return streamKSteps(g, g.nodes[g.nodes.length - 1], target)?.steps.map((s) => `${s.subject.name} ${s.subject.op} -> ${s.subject.type.shape.join('x')}`);
}
const scheduleOf = (g: Graph) => streamKSchedule(g, g.nodes[g.nodes.length - 1], NVIDIA_HOPPER.tuning.streamK!);

describe('which products share their last wave (nvidia-hopper, lowering only)', () => {
  test('3072³: 288 tiles of 128x256, the last 24 shared by 132 runs of 560; the product keeps its name', () => {
    const g = product(3072, 3072, 3072);
    expect(steps(g)).toEqual(['matmul_2.partials matmulStreamKPartials -> 155x128x256', 'matmul_2 matmulStreamK -> 3072x3072']);
    expect(scheduleOf(g)).toEqual({ tileM: 128, tileN: 256, tiles: 288, dataParallel: 264, units: 132, unitK: 560 });
    expect(steps(g, GENERIC)).toBeUndefined();
  });

  test('8192³ (last wave 68 of 132) with a fused epilogue: the epilogue stays on the product, which reads the partial tiles last', () => {
    const g = new Graph('mm');
    g.output('y', g.fusedMatmul(g.input('a', [8192, 8192]), g.input('b', [8192, 8192]), { activation: 'gelu', bias: g.input('bias', [8192]) }));
    const schedule = streamKSteps(g, g.nodes[3], NVIDIA_HOPPER)!;
    expect(schedule.steps.map((s) => `${s.subject.op} ${s.subject.type.shape.join('x')}`)).toEqual(['matmulStreamKPartials 199x128x256', 'matmulStreamK 8192x8192']);
    expect(schedule.steps[1].operands).toEqual([{ node: 0 }, { node: 1 }, { node: 2 }, { scratch: 0 }]);
  });

  test('4096³: the last wave 116 of 132 tiles, 16 SMs idle for 4096 K iterations: shared', () => {
    const g = product(4096, 4096, 4096);
    expect(steps(g)).toEqual(['matmul_2.partials matmulStreamKPartials -> 247x128x256', 'matmul_2 matmulStreamK -> 4096x4096']);
    expect(scheduleOf(g)).toMatchObject({ tiles: 512, dataParallel: 396, units: 132, unitK: 3600 });
  });

  test('a last wave over 0.9 full (128 of 132), or over 0.75 with a transposed read, idle for too few K iterations (4096x1024x4096: 16 SMs for 1024), under one wave, few rows, or K not a multiple of 16: one dispatch', () => {
    const linear = (m: number, k: number, n: number) => {
      const g = new Graph('linear');
      g.output('y', g.fusedMatmul(g.input('x', [m, k]), g.input('w', [n, k]), { transposeB: true }));
      return g;
    };
    const graphs = [product(2560, 4096, 3328), linear(4096, 4096, 4096), product(4096, 1024, 4096), product(2048, 2048, 2048), product(16, 4096, 65536), product(3072, 3000, 3072)];
    for (const g of graphs) expect(steps(g)).toBeUndefined();
    expect(steps(linear(3072, 3072, 3072))).toEqual(['fusedMatmul_2.partials matmulStreamKPartials -> 155x128x256', 'fusedMatmul_2 matmulStreamK -> 3072x3072']);
  });
});

// 9 to 12 tiles of 128x256 on a pretend 5-SM GPU, runs of at least 16
const SMALL_TUNING: StreamKTuning = { units: 5, maxLastWave: 0.95, maxLastWaveTransposed: 0.95, minIdleK: 0, minUnitK: 16 };
const SMALL = withTuning(NVIDIA_HOPPER, { streamK: SMALL_TUNING });

describe('stream-K plans on the GPU against the CPU reference', () => {
  const u = uniformStream(11);
  const data = (shape: number[]) => Float32Array.from({ length: elementCount(shape) }, () => 2 * u() - 1);
  const cases: [string, (g: Graph) => void][] = [
    ['[300, 96] · [96, 600]: 9 tiles, 4 shared by 5 runs of 80 (edge tiles, runs across tiles)', (g) => g.output('y', g.matmul(g.input('a', [300, 96]), g.input('b', [96, 600])))],
    [
      'gelu([2, 140, 64]ᵀ · [520, 64]ᵀ + bias) + residual: 12 tiles over 2 batches, 2 shared by 4 runs of 32',
      (g) =>
        g.output(
          'y',
          g.fusedMatmul(g.input('a', [2, 64, 140]), g.input('b', [520, 64]), { transposeA: true, transposeB: true, activation: 'gelu', bias: g.input('bias', [520]), residual: g.input('r', [2, 140, 520]) }),
        ),
    ],
  ];
  for (const [label, build] of cases) {
    for (const optimize of [false, true]) {
      test(`${label}, optimize: ${optimize}`, async () => {
        const g = new Graph('mm');
        build(g);
        expect(steps(g, SMALL)).toHaveLength(2);
        const plan = await compileGraph(g, { optimize, targets: [SMALL] });
        expect(kernelOps(plan, 'run').filter((op) => op === 'matmulStreamKPartials')).toHaveLength(1);
        if (!optimize) expect(plan.manifest.entryPoints.run.dispatches).toHaveLength(2);
        const feeds = Object.fromEntries(g.nodes.filter((n) => n.op === 'input').map((n) => [n.name, data([...n.type.shape])]));
        // f32 sums of up to 96 products of [-1, 1] values, in another order than float64's
        expectClose((await runOnGpu(plan.bundle, feeds)).y, interpret(g, feeds, new Map()).y, 2e-5 * 8);
      });
    }
  }
});

describe('training through a stream-K product', () => {
  test('the forward product keeps its gradient: steps equal those of the one-dispatch plan', async () => {
    await expectStepsThroughSchedule('matmulStreamKPartials', SMALL, NVIDIA_HOPPER, [300, 64, 600], 3);
  });
});
