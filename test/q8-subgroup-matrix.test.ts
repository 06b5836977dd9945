// The Q8_0 prefill product's int8 subgroup-matrix variant (compiler/lower/matmul-q8-subgroup-matrix.ts):
// which products carry it (and with which portable kernel beside it), the portable result on
// a device without subgroup matrices, and the variant's arithmetic run here with its fragment
// products emulated by plain WGSL from the same tile offsets and strides: x's rounding to int8,
// the realigned 34-byte blocks of w, the d_x·d_w scaling and the stores, against the float64
// product of x and the dequantized w within the stated bound Σ|w|·d_x/2 (+ f32 accumulation).
// The subgroup-matrix calls themselves run only where the adapter offers them:
// bench/quantized-prefill.ts checks them on the GPU machine.
import { afterAll, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { quantize } from '../compiler/frontends/gguf/quantize';
import { Graph } from '../compiler/ir/graph';
import { interpret } from '../compiler/ir/interpret';
import type { WeightDType } from '../compiler/ir/types';
import { q8SubgroupMatrixKernel, type Q8MatrixBlock } from '../compiler/lower/matmul-q8-subgroup-matrix';
import { GENERIC, NVIDIA_HOPPER } from '../compiler/target/targets';
import { nagaSource, translateWgsl } from '../compiler/validate/translate';
import { randomValues } from '../fixtures/gguf/models';
import { dequantize, ggmlType } from '../runtime/ggml-types';
import { loadPlan, readBundle } from '../runtime/index';
import { BUFFER_COPY_DST, BUFFER_COPY_SRC, BUFFER_MAP_READ, BUFFER_STORAGE, MAP_MODE_READ, STAGE_COMPUTE } from '../runtime/gpu-flags';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

const FEATURE = 'chromium-experimental-subgroup-matrix';

function productGraph(m: number, k: number, n: number, dtype: WeightDType = 'q8_0', transposeB = true): { g: Graph; x: Float32Array } {
  const g = new Graph('q8_prefill');
  const ggml = dtype === 'q8_0' ? 'Q8_0' : 'Q4_0';
  const [rows, cols] = transposeB ? [n, k] : [k, n];
  const w = g.packedParameter('w', [rows, cols], dtype, quantize(ggml, randomValues(11, rows * cols)));
  g.output('y', g.matmulQuantized(g.input('x', [m, k]), w, { transposeB }));
  return { g, x: randomValues(12, m * k) };
}

/** |ŷ − y| per output: x's rounding Σ|w|·max|x|/127/2 over each 32-value block, and f32 accumulation's (k + 2)·2^-24·Σ|x·w| (twice, for the rounded x). */
function roundingBound(x: Float32Array, w: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const half = Float64Array.from(x, (_, p) => {
    let amax = 0;
    for (let q = p - (p % 32); q < p - (p % 32) + 32; q++) amax = Math.max(amax, Math.abs(x[q]));
    return (amax / 127 / 2) * 1.001;
  });
  const bound = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let rounding = 0;
      let magnitude = 0;
      for (let p = 0; p < k; p++) {
        rounding += Math.abs(w[j * k + p]) * half[i * k + p];
        magnitude += Math.abs(x[i * k + p] * w[j * k + p]);
      }
      bound[i * n + j] = rounding + 2 * (k + 2) * 2 ** -24 * magnitude;
    }
  }
  return bound;
}

function worstOverBound(actual: Float32Array, expected: ArrayLike<number>, bound: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]) / bound[i]);
  return worst;
}

/** Shapes [M, K, N] whose chosen tiling (nvidia-hopper's blocks) is 32×32, 32×64, 64×64, and 64×128, which the variant's block cannot follow. */
const BLOCK_CASES: { m: number; k: number; n: number; tiling: string; block: [number, number] }[] = [
  { m: 128, k: 96, n: 64, tiling: '32x32x16', block: [32, 32] },
  { m: 256, k: 64, n: 512, tiling: '32x64x16', block: [32, 64] },
  { m: 1024, k: 32, n: 1024, tiling: '64x64x16', block: [64, 64] },
  { m: 1024, k: 32, n: 2048, tiling: '64x64x16', block: [64, 64] },
];

test('a Q8_0 prefill product carries the subgroup-matrix variant in the blocks of its tiled twin, at most 64x64', async () => {
  for (const { m, k, n, tiling, block } of BLOCK_CASES) {
    const what = `${m}x${k} by ${n}x${k}`;
    const { g } = productGraph(m, k, n);
    const { bundle, manifest } = await compileGraph(g, { targets: [NVIDIA_HOPPER] });
    const { text } = await readBundle(bundle);
    const [kernel] = manifest.kernels;
    expect(kernel.variants.map((v) => v.features), what).toEqual([[FEATURE], []]);
    const [variant, portable] = kernel.variants;
    expect(variant, what).toMatchObject({ validatedBy: 'dawn', translations: {}, deviceConstants: ['I8_MATRIX_UNIT'], workgroupSize: [32, 1, 1] });
    expect(portable.validatedBy).toBe('naga');
    const wgsl = text(variant.wgsl);
    expect(wgsl).toMatch(/^enable chromium_experimental_subgroup_matrix;/);
    expect(wgsl).toContain('override I8_MATRIX_UNIT: u32');
    // per step: a right fragment per 16 columns (w's rows, column-major), a left one per 16
    // rows, and each pair's product stored as i32 for the scaling
    const [fragsM, fragsN] = [block[0] / 16, block[1] / 16];
    expect(wgsl, what).toContain(`a subgroup per ${block[0]}x${block[1]} block`);
    expect(wgsl.match(/subgroupMatrixLoad<subgroup_matrix_right<i8, 16, 32>, col_major>/g), what).toHaveLength(fragsN);
    expect(wgsl.match(/subgroupMatrixLoad<subgroup_matrix_left<i8, 32, 16>, row_major>/g), what).toHaveLength(fragsM);
    expect(wgsl.match(/subgroupMatrixMultiplyAccumulate/g), what).toHaveLength(fragsM * fragsN);
    expect(wgsl.match(/subgroupMatrixStore<row_major>\(&r_tile/g), what).toHaveLength(fragsM * fragsN);
    expect(text(portable.wgsl), what).toContain(`archetype: tiled matmul, ${tiling} tiles`);
    expect(text(portable.wgsl)).toContain('fn q_dq4(bb: u32, e: u32)');
    expect(manifest.entryPoints.run.dispatches[0].workgroups, what).toEqual([n / block[1], m / block[0], 1]);
  }
  // without the variant, the last shape's tiling is 64×128 (the twin gave it up)
  const { manifest, bundle } = await compileGraph(productGraph(1024, 32, 2048).g, { targets: [GENERIC] });
  expect((await readBundle(bundle)).text(manifest.kernels[0].variants[0].wgsl)).toContain('archetype: tiled matmul, 64x128x16 tiles');
});

test('other products carry no variant: a target without subgroup matrices, rows or columns off the blocks, w as [K, N], another type, decode', async () => {
  const cases: [string, Graph, typeof GENERIC][] = [
    ['generic target', productGraph(128, 96, 64).g, GENERIC],
    ['M = 72', productGraph(72, 96, 64).g, NVIDIA_HOPPER],
    ['N = 80', productGraph(128, 96, 80).g, NVIDIA_HOPPER],
    ['w [K, N]', productGraph(128, 64, 96, 'q8_0', false).g, NVIDIA_HOPPER],
    ['q4_0', productGraph(128, 96, 64, 'q4_0').g, NVIDIA_HOPPER],
    ['M = 4', productGraph(4, 96, 64).g, NVIDIA_HOPPER],
  ];
  for (const [what, g, target] of cases) {
    const { manifest } = await compileGraph(g, { targets: [target] });
    expect(manifest.kernels.flatMap((kernel) => kernel.variants.flatMap((v) => v.features)), what).not.toContain(FEATURE);
  }
});

test('without subgroup matrices the runtime runs the portable twin, equal to the reference within f32 accumulation', async () => {
  const { device } = await sharedDevice();
  expect(device.features.has(FEATURE)).toBe(false);
  // the twin that takes 64×64 tiles where the tiling chosen would take 64×128
  const [m, k, n] = [1024, 32, 2048];
  const { g, x } = productGraph(m, k, n);
  const { bundle, parameters } = await compileGraph(g, { targets: [NVIDIA_HOPPER] });
  const session = await loadPlan(bundle, device, { target: 'nvidia-hopper' });
  try {
    const { y } = (await session.run({ x })) as Record<string, Float32Array>;
    const expected = interpret(g, { x }, parameters).y;
    const w = parameters.get('w')!;
    const bound = new Float64Array(m * n);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += Math.abs(x[i * k + p] * w[j * k + p]);
        bound[i * n + j] = (k + 2) * 2 ** -24 * s;
      }
    }
    expect(worstOverBound(y, expected, bound)).toBeLessThanOrEqual(1);
  } finally {
    session.destroy();
  }
});

const EMULATED_BLOCKS: Q8MatrixBlock[] = [
  { rows: 64, cols: 64 },
  { rows: 32, cols: 64 },
  { rows: 32, cols: 32 },
];
test.each(EMULATED_BLOCKS)("the variant's arithmetic in $rows x $cols blocks, fragment products emulated, is within Σ|w|·d_x/2 of x times the dequantized w", async (block) => {
  const { device } = await sharedDevice();
  // 128 × 96 by 192 × 96: 3 blocks a row of w, so blocks start on both halves of a word; x's
  // blocks of mixed scales, one all zero, one with a lone large value
  const [m, k, n] = [128, 96, 192];
  const x = randomValues(21, m * k).map((v, p) => {
    const block = Math.floor(p / 32);
    if (block === 5) return 0;
    if (block === 9) return p % 32 === 7 ? 40 : v * 0.01;
    return v * (1 + (block % 7));
  });
  const bytes = quantize('Q8_0', randomValues(22, n * k));
  const w = dequantize(ggmlType('Q8_0'), bytes, n * k);
  const operands = [
    { shape: [m, k], dtype: 'f32' as const },
    { shape: [n, k], dtype: 'u32' as const },
  ];
  const code = q8SubgroupMatrixKernel({ name: 'y', op: 'matmulQuantized', attrs: {}, type: { shape: [m, n], dtype: 'f32' } }, operands, 'matmulQuantized_emulated', block, 'emulated');
  expect(code.workgroups).toEqual([n / block.cols, m / block.rows, 1]);
  // the variant is this module but for the fragment products: the same lines once those, the
  // emulation, the extension and the unit are taken out of both
  const variant = q8SubgroupMatrixKernel({ name: 'y', op: 'matmulQuantized', attrs: {}, type: { shape: [m, n], dtype: 'f32' } }, operands, 'matmulQuantized_emulated', block, 'subgroup-matrix');
  const rest = (wgsl: string) =>
    wgsl
      .replace(/\/\*\*\n \* Emulates[\s\S]*?\n}\n/, '')
      .split('\n')
      .filter((line) => line.trim() !== '' && !/subgroupMatrix|subgroup_matrix|I8_MATRIX_UNIT|what an i8 matrix offset|fragment_product\(|\/\/ archetype:/.test(line));
  expect(rest(variant.wgsl)).toEqual(rest(code.wgsl));
  expect(variant.wgsl.split('\n').length - rest(variant.wgsl).length).toBeLessThan(40);
  // the module without the subgroup-matrix calls is valid for naga as well as for Dawn
  const naga = translateWgsl(nagaSource(code.wgsl));
  expect('refusal' in naga ? naga.refusal : undefined).toBeUndefined();

  const usage = BUFFER_STORAGE | BUFFER_COPY_DST | BUFFER_COPY_SRC;
  const upload = (data: Uint8Array) => {
    const buffer = device.createBuffer({ size: Math.ceil(data.byteLength / 4) * 4, usage });
    const padded = new Uint8Array(buffer.size);
    padded.set(data);
    device.queue.writeBuffer(buffer, 0, padded);
    return buffer;
  };
  const xBuffer = upload(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  const wBuffer = upload(bytes);
  const yBuffer = device.createBuffer({ size: m * n * 4, usage });
  const readback = device.createBuffer({ size: m * n * 4, usage: BUFFER_MAP_READ | BUFFER_COPY_DST });
  try {
    const layout = device.createBindGroupLayout({
      entries: [0, 1, 2].map((binding) => ({ binding, visibility: STAGE_COMPUTE, buffer: { type: binding < 2 ? ('read-only-storage' as const) : ('storage' as const) } })),
    });
    device.pushErrorScope('validation');
    const pipeline = device.createComputePipeline({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module: device.createShaderModule({ code: code.wgsl }), entryPoint: 'main' } });
    const bindGroup = device.createBindGroup({ layout, entries: [xBuffer, wBuffer, yBuffer].map((buffer, binding) => ({ binding, resource: { buffer } })) });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(...code.workgroups);
    pass.end();
    encoder.copyBufferToBuffer(yBuffer, 0, readback, 0, m * n * 4);
    device.queue.submit([encoder.finish()]);
    expect((await device.popErrorScope())?.message).toBeUndefined();
    await readback.mapAsync(MAP_MODE_READ);
    const y = new Float32Array(readback.getMappedRange().slice(0));
    readback.unmap();

    const expected = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) expected[i * n + j] += x[i * k + p] * w[j * k + p];
    expect(worstOverBound(y, expected, roundingBound(x, w, m, k, n))).toBeLessThanOrEqual(1);
    // the bound is x's rounding, not slack: a product of x unrounded would sit far inside it,
    // and this one uses a good part of it
    expect(worstOverBound(y, expected, roundingBound(x, w, m, k, n))).toBeGreaterThan(0.05);
  } finally {
    for (const buffer of [xBuffer, wBuffer, yBuffer, readback]) buffer.destroy();
  }
});
