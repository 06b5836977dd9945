// Convolution beyond the op-table suites (test/ops.test.ts checks the three ops against the
// CPU reference on a table of geometries, test/gradients.test.ts their gradients): shape
// errors, the reference itself on values worked by hand, convTranspose2d's sizes, and the
// lowering: every convolution kernel is the tiled matmul kernel with operand readers, valid
// under naga for every target's variants, and correct on this device for the tilings and
// code shapes the targets may pick.
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { CompileError } from '../compiler/ir/errors';
import { conv2dAttrs, Graph, type Conv2dOptions } from '../compiler/ir/graph';
import { interpret } from '../compiler/ir/interpret';
import { lowerGraph } from '../compiler/lower';
import { GENERIC, NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import { uniformStream } from '../compiler/ir/init';
import { HYPER_FIELDS } from '../compiler/ir/ops';
import { elementCount } from '../compiler/ir/types';
import { loadTrainingPlan } from '../runtime/training';
import { sharedDevice } from './gpu';
import { TILINGS, type TileConfig } from '../compiler/target/tuning';
import { validateKernel } from '../compiler/validate/naga';
import { expectClose } from './close';
import { releaseSharedDevice, runOnGpu } from './gpu';
import { inputFeeds } from './random-feeds';

afterAll(releaseSharedDevice);

function shapeError(build: (g: Graph) => void): CompileError {
  const g = new Graph('conv_errors');
  try {
    build(g);
  } catch (e) {
    expect(e).toBeInstanceOf(CompileError);
    return e as CompileError;
  }
  return expect.fail('no error');
}

describe('conv2d shape rule', () => {
  test.each([
    ['an input that is not NCHW', [3, 8, 8], [4, 3, 3, 3], {}, 'the input must be NCHW [N, C, H, W]; got [3, 8, 8]'],
    ['weight channels that are not C / groups', [1, 6, 8, 8], [4, 6, 3, 3], { groups: 2 }, 'weight [4, 6, 3, 3] must have C / groups = 3 channels on axis 1 (input [1, 6, 8, 8], groups 2); got 6'],
    ['channels not divisible by groups', [1, 6, 8, 8], [4, 2, 3, 3], { groups: 4 }, 'input channels C = 6 (input [1, 6, 8, 8]) are not divisible by groups = 4'],
    ['a window larger than the padded input', [1, 3, 4, 4], [2, 3, 3, 3], { dilation: 2 }, "the kernel's window 5×5 (weight [2, 3, 3, 3], dilation 2×2) is larger than the padded input 4×4"],
    ['a zero stride', [1, 3, 8, 8], [2, 3, 3, 3], { stride: 0 }, 'stride must be 2 integers ≥ 1; got [0,0]'],
    ['three padding values', [1, 3, 8, 8], [2, 3, 3, 3], { padding: [1, 1, 1] }, 'padding must be 4 integers ≥ 0; got [1,1,1]'],
  ] as const)('refuses %s, naming the op and shapes', (_label, xs, ws, options, message) => {
    const e = shapeError((g) => g.conv2d(g.input('x', xs), g.input('w', ws), options as never));
    expect(e.kind).toBe('shape');
    expect(e.op).toBe('conv2d');
    expect(e.message).toContain(`conv2d: ${message}`);
    expect(e.loc?.file).toMatch(/conv\.test\.ts$/);
  });

  test('refuses a bias that is not one value per output channel', () => {
    const e = shapeError((g) => g.conv2d(g.input('x', [1, 3, 8, 8]), g.input('w', [4, 3, 3, 3]), { bias: g.input('b', [3]) }));
    expect(e.message).toContain('bias must have shape [4] (the output channels of weight [4, 3, 3, 3]); got [3]');
  });

  test("refuses a gradient's dy that is not the convolution's output", () => {
    const e = shapeError((g) => g.conv2dBackwardInput(g.input('dy', [1, 4, 5, 5]), g.input('w', [4, 3, 3, 3]), { stride: [1, 1], padding: [0, 0, 0, 0], dilation: [1, 1], groups: 1, inputSize: [8, 8] }));
    expect(e.op).toBe('conv2dBackwardInput');
    expect(e.message).toContain('dy [1, 4, 5, 5] is not the output [1, 4, 6, 6] of a convolution of an input of 8×8 with weight [4, 3, 3, 3]');
  });
});

describe('pooling shape rule', () => {
  test('takes padding up to the window less one (ONNX), and refuses a window that holds no input element', () => {
    // 3×3 window with 2 of padding: every window still reaches the input (ONNX's maxpool_2d_pads)
    const ok = new Graph('pads');
    expect(ok.maxPool2d(ok.input('x', [1, 1, 5, 5]), { kernel: 3, stride: 1, padding: 2 }).shape).toEqual([1, 1, 7, 7]);
    // 2 taps 3 apart from 2 before a 1-wide input: the first window's taps are at -2 and 1, both outside it
    const e = shapeError((g) => g.maxPool2d(g.input('x', [1, 1, 4, 1]), { kernel: [1, 2], stride: 1, dilation: [1, 3], padding: [0, 2, 0, 2] }));
    expect(e.op).toBe('maxPool2d');
    expect(e.message).toContain('padding 0, 2, 0, 2 leaves window 0 along W (of 2) without an element of the input [1, 1, 4, 1]');
  });
});

describe('the CPU reference on values worked by hand', () => {
  const run = (g: Graph, feeds: Record<string, number[]>) => interpret(g, feeds, new Map()).y;

  test('2×2 ones, stride 2: sums of 2×2 blocks; 3×3 ones, padding 1: the taps inside the input', () => {
    const g = new Graph('sums');
    const x = g.input('x', [1, 1, 4, 4]);
    g.output('y', g.conv2d(x, g.constant(new Float32Array(4).fill(1), [1, 1, 2, 2]), { stride: 2 }));
    expect(Array.from(run(g, { x: Array.from({ length: 16 }, (_, i) => i) }))).toEqual([0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15]);

    const h = new Graph('counts');
    h.output('y', h.conv2d(h.input('x', [1, 1, 3, 4]), h.constant(new Float32Array(9).fill(1), [1, 1, 3, 3]), { padding: 1 }));
    expect(Array.from(run(h, { x: new Array(12).fill(1) }))).toEqual([4, 6, 6, 4, 6, 9, 9, 6, 4, 6, 6, 4]);
  });

  test('groups: each output channel sees only its group; bias per channel', () => {
    const g = new Graph('grouped');
    const x = g.input('x', [1, 4, 1, 1]);
    // two groups of two channels: output 0 = x0 + 2·x1, output 1 = 3·x2 + 4·x3
    g.output('y', g.conv2d(x, g.constant([1, 2, 3, 4], [2, 2, 1, 1]), { groups: 2, bias: g.constant([10, 20]) }));
    expect(Array.from(run(g, { x: [1, 10, 100, 1000] }))).toEqual([10 + 1 + 20, 20 + 300 + 4000]);
  });

  test('convTranspose2d (stride 2, 2×2 ones) spreads each value over a 2×2 block, with PyTorch’s output size', () => {
    const g = new Graph('transposed');
    const x = g.input('x', [1, 1, 2, 2]);
    g.output('y', g.convTranspose2d(x, g.constant(new Float32Array(4).fill(1), [1, 1, 2, 2]), { stride: 2 }));
    expect(g.node(g.tensor(g.outputs[0].node)).type.shape).toEqual([1, 1, 4, 4]);
    expect(Array.from(run(g, { x: [1, 2, 3, 4] }))).toEqual([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    // (H - 1)·stride - pads + dilation·(K - 1) + outputPadding + 1, as torch.nn.ConvTranspose2d
    const h = new Graph('sizes');
    const y = h.convTranspose2d(h.input('x', [2, 6, 5, 7]), h.input('w', [6, 4, 3, 3]), { stride: 2, padding: 1, dilation: [1, 2], outputPadding: [1, 0], groups: 2 });
    expect(y.shape).toEqual([2, 8, (5 - 1) * 2 - 2 + 2 + 1 + 1, (7 - 1) * 2 - 2 + 4 + 0 + 1]);
  });
});

/** A convolution, its input gradient and weight gradient, as one graph with three outputs. */
function convGraph(x: number[], w: number[], options: Conv2dOptions): Graph {
  const g = new Graph('conv_products');
  const xi = g.input('x', x);
  const wi = g.input('w', w);
  const y = g.conv2d(xi, wi, { ...options, bias: g.input('b', [w[0]]) });
  const dy = g.input('dy', y.shape);
  const attrs = conv2dAttrs(options);
  g.output('y', y);
  g.output('dx', g.conv2dBackwardInput(dy, wi, { ...attrs, inputSize: [x[2], x[3]] }));
  g.output('dw', g.conv2dBackwardWeight(xi, dy, { ...attrs, kernelSize: [w[2], w[3]] }));
  return g;
}

describe('lowering', () => {
  test('conv2d and both gradients are the tiled matmul kernel with operand readers, naga-valid in every variant (nvidia-hopper, ResNet-sized)', () => {
    const g = convGraph([8, 64, 56, 56], [64, 64, 3, 3], { padding: 1 });
    // dw: 64 × 576 per group summing 8·56·56 = 25088 terms, 36 tiles: nvidia-hopper splits K (generic never does)
    for (const [target, dw] of [[NVIDIA_HOPPER, 'conv2dBackwardWeightSplitK'], [GENERIC, 'conv2dBackwardWeight']] as const) {
      const { steps } = lowerGraph(g, target);
      const convolutions = steps.filter((s) => s.kernel.ops[0].startsWith('conv'));
      expect(convolutions.map((s) => s.kernel.ops[0])).toEqual(['conv2d', 'conv2dBackwardInput', dw]);
      for (const { kernel } of convolutions) {
        for (const wgsl of [kernel.wgsl, ...(kernel.variants ?? []).map((v) => v.wgsl)]) {
          expect(wgsl).toMatch(/archetype: tiled matmul/);
          expect(wgsl).toMatch(/fn read_a\(batch: u32, row: u32, k: u32\) -> f32/);
          expect(wgsl).toMatch(/fn read_b\(batch: u32, k: u32, col: u32\) -> f32/);
        }
        validateKernel(kernel, { op: kernel.ops[0], node: kernel.name });
      }
    }
  });

  // the code shapes of the targets' tilings, each forced as the generic target's only block
  const TILED: [string, TileConfig][] = [
    ['128×256×8 pipelined, swizzled stores (nvidia-hopper A·B epilogue)', { ...TILINGS.t128x256x8, pipelined: true, swizzledStores: true }],
    ['32×32×16 read ahead 2, pipelined, barrier first', { ...TILINGS.t32x32x16, readAhead: 2, pipelined: true, barrierFirst: true }],
    ['64×64×16 two stages, stores at step 4', { ...TILINGS.t64x64x16, stages: 2, storeStep: 4 }],
    ['32×64×16 no prefetch', { ...TILINGS.t32x64x16, prefetch: false }],
  ];
  test.each(TILED)('%s: conv2d with bias, dx and dw equal the CPU reference on this device', async (_label, tiling) => {
    const g = convGraph([2, 6, 11, 9], [10, 3, 3, 3], { stride: 2, padding: [1, 0, 1, 2], dilation: [2, 1], groups: 2 });
    const target = withTuning(GENERIC, { matmul: { blocks: [{ tiling, fewestWorkgroups: 0 }] } }, 'generic');
    const plan = await compileGraph(g, { targets: [target], optimize: false });
    const feeds = inputFeeds(g, 3, {}, [-1, 1]);
    const got = await runOnGpu(plan.bundle, feeds);
    const want = interpret(g, feeds, new Map());
    // sums of at most 2·5·5 = 50 products of values in [-1, 1]
    for (const name of ['y', 'dx', 'dw']) expectClose(got[name], want[name], 5e-5, 1e-4, name);
  });
});

describe('split-K', () => {
  test('the implicit products split over K where few tiles sum a long K: conv with its fused epilogue, dx and dw, equal to the CPU reference', async () => {
    // per group: y 16 × 16 summing 288 terms (3 slices), dx 32 × 16 summing 144 (3), dw 16 × 288 summing 2·4·4 = 32 (2)
    const g = convGraph([2, 64, 4, 4], [32, 32, 3, 3], { padding: 1, groups: 2 });
    const y = g.nodes[g.outputs[0].node];
    g.output('activated', g.relu(g.tensor(y.id)));
    const target = withTuning(GENERIC, { splitK: { belowTiles: 1000, minK: 16, targetTiles: 16, minChunk: 16, maxSplits: 4 } }, 'generic');
    const plan = await compileGraph(g, { targets: [target] });
    const split = plan.manifest.kernels.filter((k) => /SplitK/.test(k.name)).map((k) => k.name.replace(/_.*/, ''));
    expect(split).toEqual(expect.arrayContaining(['conv2dSplitK', 'conv2dBackwardInputSplitK', 'conv2dBackwardWeightSplitK']));
    const feeds = inputFeeds(g, 4, {}, [-1, 1]);
    const got = await runOnGpu(plan.bundle, feeds);
    const want = interpret(g, feeds, new Map());
    for (const name of ['y', 'activated', 'dx', 'dw']) expectClose(got[name], want[name], 5e-5, 1e-4, name);
  });
});

describe('fusion', () => {
  // the ResNet block's tail: conv → batch norm (inference) → relu → + the block's input; and a conv with a bias then silu
  const block = () => {
    const g = new Graph('conv_block');
    const x = g.input('x', [2, 4, 9, 7]);
    const c = 4;
    const p = (name: string, values: number[]) => g.parameter(name, [c], { init: values });
    const h = g.conv2d(x, g.parameter('w', [c, 4, 3, 3], { init: { uniform: [-0.5, 0.5] } }), { padding: 1 });
    const bn = g.batchNorm(h, p('gamma', [1.5, 0.5, -1, 2]), p('beta', [0.1, -0.2, 0.3, 0]), p('mean', [0.2, -0.1, 0, 0.4]), p('var', [0.5, 2, 1, 0.25]));
    g.output('y', g.add(g.relu(bn), x));
    g.output('z', g.silu(g.conv2d(x, g.parameter('v', [6, 2, 3, 3], { init: { uniform: [-0.5, 0.5] } }), { stride: 2, groups: 2, bias: g.parameter('b', [6], { init: { uniform: [-1, 1] } }) })));
    return g;
  };

  test('conv + batch norm + relu + residual, and conv + bias + silu, each become one fusedConv2d kernel computing the unfused graph', async () => {
    const g = block();
    const plan = await compileGraph(g, { seed: 5 });
    const convolutions = plan.manifest.kernels.filter((k) => k.ops[0] === 'conv2d').map((k) => k.ops);
    expect(convolutions).toEqual(expect.arrayContaining([['conv2d', 'mul', 'add', 'relu', 'add'], ['conv2d', 'add', 'silu']]));
    expect(convolutions).toHaveLength(2);
    const feeds = inputFeeds(g, 9);
    const got = await runOnGpu(plan.bundle, feeds);
    const want = interpret(g, feeds, plan.parameters);
    expectClose(got.y, want.y, 1e-4, 1e-4, 'y');
    expectClose(got.z, want.z, 1e-4, 1e-4, 'z');
  });
});

describe('training', () => {
  // conv + bias → batch norm (batch statistics) → relu → max pool → grouped conv → relu →
  // average pool → global average pool → linear → cross-entropy
  const cnn = () => {
    const g = new Graph('cnn');
    const x = g.input('x', [4, 2, 8, 8]);
    const labels = g.input('labels', [4], 'i32');
    let h = g.conv2d(x, g.parameter('w1', [4, 2, 3, 3], { init: 'he' }), { padding: 1, bias: g.parameter('b1', [4]) });
    h = g.relu(g.batchNormTraining(h, g.parameter('gamma', [4], { init: 'ones' }), g.parameter('beta', [4])));
    h = g.maxPool2d(h, { kernel: 2 });
    h = g.relu(g.conv2d(h, g.parameter('w2', [6, 2, 3, 3], { init: 'he' }), { padding: 1, groups: 2 }));
    h = g.globalAvgPool2d(g.avgPool2d(h, { kernel: 3, stride: 1, padding: 1, countIncludePad: false }));
    const logits = g.biasAdd(g.matmul(g.reshape(h, [4, 6]), g.parameter('fc', [6, 3])), g.parameter('bfc', [3]));
    g.output('loss', g.crossEntropy(logits, labels));
    return g;
  };
  const batch = (step: number) => {
    const u = uniformStream(50 + step);
    return { x: Float32Array.from({ length: 4 * 2 * 8 * 8 }, () => 2 * u() - 1), labels: Int32Array.from([0, 1, 2, step % 3]) };
  };

  test('8 SGD steps of a small CNN on the GPU equal the CPU reference, and the loss falls', async () => {
    const g = cnn();
    const plan = await compileGraph(g, { seed: 2, training: { loss: 'loss', optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9 } } });
    expect(plan.manifest.kernels.some((k) => k.ops.includes('conv2dBackwardWeight'))).toBe(true);
    const parameters = new Map([...plan.parameters].map(([k, v]) => [k, Float64Array.from(v)]));
    const state = new Map(g.nodes.filter((n) => n.op === 'state').map((n) => [n.name, new Float64Array(elementCount(n.type.shape))]));
    const defaults = plan.training!.hyper.defaults as Record<string, number>;
    // the fields the runtime fills from its step count; SGD reads none of them
    const filled: Record<string, number> = { ...defaults, biasCorrection1: 1, biasCorrection2: 1, oneMinusBeta1: 1 - defaults.beta1, oneMinusBeta2: 1 - defaults.beta2 };
    const hyper = HYPER_FIELDS.map((f) => filled[f]);
    const session = await loadTrainingPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const gpu: number[] = [];
      const cpu: number[] = [];
      for (let t = 0; t < 8; t++) {
        gpu.push(await session.step(batch(t)));
        cpu.push(interpret(g, { ...batch(t), 'optimizer.hyper': hyper }, parameters, { state, outputs: ['loss'], effects: plan.training!.updates }).loss[0]);
      }
      for (let t = 0; t < 8; t++) expect(Math.abs(gpu[t] - cpu[t]), `step ${t}: gpu ${gpu[t]}, cpu ${cpu[t]}`).toBeLessThan(1e-4);
      expect(gpu[7]).toBeLessThan(gpu[0]);
    } finally {
      session.destroy();
    }
  });
});
