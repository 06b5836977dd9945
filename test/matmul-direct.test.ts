// The direct matmul kernel (lower/matmul-direct.ts) and the `software` target that uses it for
// products up to 2^16 multiply-adds or of at most 16 rows: products of every form (plain, Aᵀ, Bᵀ, broadcast
// batches, a single row, fused bias/activation/residual epilogues) and a grouped, strided,
// dilated convolution with bias and both gradients, compiled for `software`, are direct
// kernels and equal the CPU reference (compiler/ir/interpret.ts) on this device; a plan with
// generic and software kernels runs software's on SwiftShader or llvmpipe, generic's elsewhere.
import { afterAll, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { conv2dAttrs, Graph } from '../compiler/ir/graph';
import { interpret } from '../compiler/ir/interpret';
import { GENERIC, SOFTWARE } from '../compiler/target/targets';
import { readBundle } from '../runtime/bundle';
import { chooseTarget, targetManifest } from '../runtime/targets';
import { expectClose } from './close';
import { releaseSharedDevice, runOnGpu } from './gpu';
import { inputFeeds } from './random-feeds';

afterAll(releaseSharedDevice);

/** The WGSL of every kernel of the plan's target `name` (each kernel's portable module). */
async function kernelSources(bundle: Uint8Array, name: string): Promise<{ ops: string[]; wgsl: string }[]> {
  const read = await readBundle(bundle);
  const targets = [read.manifest.target.name, ...(read.manifest.otherTargets ?? []).map((t) => t.name)];
  const manifest = targetManifest(read.manifest, targets.indexOf(name));
  return manifest.kernels.map((k) => ({ ops: k.ops, wgsl: read.text(k.variants[k.variants.length - 1].wgsl) }));
}

test('products of every form are direct kernels under the software target and equal the CPU reference', async () => {
  const g = new Graph('direct_products');
  const a = g.input('a', [5, 7]);
  const b = g.input('b', [7, 9]);
  const at = g.input('at', [7, 5]);
  const bt = g.input('bt', [9, 7]);
  const bias = g.input('bias', [9]);
  const residual = g.input('residual', [5, 9]);
  const batched = g.input('batched', [2, 3, 5, 7]);
  const row = g.input('row', [1, 7]);
  g.output('plain', g.matmul(a, b));
  g.output('fused', g.add(g.relu(g.biasAdd(g.matmul(a, b), bias)), residual));
  g.output('transposedA', g.matmul(g.transpose(at, [1, 0]), b));
  g.output('transposedB', g.gelu(g.matmul(a, g.transpose(bt, [1, 0]))));
  g.output('broadcast', g.matmul(batched, b));
  g.output('single', g.matmul(row, b));
  // a product of RMSNorm's rows (the decode step's q/k/v, gate and up projections) fuses the norm
  g.output('normed', g.matmul(g.rmsNorm(a, g.input('norm_weight', [7]), { eps: 1e-5 }), b));
  const plan = await compileGraph(g, { targets: [SOFTWARE] });
  const products = (await kernelSources(plan.bundle, 'software')).filter((k) => k.ops.includes('matmul'));
  // one kernel per output: plain, fused, Aᵀ, Bᵀ, broadcast, single row, normed
  expect(products).toHaveLength(7);
  expect(products.some((k) => k.ops.includes('rmsNorm'))).toBe(true);
  for (const { ops, wgsl } of products) expect(wgsl, ops.join(',')).toMatch(/archetype: direct matmul/);
  expect(products.filter((k) => /A read transposed/.test(k.wgsl))).toHaveLength(1);
  expect(products.filter((k) => /B read transposed, epilogue per value/.test(k.wgsl))).toHaveLength(1);
  expect(products.some((k) => k.ops.join('+') === 'matmul+biasAdd+relu+add')).toBe(true);
  const feeds = inputFeeds(g, 11, {}, [-1, 1]);
  const got = await runOnGpu(plan.bundle, feeds);
  const want = interpret(g, feeds, new Map());
  for (const name of ['plain', 'fused', 'transposedA', 'transposedB', 'broadcast', 'single', 'normed']) expectClose(got[name], want[name], 2e-5, 1e-4, name);
});

test('a grouped, strided, dilated convolution with bias and both gradients: direct kernels under software, equal to the CPU reference', async () => {
  const g = new Graph('direct_conv');
  const options = { stride: 2, padding: [1, 0, 1, 2], dilation: [2, 1], groups: 2 } as const;
  const [xs, ws] = [[2, 6, 11, 9], [10, 3, 3, 3]];
  const x = g.input('x', xs);
  const w = g.input('w', ws);
  const y = g.conv2d(x, w, { ...options, bias: g.input('b', [ws[0]]) });
  const dy = g.input('dy', y.shape);
  const attrs = conv2dAttrs(options);
  g.output('y', g.relu(y));
  g.output('dx', g.conv2dBackwardInput(dy, w, { ...attrs, inputSize: [xs[2], xs[3]] }));
  g.output('dw', g.conv2dBackwardWeight(x, dy, { ...attrs, kernelSize: [ws[2], ws[3]] }));
  const plan = await compileGraph(g, { targets: [SOFTWARE] });
  const convolutions = (await kernelSources(plan.bundle, 'software')).filter((k) => k.ops[0].startsWith('conv'));
  expect(convolutions.map((k) => k.ops[0]).sort()).toEqual(['conv2d', 'conv2dBackwardInput', 'conv2dBackwardWeight']);
  for (const { ops, wgsl } of convolutions) {
    expect(wgsl, ops.join(',')).toMatch(/archetype: direct matmul/);
    expect(wgsl).toMatch(/fn read_b\(batch: u32, k: u32, col: u32\) -> f32/);
  }
  const feeds = inputFeeds(g, 3, {}, [-1, 1]);
  const got = await runOnGpu(plan.bundle, feeds);
  const want = interpret(g, feeds, new Map());
  for (const name of ['y', 'dx', 'dw']) expectClose(got[name], want[name], 5e-5, 1e-4, name);
});

test('under software, larger products keep the tiled kernel unless they have at most 16 rows', async () => {
  const g = new Graph('sizes');
  g.output('square', g.matmul(g.input('a', [64, 64]), g.input('b', [64, 64]))); // 2^18 multiply-adds, 64 rows
  g.output('row', g.matmul(g.input('x', [1, 512]), g.input('w', [512, 512]))); // 2^18, one row
  const plan = await compileGraph(g, { targets: [SOFTWARE] });
  const kernels = await kernelSources(plan.bundle, 'software');
  const archetype = (m: number) => kernels.find((k) => k.wgsl.includes(`const M: u32 = ${m}u;`))?.wgsl.match(/archetype: ([a-z -]+)/)?.[1];
  expect(archetype(64)).toBe('tiled matmul');
  expect(archetype(1)).toBe('direct matmul');
  const feeds = inputFeeds(g, 5, {}, [-1, 1]);
  const got = await runOnGpu(plan.bundle, feeds);
  const want = interpret(g, feeds, new Map());
  for (const name of ['square', 'row']) expectClose(got[name], want[name], 5e-5, 1e-4, name);
});

test('a plan for generic and software runs software on SwiftShader and llvmpipe, generic on a GPU', async () => {
  const g = new Graph('two_targets');
  g.output('y', g.matmul(g.input('a', [64, 64]), g.input('b', [64, 64])));
  const { manifest } = await readBundle((await compileGraph(g, { targets: [GENERIC, SOFTWARE] })).bundle);
  const limits = {};
  const chosen = (info: object) => chooseTarget(manifest, { info, limits }).chosen;
  expect(chosen({ vendor: 'google', architecture: 'swiftshader' })).toMatchObject({ name: 'software', reason: 'matched' });
  expect(chosen({ vendor: 'mesa', device: 'llvmpipe (LLVM 19.1.7, 256 bits)' })).toMatchObject({ name: 'software', reason: 'matched' });
  expect(chosen({ vendor: 'nvidia', architecture: 'hopper' })).toMatchObject({ name: 'generic', reason: 'fallback' });
  expect(chosen({ vendor: 'mesa', device: 'AMD Radeon RX 7600 (RADV NAVI33)' })).toMatchObject({ name: 'generic', reason: 'fallback' });
});
