// The bandwidth-minded kernel forms against the CPU reference on the GPU: the pointwise
// vec4 path (taken and not taken), and the axis layouts (several rows per workgroup, vec4
// rows, rows held in registers or streamed, interleaved rows along earlier axes, long rows
// held by the 1024-invocation variant). Each case also asserts which form its kernel took,
// from the header comment, so a change in the choice cannot silently leave a form untested.
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph, type Tensor } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { elementCount, type Shape } from '../compiler/ir/types';
import { lowerGraph } from '../compiler/lower';
import { axisLayout } from '../compiler/lower/axis';
import { NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import type { AxisTuning } from '../compiler/target/tuning';
import { collapseAxes } from '../compiler/lower/pointwise';
import type { Manifest } from '../schemas/manifest';
import { readBundle } from '../runtime/bundle';
import { loadPlan } from '../runtime/session';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

const sumOf = (name: string) => ({ name, combine: 'add' as const, term: (x: string) => x });
// the target the plans compile for: nvidia-hopper (whose axis tuning these cases were
// written for), or it with some knobs changed (setAxisTuning)
let target = NVIDIA_HOPPER;
const setAxisTuning = (axis: Partial<AxisTuning> = {}) => (target = withTuning(NVIDIA_HOPPER, { axis: { ...NVIDIA_HOPPER.tuning.axis, ...axis } }));
afterEach(() => setAxisTuning());
const AXIS = NVIDIA_HOPPER.tuning.axis;

interface Input {
  shape: Shape;
  range?: [number, number];
  dtype?: 'i32';
}

/**
 * Compiles `build` over seeded inputs, runs it on the GPU and compares output `y` with the
 * CPU reference (|gpu − cpu| ≤ atol + rtol·|cpu|); returns the plan's portable kernel sources.
 */
async function check(inputs: Record<string, Input>, build: (g: Graph, x: Record<string, Tensor>) => Tensor, atol = 1e-5, rtol = 1e-5): Promise<string[]> {
  const { manifest, text } = await checkPlan(inputs, build, atol, rtol);
  return manifest.kernels.map((k) => text(k.variants.at(-1)!.wgsl));
}

/** As check; returns the plan's manifest and its sections' text (every variant of every kernel). */
async function checkPlan(inputs: Record<string, Input>, build: (g: Graph, x: Record<string, Tensor>) => Tensor, atol = 1e-5, rtol = 1e-5): Promise<{ manifest: Manifest; text: (name: string) => string }> {
  const g = new Graph('bandwidth');
  const x: Record<string, Tensor> = {};
  const feeds: Record<string, Float32Array | Int32Array> = {};
  for (const [k, [name, spec]] of Object.entries(inputs).entries()) {
    x[name] = g.input(name, spec.shape, spec.dtype ?? 'f32');
    const u = uniformStream(7 + 31 * k);
    const [lo, hi] = spec.range ?? [-2, 2];
    const values = Array.from({ length: elementCount(spec.shape) }, () => lo + (hi - lo) * u());
    feeds[name] = spec.dtype === 'i32' ? Int32Array.from(values, Math.floor) : Float32Array.from(values);
  }
  g.output('y', build(g, x));
  const plan = await compileGraph(g, { targets: [target] });
  const { manifest, text } = await readBundle(plan.bundle);
  // every variant, the one the runtime picks first at the head of each kernel's list
  const sources = manifest.kernels.flatMap((k) => k.variants.map((v) => text(v.wgsl)));
  const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
  try {
    const actual = (await session.run(feeds)).y;
    const expected = interpret(g, feeds, new Map()).y;
    expect(actual.length).toBe(expected.length);
    for (let i = 0; i < expected.length; i++) {
      const excess = Math.abs(actual[i] - expected[i]) - (atol + rtol * Math.abs(expected[i]));
      if (!(excess <= 0)) expect.fail(`element ${i} of ${expected.length}: gpu ${actual[i]} vs cpu ${expected[i]} (atol ${atol}, rtol ${rtol})\n${sources.join('\n')}`);
    }
  } finally {
    session.destroy();
  }
  return { manifest, text };
}

const VEC4 = 'vec4 per invocation';
const SCALAR = '4 elements per invocation';

describe('pointwise: axes collapse before indexing', () => {
  test('contiguous operands collapse to one axis; a broadcast keeps its axis', () => {
    expect(collapseAxes([4, 5, 6], [{ strides: [30, 6, 1], offset: 0 }])).toEqual({ shape: [120], views: [{ strides: [1], offset: 0 }] });
    expect(collapseAxes([4, 1, 6], [{ strides: [6, 0, 1], offset: 0 }, { strides: [0, 0, 1], offset: 0 }])).toEqual({
      shape: [4, 6],
      views: [
        { strides: [6, 1], offset: 0 },
        { strides: [0, 1], offset: 0 },
      ],
    });
    // a transpose merges nothing
    expect(collapseAxes([3, 2], [{ strides: [1, 3], offset: 0 }]).shape).toEqual([3, 2]);
  });
});

describe('pointwise: vec4 path taken', () => {
  const cases: { label: string; inputs: Record<string, Input>; build: (g: Graph, x: Record<string, Tensor>) => Tensor }[] = [
    { label: 'add [64, 48] + [64, 48]', inputs: { a: { shape: [64, 48] }, b: { shape: [64, 48] } }, build: (g, x) => g.add(x.a, x.b) },
    { label: 'add [5000] (one workgroup and a partial one)', inputs: { a: { shape: [5000] }, b: { shape: [5000] } }, build: (g, x) => g.add(x.a, x.b) },
    { label: 'bias [16, 12] + [12]', inputs: { a: { shape: [16, 12] }, b: { shape: [12] } }, build: (g, x) => g.add(x.a, x.b) },
    { label: 'per-row [8, 16] - [8, 1] (splat)', inputs: { a: { shape: [8, 16] }, b: { shape: [8, 1] } }, build: (g, x) => g.sub(x.a, x.b) },
    { label: 'scalar tensor [4, 8] * [] (splat)', inputs: { a: { shape: [4, 8] }, b: { shape: [] } }, build: (g, x) => g.mul(x.a, x.b) },
    { label: 'middle broadcast [3, 5, 8] * [5, 1]', inputs: { a: { shape: [3, 5, 8] }, b: { shape: [5, 1] } }, build: (g, x) => g.mul(x.a, x.b) },
    { label: 'outer broadcast [3, 5, 8] + [5, 8]', inputs: { a: { shape: [3, 5, 8] }, b: { shape: [5, 8] } }, build: (g, x) => g.add(x.a, x.b) },
    { label: 'slice [6, 8] rows [2, 5)', inputs: { a: { shape: [6, 8] } }, build: (g, x) => g.slice(x.a, 0, 2, 5) },
    { label: 'slice [5, 12] columns [4, 8)', inputs: { a: { shape: [5, 12] } }, build: (g, x) => g.slice(x.a, 1, 4, 8) },
    { label: 'oneHot [9] labels to 4 classes (i32 splat)', inputs: { a: { shape: [9], dtype: 'i32', range: [0, 3] } }, build: (g, x) => g.oneHot(x.a, 4) }, // runtimes refuse labels outside the classes
    {
      label: 'fused chain relu(a·b + c)·0.5 on [2, 1024]',
      inputs: { a: { shape: [2, 1024] }, b: { shape: [2, 1024] }, c: { shape: [1024] } },
      build: (g, x) => g.mul(g.relu(g.add(g.mul(x.a, x.b), x.c)), 0.5),
    },
    { label: 'gelu [4, 256]', inputs: { a: { shape: [4, 256] } }, build: (g, x) => g.gelu(x.a) },
  ];
  for (const c of cases) {
    test(c.label, async () => {
      const sources = await check(c.inputs, c.build, 1e-5, 1e-5);
      expect(sources.some((s) => s.includes(VEC4)), sources.join('\n')).toBe(true);
    });
  }
});

describe('pointwise: vec4 path not taken', () => {
  const cases: { label: string; inputs: Record<string, Input>; build: (g: Graph, x: Record<string, Tensor>) => Tensor }[] = [
    { label: 'add [7, 3] + [7, 1] (last axis not a multiple of 4)', inputs: { a: { shape: [7, 3] }, b: { shape: [7, 1] } }, build: (g, x) => g.add(x.a, x.b) },
    { label: 'add [4099] (tail in the last invocation)', inputs: { a: { shape: [4099] }, b: { shape: [4099] } }, build: (g, x) => g.add(x.a, x.b) },
    { label: 'bias [8, 6] + [6]', inputs: { a: { shape: [8, 6] }, b: { shape: [6] } }, build: (g, x) => g.add(x.a, x.b) },
    { label: 'transpose [8, 12]', inputs: { a: { shape: [8, 12] } }, build: (g, x) => g.transpose(x.a) },
    { label: 'slice [5, 12] columns [1, 5) (offset not a multiple of 4)', inputs: { a: { shape: [5, 12] } }, build: (g, x) => g.slice(x.a, 1, 1, 5) },
    { label: 'slice [6, 10] columns [0, 4) (row stride not a multiple of 4)', inputs: { a: { shape: [6, 10] } }, build: (g, x) => g.slice(x.a, 1, 0, 4) },
    { label: 'oneHot [9] labels to 10 classes', inputs: { a: { shape: [9], dtype: 'i32', range: [0, 9] } }, build: (g, x) => g.oneHot(x.a, 10) },
    { label: 'gelu [3, 333]', inputs: { a: { shape: [3, 333] } }, build: (g, x) => g.gelu(x.a) },
  ];
  for (const c of cases) {
    test(c.label, async () => {
      const sources = await check(c.inputs, c.build, 1e-5, 1e-5);
      expect(sources.some((s) => s.includes(SCALAR)), sources.join('\n')).toBe(true);
      expect(sources.some((s) => s.includes(VEC4))).toBe(false);
    });
  }
});

describe('axis layouts', () => {
  test('the layout follows the row shape', () => {
    const softmaxLike = { reductions: [sumOf('a'), sumOf('b')], output: { per: 'element' as const, expr: (x: string) => x } };
    const sumLike = { reductions: [sumOf('total')], output: { per: 'row' as const, expr: 'total' } };
    // short rows share a workgroup; a 4096 row is 1024 vec4s over 256 invocations, in registers
    expect(axisLayout(1, 1, softmaxLike, [], AXIS)).toMatchObject({ lanes: 'none', team: 1, slotsPerGroup: 256, registers: 1 });
    expect(axisLayout(576, 1, softmaxLike, [576, 576], AXIS)).toMatchObject({ lanes: 'elements', units: 144, team: 64, slotsPerGroup: 4, registers: 3 });
    expect(axisLayout(4096, 1, softmaxLike, [], AXIS)).toMatchObject({ lanes: 'elements', team: 256, slotsPerGroup: 1, registers: 4 });
    // a row longer than the registers allow streams
    expect(axisLayout(32768, 1, softmaxLike, [], AXIS)).toMatchObject({ registers: 0 });
    // rows along an earlier axis are interleaved; a single reduction reads four rows per vec4
    expect(axisLayout(4096, 8192, sumLike, [], AXIS)).toMatchObject({ lanes: 'rows', interleaved: true, slotsPerGroup: 8, team: 32 });
    expect(axisLayout(4096, 8190, sumLike, [], AXIS)).toMatchObject({ lanes: 'none', interleaved: true, slotsPerGroup: 32, team: 8 });
    expect(axisLayout(300, 3, sumLike, [], AXIS)).toMatchObject({ lanes: 'none', interleaved: false });
  });

  const rowOps = {
    softmax: (g: Graph, x: Record<string, Tensor>) => g.softmax(x.x),
    logSoftmax: (g: Graph, x: Record<string, Tensor>) => g.logSoftmax(x.x),
    layerNorm: (g: Graph, x: Record<string, Tensor>) => g.layerNorm(x.x, x.gamma, x.beta),
    rmsNorm: (g: Graph, x: Record<string, Tensor>) => g.rmsNorm(x.x, x.gamma),
    sum: (g: Graph, x: Record<string, Tensor>) => g.sum(x.x, -1),
    max: (g: Graph, x: Record<string, Tensor>) => g.max(x.x, -1, { keepDims: true }),
  };
  const inputsFor = (op: string, shape: Shape): Record<string, Input> => {
    const n = shape[shape.length - 1];
    return {
      x: { shape, range: op === 'softmax' || op === 'logSoftmax' ? [-8, 8] : [-2, 2] },
      ...(op === 'layerNorm' || op === 'rmsNorm' ? { gamma: { shape: [n] } } : {}),
      ...(op === 'layerNorm' ? { beta: { shape: [n] } } : {}),
    };
  };
  const tolerance = (op: string, n: number): [number, number] => (op === 'sum' ? [1e-5 * Math.sqrt(n) * 4, 1e-5] : [1e-4, 1e-4]);
  const run = (op: keyof typeof rowOps, shape: Shape) => {
    const n = shape[shape.length - 1];
    return check(inputsFor(op, shape), rowOps[op], ...tolerance(op, n));
  };
  const runPlan = (op: keyof typeof rowOps, shape: Shape) => {
    const n = shape[shape.length - 1];
    return checkPlan(inputsFor(op, shape), rowOps[op], ...tolerance(op, n));
  };

  for (const n of [1, 3, 31, 32, 33, 576, 4096]) {
    for (const op of Object.keys(rowOps) as (keyof typeof rowOps)[]) {
      test(`${op}: 37 rows of ${n}, several rows per workgroup when short`, async () => {
        const [source] = await run(op, [37, n]);
        if (n <= 64) expect(source).toMatch(/ \d+ row\(s\) per workgroup/);
        if (n % 4 === 0) expect(source).toContain('vec4 loads');
        else expect(source).toContain('scalar loads');
        if (op !== 'sum' && op !== 'max') expect(source).toContain('row held in registers');
      });
    }
  }

  test('a rank-3 softmax over rows of 12 (three vec4s per invocation, 256 rows per workgroup)', async () => {
    const [source] = await run('softmax', [3, 5, 12]);
    expect(source).toContain('256 row(s) per workgroup, 1 invocations each, vec4 loads');
  });

  for (const [op, n] of [
    ['softmax', 576],
    ['layerNorm', 4096],
    ['rmsNorm', 33],
    ['logSoftmax', 10001],
  ] as const) {
    test(`${op}: rows of ${n} streamed from memory in each pass`, async () => {
      setAxisTuning({ maxRegisterFloats: 0 });
      const [source] = await run(op, [5, n]);
      expect(source).toContain('passes over memory');
    });
  }

  for (const [op, shape, groups] of [
    ['softmax', [37, 4096], 4],
    ['layerNorm', [37, 33], 2],
    ['rmsNorm', [37, 1000], 3],
  ] as const) {
    test(`${op}: ${shape.join('x')} streamed by ${groups} workgroups taking rows in turn`, async () => {
      setAxisTuning({ maxRegisterFloats: 0, streamGroups: groups });
      const [source] = await run(op, [...shape]);
      expect(source).toContain(`${groups} workgroups taking rows in turn`);
    });
  }

  test('softmax: eight accumulators per invocation on a stream', async () => {
    setAxisTuning({ maxRegisterFloats: 0, streamAccumulators: 8 });
    const [source] = await run('softmax', [3, 10000]);
    expect(source).toContain('acc7');
  });

  test('softmax: rows of 32768 stream in the portable kernel (run alone here), and fit in its registers when allowed', async () => {
    setAxisTuning({ largeInvocations: 0 });
    expect((await run('softmax', [3, 32768]))[0]).toContain('passes over memory');
    setAxisTuning({ maxRegisterFloats: 128 });
    expect((await run('softmax', [3, 32768]))[0]).toContain('row held in registers (32 per invocation)');
  });

  // Rows the portable kernel streams more than once, held in registers by 1024 invocations:
  // [op, shape, tuning, registers per invocation of the variant]
  const longRows: [keyof typeof rowOps, Shape, Partial<AxisTuning>, number][] = [
    ['softmax', [3, 32768], {}, 8],
    ['layerNorm', [2, 32768], {}, 8],
    ['rmsNorm', [37, 32768], {}, 8],
    ['logSoftmax', [3, 30001], {}, 30],
    // 2500 vec4s over 1024 invocations: the last register is guarded
    ['softmax', [5, 10000], { maxRegisterFloats: 32 }, 3],
    // both forms take the row groups in turn on the batched grid
    ['layerNorm', [6, 32768], { streamGroups: 4 }, 8],
  ];
  for (const [op, shape, rowTuning, registers] of longRows) {
    test(`${op} ${shape.join('x')} ${JSON.stringify(rowTuning)}: a 1024-invocation variant first, on the portable grid; both match the reference`, async () => {
      const { device } = await sharedDevice();
      // the runtime takes the first variant whose limits the device meets: here, the large one
      expect(device.limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(1024);
      setAxisTuning(rowTuning);
      const { manifest, text } = await runPlan(op, shape);
      const [kernel] = manifest.kernels;
      expect(kernel.variants).toHaveLength(2);
      const [large, portable] = kernel.variants;
      expect(kernel.workgroupSize).toEqual([256, 1, 1]);
      expect(large.workgroupSize).toEqual([1024, 1, 1]);
      expect(large.requiredLimits?.maxComputeInvocationsPerWorkgroup).toBe(1024);
      expect(large.requiredLimits?.maxComputeWorkgroupStorageSize ?? 0).toBeLessThanOrEqual(16384);
      expect(text(large.wgsl)).toContain(`1 row(s) per workgroup, 1024 invocations each`);
      expect(text(large.wgsl)).toContain(`row held in registers (${registers} per invocation)`);
      expect(text(portable.wgsl)).toContain('1 row(s) per workgroup, 256 invocations each');
      expect(text(portable.wgsl)).toContain('passes over memory');
      if (rowTuning.streamGroups) expect(text(large.wgsl)).toContain(`${rowTuning.streamGroups} workgroups taking rows in turn`);
      const grid = manifest.entryPoints.run.dispatches[0].workgroups;
      expect(grid).toEqual(rowTuning.streamGroups ? [rowTuning.streamGroups, 1, 1] : [shape[0], 1, 1]);

      // the portable kernel alone, on the same grid
      setAxisTuning({ ...rowTuning, largeInvocations: 0 });
      const alone = await runPlan(op, shape);
      expect(alone.manifest.kernels[0].variants).toHaveLength(1);
      expect(alone.manifest.entryPoints.run.dispatches[0].workgroups).toEqual(grid);
    });
  }

  test('no variant where the portable kernel holds the row, reads it once, or the larger team would change the grid', () => {
    const softmaxLike = { reductions: [sumOf('a'), sumOf('b')], output: { per: 'element' as const, expr: (x: string) => x } };
    expect(axisLayout(32768, 1, softmaxLike, [], AXIS, 1024, 32)).toMatchObject({ workgroup: 1024, team: 1024, slotsPerGroup: 1, registers: 8 });
    expect(axisLayout(65536, 1, softmaxLike, [], AXIS, 1024, 32)).toMatchObject({ registers: 0 });
    const variantsOf = (g: Graph) => lowerGraph(g, target).steps.map((s) => s.kernel.variants?.map((v) => v.tag) ?? []);
    const graph = (build: (g: Graph, x: Tensor) => Tensor, shape: Shape) => {
      const g = new Graph('variants');
      g.output('y', build(g, g.input('x', shape)));
      return g;
    };
    expect(variantsOf(graph((g, x) => g.softmax(x), [4, 32768]))).toEqual([['large']]);
    expect(variantsOf(graph((g, x) => g.softmax(x), [4, 16384]))).toEqual([[]]);
    expect(variantsOf(graph((g, x) => g.softmax(x), [4, 65536]))).toEqual([[]]);
    expect(variantsOf(graph((g, x) => g.sum(x, -1), [4, 32768]))).toEqual([[]]);
    setAxisTuning({ maxRegisterFloats: 4 });
    // 1200 vec4s: a team of 256 streams them, 1024 invocations would serve two rows (team 512)
    expect(variantsOf(graph((g, x) => g.softmax(x), [4, 4800]))).toEqual([[]]);
  });

  test('sum: two long rows of 100003 (scalar, four accumulators and a tail)', async () => {
    await run('sum', [2, 100003]);
  });

  // reductions over earlier axes: strided rows (INNER < 32) and interleaved rows (INNER ≥ 32)
  const strided: [string, Shape, number, 'sum' | 'max' | 'mean', string][] = [
    ['sum [5, 300, 3] axis 1', [5, 300, 3], 1, 'sum', 'row(s) per workgroup'],
    ['max [7, 31, 5] axis 1', [7, 31, 5], 1, 'max', 'row(s) per workgroup'],
    ['sum [300, 32] axis 0 (vec4 of 4 rows)', [300, 32], 0, 'sum', 'interleaved groups of 4 rows per workgroup'],
    ['mean [4, 70, 40] axis 1 (vec4 of 4 rows)', [4, 70, 40], 1, 'mean', 'vec4 loads of 4 rows'],
    ['max [3, 1000] axis 0 (vec4 of 4 rows)', [3, 1000], 0, 'max', 'vec4 loads of 4 rows'],
    ['sum [33, 35] axis 0 (interleaved scalar rows)', [33, 35], 0, 'sum', 'interleaved rows per workgroup'],
    ['max [5, 2, 37] axis 1 (a team of one)', [5, 2, 37], 1, 'max', '256 interleaved rows per workgroup, 1 invocations each'],
    ['sum [2, 2, 36] axis 0 (a team of one, vec4 of 4 rows)', [2, 2, 36], 0, 'sum', '256 interleaved groups of 4 rows per workgroup, 1 invocations each'],
  ];
  for (const [label, shape, axis, op, form] of strided) {
    test(label, async () => {
      const [source] = await check({ x: { shape } }, (g, x) => g[op](x.x, axis), 1e-4, 1e-5);
      expect(source).toContain(form);
    });
  }

  test('softmax and layerNorm of transposed operands (rows of 9 and 12 read after a transpose kernel)', async () => {
    await check({ x: { shape: [9, 12] } }, (g, x) => g.softmax(g.transpose(x.x)), 1e-5, 1e-4);
    await check({ x: { shape: [12, 9] }, gamma: { shape: [12] }, beta: { shape: [12] } }, (g, x) => g.layerNorm(g.transpose(x.x), x.gamma, x.beta), 1e-4, 1e-4);
  });
});
