// The compiler's own guarantees, without a GPU: byte-identical plans for the same model and
// seed, manifests that satisfy schemas/mnplan.schema.json, a naga translation for every
// target, and naga's formatted report (with the op) when a generated module is invalid;
// validation on worker threads gives the same translations and errors as in this thread,
// and each distinct source is given to naga once.
import Ajv from 'ajv';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { GENERIC } from '../compiler/target/targets';
import { compileGraph, compileGraphToFile } from '../compiler/compile';
import { CompileError } from '../compiler/ir/errors';
import { Graph } from '../compiler/ir/graph';
import { lowerGraph, type LoweredKernel } from '../compiler/lower';
import type { NagaJob } from '../compiler/validate/job-queue';
import { validateKernels, type KernelToValidate } from '../compiler/validate/kernels';
import { validateKernel } from '../compiler/validate/naga';
import { runNagaJobs } from '../compiler/validate/naga-pool';
import { nagaSource, translateWgsl } from '../compiler/validate/translate';
import { readBundle } from '../runtime/bundle';

const schema = JSON.parse(readFileSync(new URL('../schemas/mnplan.schema.json', import.meta.url), 'utf8'));
const validateManifest = new Ajv({ allErrors: true }).compile(schema);

/** A graph touching every archetype: matmul, pointwise with broadcast, axis, layout, piecewise. */
function sampleGraph(): Graph {
  const g = new Graph('sample');
  const x = g.input('x', [6, 20]);
  const w = g.parameter('w', [20, 12]);
  const b = g.parameter('b', [12], { init: { normal: 0.1 } });
  const h = g.gelu(g.biasAdd(g.matmul(x, w), b));
  const n = g.layerNorm(h, g.parameter('gamma', [12], { init: 'ones' }), g.parameter('beta', [12]));
  const t = g.concat([g.transpose(n), g.reshape(g.mean(h, 0, { keepDims: true }), [12, 1])], 1);
  g.output('probs', g.softmax(n));
  g.output('stats', t);
  g.output('scaled', g.mul(x, 0.5));
  return g;
}

describe('compileGraph', () => {
  test('the same model and seed give byte-identical plans; another seed changes only weights', async () => {
    const a = await compileGraph(sampleGraph(), { seed: 3 });
    const b = await compileGraph(sampleGraph(), { seed: 3 });
    expect(Buffer.from(a.bundle).equals(Buffer.from(b.bundle))).toBe(true);
    const c = await compileGraph(sampleGraph(), { seed: 4 });
    expect(Buffer.from(a.bundle).equals(Buffer.from(c.bundle))).toBe(false);
    const shaders = (m: typeof a.manifest) => m.sections.filter((s) => s.name.startsWith('kernels/')).map((s) => s.sha256);
    expect(shaders(c.manifest)).toEqual(shaders(a.manifest));
  });

  test('written manifests satisfy mnplan.schema.json and read back', async () => {
    const plan = await compileGraph(sampleGraph(), { source: 'test/compile.test.ts#sample' });
    const ok = validateManifest(plan.manifest);
    expect(validateManifest.errors ?? [], JSON.stringify(validateManifest.errors)).toEqual([]);
    expect(ok).toBe(true);
    const read = await readBundle(plan.bundle);
    expect(read.manifest).toEqual(plan.manifest);
  });

  test('every kernel carries its WGSL and naga SPIR-V, MSL and HLSL translations', async () => {
    const plan = await compileGraph(sampleGraph());
    const read = await readBundle(plan.bundle);
    expect(plan.manifest.kernels.length).toBeGreaterThanOrEqual(6);
    for (const kernel of plan.manifest.kernels) {
      const [variant] = kernel.variants;
      expect(read.text(variant.wgsl)).toContain(`// mnc kernel ${kernel.name}`);
      const spirv = read.section(variant.translations.spirv!);
      expect(new DataView(spirv.buffer, spirv.byteOffset).getUint32(0, true)).toBe(0x07230203); // SPIR-V magic
      expect(read.text(variant.translations.msl!)).toContain('kernel void');
      expect(read.text(variant.translations.hlsl!)).toContain('[numthreads(');
    }
  });

  test('a generated module naga refuses fails the compile with its report and the op', () => {
    const g = new Graph('broken');
    g.output('y', g.relu(g.input('x', [4])));
    const [step] = lowerGraph(g, GENERIC).steps;
    const broken = { ...step.kernel, wgsl: step.kernel.wgsl.replace('max(x0, 0.0)', 'max(x0, 0u)') };
    let error: unknown;
    try {
      validateKernel(broken, { op: 'relu', node: 'relu_1' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CompileError);
    const e = error as CompileError;
    expect(e.kind).toBe('validation');
    expect(e.op).toBe('relu');
    expect(e.message).toContain("relu node 'relu_1'");
    expect(e.format()).toMatch(/relu_4\.wgsl:\d+:\d+/); // naga's report, pointing into the kernel
  });
});

/** The sample graph's kernels, each with the node it was generated for. */
function sampleKernels(): KernelToValidate[] {
  const g = sampleGraph();
  return lowerGraph(g, GENERIC).steps.map((s) => ({ kernel: s.kernel, origin: { op: g.nodes[s.node].op, node: g.nodes[s.node].name } }));
}

/** A relu kernel naga refuses (a u32 where an f32 belongs), named `name`. */
function brokenKernel(name: string): LoweredKernel {
  const g = new Graph('broken');
  g.output('y', g.relu(g.input('x', [4])));
  const [step] = lowerGraph(g, GENERIC).steps;
  return { ...step.kernel, name, wgsl: step.kernel.wgsl.replace('max(x0, 0.0)', 'max(x0, 0u)') };
}

async function refusal(work: () => Promise<unknown>): Promise<CompileError> {
  try {
    await work();
  } catch (e) {
    expect(e).toBeInstanceOf(CompileError);
    return e as CompileError;
  }
  throw new Error('expected a CompileError');
}

describe('compileGraphToFile', () => {
  test('writes the bytes compileGraph returns, drawing each parameter only when the writer reaches it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mnc-compile-'));
    try {
      const file = join(dir, 'sample.mnplan');
      const written = await compileGraphToFile(sampleGraph(), file, { seed: 4, validationThreads: 1 });
      const inMemory = await compileGraph(sampleGraph(), { seed: 4, validationThreads: 1 });
      expect(new Uint8Array(readFileSync(file))).toEqual(inMemory.bundle);
      expect(written.byteLength).toBe(inMemory.bundle.length);
      expect(written.manifest).toEqual(inMemory.manifest);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('validateKernels', () => {
  test('worker threads give the translations this thread gives, byte for byte, and the same plan', async () => {
    const jobs: NagaJob[] = sampleKernels().map(({ kernel }, first) => ({ source: nagaSource(kernel.wgsl), first }));
    const run = await runNagaJobs(jobs, 2, { here: false });
    expect(run.byWorkers).toBe(jobs.length);
    for (const [j, { source }] of jobs.entries()) {
      const here = translateWgsl(source);
      const there = run.results[j]!;
      if (!('translations' in here) || !('translations' in there)) throw new Error(`job ${j} refused`);
      expect(Buffer.from(there.translations.spirv).equals(Buffer.from(here.translations.spirv))).toBe(true);
      expect(there.translations.msl).toBe(here.translations.msl);
      expect(there.translations.hlsl).toBe(here.translations.hlsl);
    }
    const inThread = await compileGraph(sampleGraph(), { seed: 3, validationThreads: 1 });
    const threaded = await compileGraph(sampleGraph(), { seed: 3, validationThreads: 3 });
    expect(Buffer.from(threaded.bundle).equals(Buffer.from(inThread.bundle))).toBe(true);
  });

  test('identical sources go to naga once and share their translations', async () => {
    const [{ kernel, origin }] = sampleKernels();
    const twin: LoweredKernel = { ...kernel, name: `${kernel.name}_twin` };
    const withVariant: LoweredKernel = {
      ...kernel,
      name: `${kernel.name}_v`,
      wgsl: `${kernel.wgsl}\n// another module`,
      variants: [{ tag: 'same', features: [], wgsl: kernel.wgsl, workgroupSize: kernel.workgroupSize, workgroupBytes: kernel.workgroupBytes }],
    };
    // the same kernel object twice counts once
    const result = await validateKernels([kernel, twin, withVariant, kernel].map((k) => ({ kernel: k, origin })));
    expect(result.modules).toBe(4);
    expect(result.distinct).toBe(2);
    const first = result.validated.get(kernel)!.translations;
    expect(result.validated.get(twin)!.translations).toBe(first);
    expect(result.validated.get(withVariant)!.variants[0]).toBe(first);
    expect(result.validated.get(withVariant)!.translations).not.toBe(first);
  });

  test("a refused module fails with naga's report naming the first refused kernel, on any number of threads", async () => {
    const kernels = sampleKernels();
    const origin = { op: 'relu', node: 'relu_1' };
    const alone = await refusal(async () => validateKernel(brokenKernel('relu_4'), origin));
    expect(alone.format()).toMatch(/relu_4\.wgsl:\d+:\d+/);
    for (const threads of [1, 3]) {
      const inList = [...kernels.slice(0, 2), { kernel: brokenKernel('relu_4'), origin }, ...kernels.slice(2), { kernel: brokenKernel('relu_9'), origin: { op: 'relu', node: 'relu_2' } }];
      const e = await refusal(() => validateKernels(inList, { threads }));
      expect(e.kind).toBe('validation');
      expect(e.op).toBe('relu');
      expect(e.format()).toBe(alone.format());
    }
  });
});
