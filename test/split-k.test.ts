// Split-K (compiler/lower/split-k.ts): which products lowering computes as partial products
// over slices of K and a sum, at the benchmark's sizes (lowering only) and at small sizes with
// lowered thresholds, where the split plans run on the GPU and must match the CPU reference of
// the graph as written, and a training plan through a split product must step like the unsplit one.
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { elementCount } from '../compiler/ir/types';
import { lowerGraph } from '../compiler/lower';
import { splitKSteps } from '../compiler/lower/split-k';
import type { Target } from '../compiler/target/target';
import { APPLE_M, GENERIC, INTEL_XE, NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import type { SplitKTuning } from '../compiler/target/tuning';
import { expectClose } from './close';
import { releaseSharedDevice, runOnGpu } from './gpu';
import { expectStepsThroughSchedule, kernelOps, product } from './rewrite-steps';

afterAll(releaseSharedDevice);

/** The product's schedule (the graph's last node) as `label op -> shape` lines; undefined: one dispatch. */
function steps(g: Graph, target: Target = NVIDIA_HOPPER): string[] | undefined {
  return splitKSteps(g, g.nodes[g.nodes.length - 1], target)?.steps.map((s) => `${s.subject.name} ${s.subject.op} -> ${s.subject.type.shape.join('x')}`);
}

describe('which products split (lowering only)', () => {
  test('nvidia-hopper, 128x1536 · 1536x576 (72 tiles of 32x32): 6 slices of 256, then their sum under the product name', () => {
    const g = product(128, 1536, 576);
    expect(steps(g)).toEqual(['matmul_2.partials matmulSplitK -> 6x128x576', 'matmul_2 sum -> 128x576']);
    const lowered = lowerGraph(g, NVIDIA_HOPPER);
    expect(lowered.steps.map((s) => [s.label, s.node])).toEqual([
      ['matmul_2.partials', 2],
      ['matmul_2', 2],
    ]);
    expect(lowered.scratch.map((v) => v.type.shape)).toEqual([[6, 128, 576]]);
  });

  test('as many slices as allowed when the target is out of reach: 64x4096 · 4096x1024 (64 tiles) in 16 slices', () => {
    expect(steps(product(64, 4096, 1024))?.[0]).toBe('matmul_2.partials matmulSplitK -> 16x64x1024');
  });

  test('products with enough tiles, a few rows, a short K, or no slice of K that is a multiple of 16 stay whole', () => {
    for (const g of [product(128, 576, 1536), product(4096, 4096, 4096), product(16, 4096, 4096), product(128, 1000, 576), product(128, 1040, 576), product(128, 768, 576)]) {
      expect(steps(g)).toBeUndefined();
    }
  });

  test('by target: generic never splits (it assumes no number of compute units); the smaller GPUs split less', () => {
    const g = product(128, 1536, 576);
    expect(steps(g, GENERIC)).toBeUndefined();
    // 72 tiles are enough for intel-xe's 6 sub-slices and apple-m's 10 cores (at least 2 per unit)
    expect(steps(g, INTEL_XE)).toBeUndefined();
    expect(steps(g, APPLE_M)).toBeUndefined();
    // 4 tiles: intel-xe (below 12) wants 12 slices for 48 tiles; 16 is the fewest that divides K
    expect(steps(product(64, 4096, 64), INTEL_XE)?.[0]).toBe('matmul_2.partials matmulSplitK -> 16x64x64');
  });
});

// small shapes split by lowered thresholds: fewer than 16 tiles of 32x32 split into the
// fewest slices giving 16 tiles, each slice at least 32 long
const SMALL_TUNING: SplitKTuning = { belowTiles: 16, minK: 0, targetTiles: 16, minChunk: 32, maxSplits: 16 };
const SMALL = withTuning(NVIDIA_HOPPER, { splitK: SMALL_TUNING });

describe('split products on the GPU against the CPU reference', () => {
  const u = uniformStream(7);
  const data = (shape: number[]) => Float32Array.from({ length: elementCount(shape) }, () => 2 * u() - 1);
  // [label, graph builder, slices, dispatches of the split plan without the optimizer]
  const cases: [string, (g: Graph) => void, number, number][] = [
    ['[40, 256] · [256, 36]: 4 slices of 64, edge tiles', (g) => g.output('y', g.matmul(g.input('a', [40, 256]), g.input('b', [256, 36]))), 4, 2],
    [
      'gelu([2, 20, 192] · [24, 192]ᵀ + bias) + residual: 6 slices of 32 over 2 batches, the epilogue summing them as it reads them (vec4s)',
      (g) => g.output('y', g.fusedMatmul(g.input('a', [2, 20, 192]), g.input('b', [24, 192]), { transposeB: true, activation: 'gelu', bias: g.input('bias', [24]), residual: g.input('r', [2, 20, 24]) })),
      6,
      2,
    ],
    [
      'relu([40, 256] · [256, 30] + bias): 8 slices of 32, the epilogue summing them as it reads them (scalars: N not a multiple of 4)',
      (g) => g.output('y', g.fusedMatmul(g.input('a', [40, 256]), g.input('b', [256, 30]), { activation: 'relu', bias: g.input('bias', [30]) })),
      8,
      2,
    ],
    ['[96, 24]ᵀ · [96, 40]: 3 slices of 32 down A', (g) => g.output('y', g.fusedMatmul(g.input('a', [96, 24]), g.input('b', [96, 40]), { transposeA: true })), 3, 2],
    ['[36, 200] · [200, 20]: slices would be 100 or 50 long, no split', (g) => g.output('y', g.matmul(g.input('a', [36, 200]), g.input('b', [200, 20]))), 1, 1],
  ];
  for (const [label, build, slices, dispatches] of cases) {
    for (const optimize of [false, true]) {
      test(`${label}, optimize: ${optimize}`, async () => {
        const g = new Graph('mm');
        build(g);
        const schedule = splitKSteps(g, g.nodes[g.nodes.length - 1], SMALL);
        expect(schedule?.scratch[0].shape[0] ?? 1).toBe(slices);
        const plan = await compileGraph(g, { optimize, targets: [SMALL] });
        if (!optimize) expect(plan.manifest.entryPoints.run.dispatches).toHaveLength(dispatches);
        expect(kernelOps(plan, 'run').includes('matmulSplitK')).toBe(slices > 1);

        const feeds = Object.fromEntries(g.nodes.filter((n) => n.op === 'input').map((n) => [n.name, data([...n.type.shape])]));
        // f32 sums of up to 256 products of [-1, 1] values, in another order than float64's
        expectClose((await runOnGpu(plan.bundle, feeds)).y, interpret(g, feeds, new Map()).y, 2e-5 * 16);
      });
    }
  }
});

describe('training through a split product', () => {
  test('the split forward product keeps its gradient: steps equal those of the unsplit plan', async () => {
    await expectStepsThroughSchedule('matmulSplitK', SMALL, NVIDIA_HOPPER, [40, 256, 36], 4);
  });
});
