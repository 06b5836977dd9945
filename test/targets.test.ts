// Compile targets: the target the runtime picks for a table of adapter descriptions (as Dawn
// and Chrome report them), plans carrying several targets with shared kernels stored once,
// every target of such a plan computing the graph's values on this device, and the
// optimizer's budget giving the same bytes however slow the machine.
import { afterAll, describe, expect, test, vi } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { CompileError } from '../compiler/ir/errors';
import { DEFAULT_LIMITS, type Target } from '../compiler/target/target';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { APPLE_M, BUILTIN_TARGETS, GENERIC, INTEL_XE, NVIDIA_HOPPER, parseTargets } from '../compiler/target/targets';
import { writeBundle } from '../compiler/plan/bundle';
import { readBundle } from '../runtime/bundle';
import type { Manifest } from '../schemas/manifest';
import { loadPlan } from '../runtime/session';
import { chooseTarget, targetManifest, type DeviceDescription } from '../runtime/targets';
import { expectClose } from './close';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

/** y = relu(a · b) for a [128, 1536] and b [1536, 576]: nvidia-hopper splits K, the others do not. */
function product(): Graph {
  const g = new Graph('product');
  g.output('y', g.relu(g.matmul(g.input('a', [128, 1536]), g.input('b', [1536, 576]))));
  return g;
}

const ALL = [GENERIC, NVIDIA_HOPPER, INTEL_XE, APPLE_M];
/** A device with the limits WebGPU adapters commonly offer. */
const device = (info: DeviceDescription['info'], limits: Record<string, number> = {}): DeviceDescription => ({
  info,
  limits: { maxStorageBufferBindingSize: 1 << 30, maxBufferSize: 1 << 30, maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 1024, maxStorageBuffersPerShaderStage: 10, ...limits },
});

describe('the target chosen for an adapter', async () => {
  const { manifest } = await compileGraph(product(), { targets: ALL, weights: 'none' });
  // [label, adapter info as reported, the target expected, why]
  const table: [string, DeviceDescription['info'], string, string][] = [
    ['H100 through dawn.node (Dawn names no architecture for Hopper; the device name does)', { vendor: 'nvidia', architecture: '', device: 'nvidia-h100-80gb-hbm3' }, 'nvidia-hopper', 'matched'],
    ['H200 by its description', { vendor: 'nvidia', architecture: '', description: 'NVIDIA H200' }, 'nvidia-hopper', 'matched'],
    ['an H100 in Chrome (no device name without developer flags)', { vendor: 'nvidia', architecture: '' }, 'generic', 'fallback'],
    ['RTX 4090 (lovelace)', { vendor: 'nvidia', architecture: 'lovelace' }, 'generic', 'fallback'],
    ['Iris Xe (Tiger Lake)', { vendor: 'intel', architecture: 'gen-12lp' }, 'intel-xe', 'matched'],
    ['Meteor Lake', { vendor: 'intel', architecture: 'xe-lpg' }, 'intel-xe', 'matched'],
    ['Apple M2 (Metal)', { vendor: 'apple', architecture: 'metal-3' }, 'apple-m', 'matched'],
    ['Apple M1 on an older Dawn', { vendor: 'apple', architecture: 'common-3' }, 'apple-m', 'matched'],
    ['AMD RDNA 3', { vendor: 'amd', architecture: 'rdna-3' }, 'generic', 'fallback'],
    ['SwiftShader', { vendor: 'google', architecture: 'swiftshader' }, 'generic', 'fallback'],
    ['llvmpipe through Dawn OpenGL', { vendor: '', architecture: '', device: 'llvmpipe-llvm-15-0-6-256-bits-' }, 'generic', 'fallback'],
    ['lavapipe through Dawn Vulkan', { vendor: 'mesa', architecture: 'software' }, 'generic', 'fallback'],
    ['a browser without GPUDevice.adapterInfo', {}, 'generic', 'fallback'],
    ['uppercase vendor', { vendor: 'NVIDIA', architecture: 'HOPPER' }, 'nvidia-hopper', 'matched'],
  ];
  for (const [label, info, name, reason] of table) {
    test(label, () => {
      expect(chooseTarget(manifest, device(info)).chosen).toMatchObject({ name, reason });
    });
  }

  test('without a fallback target, the first target the device can run; none: the one it would be, marked unfit (its load names the limit)', async () => {
    const { manifest: hopperOnly } = await compileGraph(product(), { targets: [NVIDIA_HOPPER], weights: 'none' });
    expect(chooseTarget(hopperOnly, device({ vendor: 'intel' })).chosen).toMatchObject({ name: 'nvidia-hopper', reason: 'fits' });
    // a generic target's plan needs no more than its kernels do: WebGPU's default limits fit it
    const defaults = device({}, { maxStorageBufferBindingSize: 134217728, maxBufferSize: 268435456, maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256, maxStorageBuffersPerShaderStage: 8 });
    expect(chooseTarget(manifest, defaults).chosen).toMatchObject({ name: 'generic', reason: 'fallback' });
    const tiny = device({ vendor: 'nvidia', device: 'h100' }, { maxStorageBufferBindingSize: 1024 });
    expect(chooseTarget(manifest, tiny).chosen).toMatchObject({ name: 'nvidia-hopper', reason: 'unfit' });
  });

  test('a target named by the caller; an unknown name is a PlanError listing the targets', () => {
    expect(chooseTarget(manifest, device({ vendor: 'apple' }), 'intel-xe').chosen).toMatchObject({ name: 'intel-xe', reason: 'asked' });
    expect(() => chooseTarget(manifest, device({}), 'rtx')).toThrow('has no target "rtx" (it has: generic, nvidia-hopper, intel-xe, apple-m)');
  });
});

describe('plans for several targets', () => {
  test('each target its own dispatches; kernels alike between targets stored once; shared sections once', async () => {
    const single = await compileGraph(product(), { targets: [GENERIC], weights: 'none' });
    const multi = await compileGraph(product(), { targets: ALL, weights: 'none' });
    const { manifest } = multi;
    expect([manifest.target.name, ...manifest.otherTargets!.map((t) => t.name)]).toEqual(['generic', 'nvidia-hopper', 'intel-xe', 'apple-m']);
    const dispatches = (i: number) => targetManifest(manifest, i).entryPoints.run.dispatches.map((d) => d.node);
    // generic, intel-xe and apple-m compute the product in one kernel (72 tiles fill their GPUs); nvidia-hopper splits K in 6
    // (the epilogue sums the slices as it reads them)
    expect(dispatches(0)).toEqual(['fusedMatmul_2']);
    expect(dispatches(1)).toEqual(['fusedMatmul_2.partials', 'fusedMatmul_2']);
    expect(dispatches(2)).toEqual(['fusedMatmul_2']);
    // generic's, intel-xe's and apple-m's kernels are alike: three targets, one kernel
    expect(manifest.kernels).toHaveLength(1 + 2);
    const kernelOf = (i: number) => targetManifest(manifest, i).kernels.map((k) => k.variants.map((v) => v.wgsl));
    expect(kernelOf(2)).toEqual(kernelOf(0));
    expect(kernelOf(3)).toEqual(kernelOf(0));
    // the hopper kernels' sections under their own names where they differ
    const sections = manifest.sections.map((s) => s.name);
    expect(new Set(sections).size).toBe(sections.length);
    expect(multi.bundle.length).toBeLessThan(single.bundle.length * 2.5);
  });

  test('every target of the plan computes the graph on this device (each run as asked), against the CPU reference', async () => {
    const g = product();
    const plan = await compileGraph(g, { targets: ALL });
    const u = uniformStream(5);
    const feeds = { a: Float32Array.from({ length: 128 * 1536 }, () => 2 * u() - 1), b: Float32Array.from({ length: 1536 * 576 }, () => 2 * u() - 1) };
    const expected = interpret(g, feeds, new Map()).y;
    const gpu = (await sharedDevice()).device;
    // llvmpipe identifies as no vendor: the fallback target
    const chosen = await loadPlan(plan.bundle, gpu);
    expect(chosen.target).toMatchObject({ name: 'generic', reason: 'fallback' });
    chosen.destroy();
    for (const t of ALL) {
      const session = await loadPlan(plan.bundle, gpu, { target: t.name });
      try {
        expect(session.target.name).toBe(t.name);
        // f32 sums of 1536 products of [-1, 1] values, in another order than float64's
        expectClose((await session.run(feeds)).y, expected, 2e-5 * 40, 1e-4, t.name);
      } finally {
        session.destroy();
      }
    }
  });

  test('the bundle reader checks each target: a bad field names its target', async () => {
    const { bundle } = await compileGraph(product(), { targets: [GENERIC, NVIDIA_HOPPER], weights: 'none' });
    const read = await readBundle(bundle);
    expect(read.manifest.otherTargets?.[0].entryPoints.run.dispatches).toHaveLength(2);
    const rewrite = (edit: (m: Manifest) => void) => {
      const { sections, ...manifest } = structuredClone(read.manifest);
      edit(manifest as Manifest);
      return readBundle(writeBundle(manifest, sections.map((s) => ({ name: s.name, bytes: read.section(s.name) }))));
    };
    await expect(rewrite((m) => (m.otherTargets![0].entryPoints.run.dispatches[0].kernel = 99))).rejects.toThrow(/otherTargets\[0\]\.entryPoints\.run\.dispatches\[0\]\.kernel \(99\) is out of range/);
    await expect(rewrite((m) => (m.otherTargets![0].name = 'generic'))).rejects.toThrow(/otherTargets\[0\]\.name "generic" is the name of another target/);
    await expect(rewrite((m) => (m.otherTargets![0].match = { vendors: [7 as unknown as string] }))).rejects.toThrow(/otherTargets\[0\]\.match\.vendors\[0\] must be a string/);
  });
});

describe("buffers against a target's limits", () => {
  const tiny: Target = { ...GENERIC, name: 'tiny', limits: { ...DEFAULT_LIMITS, maxStorageBufferBindingSize: 4096, maxBufferSize: 8192 } };
  const compileError = async (compiled: Promise<unknown>): Promise<CompileError> => {
    const error = await compiled.then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(CompileError);
    return error as CompileError;
  };

  test('a tensor above the binding size fails the compile naming it, its shape, its bytes, the limit and the target, at its line', async () => {
    const g = new Graph('wide');
    g.output('y', g.matmul(g.input('x', [2, 64]), g.parameter('w', [64, 32])));
    const error = await compileError(compileGraph(g, { targets: [tiny], weights: 'none' }));
    expect(error.kind).toBe('limit');
    expect(error.message).toBe("parameter 'w' [64, 32] f32 is 8192 bytes, above target 'tiny''s maxStorageBufferBindingSize of 4096 bytes");
    expect(error.loc?.file).toMatch(/targets\.test\.ts$/);
    // the first target that cannot hold it is named, with GiB-sized figures
    const big = new Graph('big');
    big.output('y', big.matmul(big.input('x', [2, 98304]), big.parameter('embed', [98304, 576])));
    const refused = await compileError(compileGraph(big, { targets: [NVIDIA_HOPPER, GENERIC], weights: 'none', optimize: false }));
    expect(refused.message).toBe("parameter 'embed' [98304, 576] f32 is 226492416 bytes (216 MiB), above target 'generic''s maxStorageBufferBindingSize of 134217728 bytes (128 MiB)");
  });

  test("intermediates live together share no arena past the target's maxBufferSize", async () => {
    const g = new Graph('fan');
    const x = g.input('x', [1024]);
    const parts = [1, 2, 3, 4].map((k) => g.exp(g.mul(x, k)));
    g.output('y', g.add(g.add(parts[0], parts[1]), g.add(parts[2], parts[3])));
    const { manifest } = await compileGraph(g, { targets: [tiny], optimize: false });
    expect(manifest.arenas!.byteLengths.length).toBeGreaterThan(1);
    for (const length of manifest.arenas!.byteLengths) expect(length).toBeLessThanOrEqual(8192);
    expect(manifest.requiredLimits.maxBufferSize).toBeLessThanOrEqual(8192);
  });

  test("the generic target holds a 135M-parameter model's embedding (49152 × 576 f32, 113 MB)", async () => {
    const g = new Graph('embedding');
    g.output('y', g.matmul(g.input('x', [2, 49152]), g.parameter('embed', [49152, 576])));
    const { manifest } = await compileGraph(g, { targets: [GENERIC], weights: 'none', optimize: false });
    expect(manifest.requiredLimits.maxStorageBufferBindingSize).toBe(49152 * 576 * 4);
  });
});

describe('target names', () => {
  test('--target lists known names in order; unknown or repeated names are errors naming the known ones', () => {
    expect(parseTargets('nvidia-hopper, generic').map((t) => t.name)).toEqual(['nvidia-hopper', 'generic']);
    expect(() => parseTargets('rtx')).toThrow(`unknown target 'rtx' (known: ${BUILTIN_TARGETS.map((t) => t.name).join(', ')})`);
    expect(() => parseTargets('generic,generic')).toThrow("target 'generic' is named twice");
    expect(() => parseTargets(' , ')).toThrow('--target needs at least one name');
  });
});

describe('reproducible compiles', () => {
  test('a clock running 1000 times slower gives the same bytes: the optimizer stops on iterations and e-nodes, never on time', async () => {
    const build = () => {
      const g = new Graph('block');
      const x = g.input('x', [16, 64]);
      const h = g.gelu(g.biasAdd(g.matmul(x, g.parameter('w1', [64, 128])), g.parameter('b1', [128])));
      const y = g.layerNorm(g.add(g.matmul(h, g.parameter('w2', [128, 64])), x), g.parameter('gamma', [64], { init: 'ones' }), g.parameter('beta', [64]));
      g.output('loss', g.meanAll(g.mul(y, y)));
      return g;
    };
    const compile = () => compileGraph(build(), { seed: 3, targets: [GENERIC, NVIDIA_HOPPER], training: { loss: 'loss', optimizer: { kind: 'adamw', lr: 1e-3 } } });
    const normal = await compile();
    const realNow = performance.now.bind(performance);
    const start = realNow();
    const spy = vi.spyOn(performance, 'now').mockImplementation(() => start + (realNow() - start) * 1000);
    try {
      const slowed = await compile();
      expect(Buffer.from(slowed.bundle).equals(Buffer.from(normal.bundle))).toBe(true);
      expect(slowed.optimization?.kernels.stopReason).not.toBe('time-limit');
    } finally {
      spy.mockRestore();
    }
  });
});
