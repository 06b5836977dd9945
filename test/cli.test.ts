// The `mnc` command line as users run it: the built dist/mnc.mjs in a subprocess. compile →
// inspect → run on examples/mlp.ts (outputs checked against the CPU reference), and the
// plain one-line errors and exit code 1 for broken models, inputs and plan files.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNpy, writeNpy } from '../compiler/cli/npy';
import { loadTypeScriptModel } from '../compiler/frontends/typescript';
import { interpret, materializeParameters } from '../compiler/ir/interpret';
import { JobQueue } from '../compiler/validate/job-queue';
import type { WorkerMessage } from '../compiler/validate/naga-worker';
import { cliRunner, diagnostics, expectFailure } from './cli-runner';
import { handPlan, withManifest } from './hand-plan';

const root = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'mnc-cli-'));
const out = (name: string) => join(work, name);

const mnc = cliRunner(join(root, 'dist', 'mnc.mjs'), root);

beforeAll(() => {
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'pipe' });
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the build', () => {
  it('puts the validation worker beside the CLI, and it runs naga jobs', async () => {
    const source = '@compute @workgroup_size(1) fn main() {}';
    const queue = new JobQueue([{ source, first: 0 }, { source: 'fn broken( {', first: 1 }]);
    const worker = new Worker(join(root, 'dist', 'naga-worker.mjs'), { workerData: { jobs: queue.jobs, shared: queue.shared } });
    const answers: WorkerMessage[] = [];
    worker.on('message', (m: WorkerMessage) => answers.push(m));
    await new Promise((resolve, reject) => worker.once('exit', resolve).once('error', reject));
    expect(answers.map((a) => a.job)).toEqual([0, 1]);
    expect(answers[0].result && 'translations' in answers[0].result && answers[0].result.translations.msl).toContain('kernel void');
    expect(answers[1].result && 'refusal' in answers[1].result && answers[1].result.refusal.stage).toBe('parse');
  });
});

describe('compile → inspect → run (examples/mlp.ts)', () => {
  const plan = out('mlp.mnplan');

  it('compile writes the plan and prints one summary line', () => {
    const r = mnc('compile', 'examples/mlp.ts', '-o', plan, '--seed', '7');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\S+mlp\.mnplan: model 'mlp' for target generic, \d+ kernels, \d+ dispatches, [\d.]+ KiB, compiled in [\d.]+ s\n$/);
    expect(readFileSync(plan).subarray(0, 8)).toEqual(Buffer.from('\x89MNPLAN\n', 'latin1'));
  });

  it('inspect describes model, tensors, kernels, dispatches and buffers', () => {
    const r = mnc('inspect', plan);
    expect(r.status).toBe(0);
    const text = r.stdout;
    expect(text).toContain(`model 'mlp' (from examples/mlp.ts#mlp)`);
    expect(text).toMatch(/inputs:\n {2}x\s+f32\[4, 784\]/);
    expect(text).toMatch(/outputs:\n {2}probs\s+f32\[4, 10\][^\n]*\n {2}logits\s+f32\[4, 10\]/);
    expect(text).toMatch(/kernels \(\d+\):\n\s+#\s+name\s+ops\s+workgroup\s+features\s+wgsl\s+spirv\s+msl\s+hlsl/);
    expect(text).toMatch(/dispatches of 'run' \(\d+\):/);
    expect(text).toMatch(/parameter\s+w1\s+f32\[784, 128\]\s+392\.0 KiB/);
    expect(text).toMatch(/total [\d.]+ KiB: input/);
  });

  it('inspect --json prints the manifest; --wgsl the kernels', () => {
    const manifest = JSON.parse(mnc('inspect', plan, '--json').stdout);
    expect(manifest.model).toEqual({ name: 'mlp', source: 'examples/mlp.ts#mlp' });
    const wgsl = mnc('inspect', plan, '--wgsl').stdout;
    expect(wgsl.match(/^\/\/ ===== kernel \d+:/gm)).toHaveLength(manifest.kernels.length);
    expect(wgsl).toContain('@compute');
  });

  it('run --random prints each output with its shape and a preview', () => {
    const r = mnc('run', plan, '--random', '--seed', '3');
    expect(diagnostics(r)).toEqual([]);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/mlp\.mnplan: ran 'mlp' \(target generic, fallback\) on \w+ \(.*\): load [\d.]+ ms, run [\d.]+ ms$/);
    expect(lines[1]).toMatch(/^probs\s+f32\[4, 10\]\s+\[[-\d.e, …]+\]\s+min \S+\s+max \S+\s+mean 0\.1$/);
    expect(lines[2]).toMatch(/^logits\s+f32\[4, 10\]\s+\[/);
  });

  it('--target: a plan for several GPU classes; inspect lists them, run picks one for the device or the one named; unknown names are errors', () => {
    const multi = out('mlp-targets.mnplan');
    const r = mnc('compile', 'examples/mlp.ts', '-o', multi, '--seed', '7', '--target', 'generic,nvidia-hopper,apple-m');
    expect(diagnostics(r)).toEqual([]);
    expect(r.stdout).toMatch(/model 'mlp' for targets generic, nvidia-hopper, apple-m, \d+ kernels, \d+ dispatches \(generic\)/);
    const text = mnc('inspect', multi).stdout;
    expect(text).toMatch(/targets \(3; [^\n]*\):\n {2}generic: any WebGPU device[^\n]*\n {4}for any adapter \(fallback\); \d+ kernels \(\d+ shared\)/);
    expect(text).toContain('  nvidia-hopper: NVIDIA H100/H200');
    expect(text).toContain("details of target 'generic'");
    expect(mnc('inspect', multi, '--target', 'apple-m').stdout).toContain("details of target 'apple-m'");
    expect(mnc('run', multi, '--random').stdout).toMatch(/ran 'mlp' \(target generic, fallback\)/);
    expect(mnc('run', multi, '--random', '--target', 'nvidia-hopper').stdout).toMatch(/ran 'mlp' \(target nvidia-hopper, asked\)/);
    expectFailure(mnc('compile', 'examples/mlp.ts', '-o', out('x.mnplan'), '--target', 'rtx4090'), [
      "error: unknown target 'rtx4090' (known: generic, nvidia-hopper, intel-xe, apple-m, software)",
    ]);
    expectFailure(mnc('run', multi, '--random', '--target', 'intel-xe'), [`${multi}: error: plan "mlp" has no target "intel-xe" (it has: generic, nvidia-hopper, apple-m)`]);
    expectFailure(mnc('inspect', multi, '--target', 'intel-xe'), [`error: ${multi} has no target 'intel-xe' (it has: generic, nvidia-hopper, apple-m)`]);
  });

  it('run computes what the CPU reference computes, from JSON and .npy inputs, to JSON and .npy outputs', async () => {
    const x = Float32Array.from({ length: 4 * 784 }, (_, i) => Math.sin(i * 0.37));
    const nested = Array.from({ length: 4 }, (_, r) => Array.from(x.subarray(r * 784, (r + 1) * 784)));
    writeFileSync(out('inputs.json'), JSON.stringify({ x: nested }));
    writeFileSync(out('x.npy'), writeNpy(x, [4, 784]));

    const { graph } = await loadTypeScriptModel(join(root, 'examples/mlp.ts'));
    const expected = interpret(graph, { x }, materializeParameters(graph, 7));

    const json = mnc('run', plan, '--inputs', out('inputs.json'), '--out', out('outputs.json'));
    expect(json.status).toBe(0);
    expect(json.stdout).toContain(`wrote ${out('outputs.json')}`);
    const written = JSON.parse(readFileSync(out('outputs.json'), 'utf8')) as Record<string, number[][]>;
    expect(Object.keys(written)).toEqual(['probs', 'logits']);

    const npy = mnc('run', plan, '--input', `x=${out('x.npy')}`, '--out', out('npy'));
    expect(npy.status).toBe(0);
    for (const name of ['probs', 'logits']) {
      const fromNpy = readNpy(readFileSync(join(out('npy'), `${name}.npy`)));
      expect(fromNpy.shape).toEqual([4, 10]);
      const fromJson = written[name].flat();
      for (let i = 0; i < 40; i++) {
        expect(fromNpy.data[i]).toBeCloseTo(expected[name][i], 4);
        expect(fromJson[i]).toBeCloseTo(expected[name][i], 4);
      }
    }
  });
});

describe('the optimizer on the command line', () => {
  it('inspect shows the rules that fired; --no-optimize compiles one kernel per op; --report prints the runner', () => {
    const optimized = out('mnist.mnplan');
    const plain = out('mnist-plain.mnplan');
    expect(mnc('compile', 'examples/mnist/model.ts', '-o', optimized).status).toBe(0);
    expect(mnc('compile', 'examples/mnist/model.ts', '-o', plain, '--no-optimize').status).toBe(0);
    const steps = (file: string) => JSON.parse(mnc('inspect', file, '--json').stdout).entryPoints.train_step.dispatches.length;
    expect(steps(optimized)).toBeLessThan(steps(plain));
    const text = mnc('inspect', optimized).stdout;
    expect(text).toMatch(/optimizer:\n {2}forward: \d+ → \d+ nodes/);
    expect(text).toMatch(/ {2}kernels: \d+ → \d+ nodes \(e-graph \d+ nodes, \d+ classes, saturated after \d+ iterations\), estimated [\d.]+ → [\d.]+ µs/);
    expect(text).toMatch(/rules fired: .*matmul\+bias ×2/);
    expect(mnc('inspect', plain).stdout).not.toContain('optimizer:');

    const report = mnc('compile', 'examples/mnist/model.ts', '-o', optimized, '--report');
    expect(report.status).toBe(0);
    expect(report.stdout).toMatch(/stages \(ms\): frontend \d+, parameters \d+, optimize \d+/);
    expect(report.stdout).toMatch(/optimizer phase 'kernels': \d+ → \d+ nodes/);
    expect(report.stdout).toMatch(/iter\s+nodes\s+classes\s+search ms\s+apply ms\s+rebuild ms\s+matches/);
  });

  it('--no-weights leaves the initial values out: parameters start at zero', () => {
    const light = out('mlp-light.mnplan');
    expect(mnc('compile', 'examples/mlp.ts', '-o', light, '--no-weights').status).toBe(0);
    const manifest = JSON.parse(mnc('inspect', light, '--json').stdout);
    const parameters = manifest.buffers.filter((b: { role: string }) => b.role === 'parameter');
    expect(parameters.length).toBe(4);
    expect(parameters.every((b: { init?: unknown }) => b.init === undefined)).toBe(true);
    expect(manifest.sections.some((s: { name: string }) => s.name === 'weights')).toBe(false);
    const r = mnc('run', light, '--random');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/logits\s+f32\[4, 10\]\s+\[0, 0, 0/);
  });
});

describe('errors: one plain line each, exit code 1', () => {
  it('a shape error names the user line', () => {
    expectFailure(mnc('compile', 'fixtures/models/shape-error.ts', '-o', out('x.mnplan')), [
      'fixtures/models/shape-error.ts:7:15: error: matmul: inner dimensions differ: a is [2, 3] (K = 3) and b is [4, 5] (K = 4)',
    ]);
  });

  it('type errors are all reported', () => {
    expectFailure(mnc('compile', 'fixtures/models/type-error.ts', '-o', out('x.mnplan')), [
      "fixtures/models/type-error.ts:6:9: error: Type 'string' is not assignable to type 'number'. (TS2322)",
      'fixtures/models/type-error.ts:7:25: error: Expected 1 arguments, but got 2. (TS2554)',
    ]);
  });

  it('several models need --model; user exceptions are located', () => {
    expectFailure(mnc('compile', 'fixtures/models/two-models.ts', '-o', out('x.mnplan')), [
      "error: fixtures/models/two-models.ts exports 2 models ('encoder', 'decoder'); choose one with --model NAME",
    ]);
    expectFailure(mnc('compile', 'fixtures/models/throws.ts', '-o', out('x.mnplan')), [
      "fixtures/models/throws.ts:5:25: error: model 'deep' threw while building its graph: unsupported depth 3",
    ]);
  });

  it('compile --model NAME writes NAME.mnplan by default', () => {
    const r = spawnSync(process.execPath, [join(root, 'dist', 'mnc.mjs'), 'compile', join(root, 'fixtures/models/two-models.ts'), '--model', 'encoder'], {
      cwd: work,
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^encoder\.mnplan: model 'encoder'/);
    expect(readFileSync(join(work, 'encoder.mnplan')).length).toBeGreaterThan(64);
  });

  it('a corrupted or truncated plan is refused in one line, not a stack trace', () => {
    const bytes = readFileSync(out('mlp.mnplan'));
    const corrupted = Buffer.from(bytes);
    // a byte inside the weights: sections are at offsets from the data area (header byte 20)
    const manifest = JSON.parse(bytes.subarray(64, 64 + bytes.readUInt32LE(16)).toString('utf8')) as { sections: { name: string; offset: number; length: number }[] };
    const weights = manifest.sections.find((s) => s.name === 'weights')!;
    corrupted[bytes.readUInt32LE(20) + weights.offset + (weights.length >> 1)] ^= 0xff;
    writeFileSync(out('corrupted.mnplan'), corrupted);
    expectFailure(mnc('inspect', out('corrupted.mnplan')), [`${out('corrupted.mnplan')}: error: section "weights" fails its SHA-256 check: the bundle is corrupted`]);
    writeFileSync(out('truncated.mnplan'), bytes.subarray(0, 1000));
    const r = mnc('run', out('truncated.mnplan'), '--random');
    expectFailure(r, [expect.stringMatching(/truncated\.mnplan: error: bundle is 1000 bytes but its header says \d+: the file is truncated/) as unknown as string]);
    expectFailure(mnc('inspect', 'examples/mlp.ts'), ['examples/mlp.ts: error: not a .mnplan bundle: the file does not start with the "\\x89MNPLAN\\n" signature']);
    expectFailure(mnc('inspect', out('absent.mnplan')), [`error: cannot read plan '${out('absent.mnplan')}': no such file`]);
  });

  it('a plan over 2 GiB is refused naming its size and the limit', () => {
    const plan = out('huge.mnplan');
    writeFileSync(plan, '');
    truncateSync(plan, 2 ** 31 + 256); // sparse: no disk used
    try {
      expectFailure(mnc('inspect', plan), [
        `error: cannot read plan '${plan}': it is 2147483904 bytes (2.00 GiB), above the 2147483647 bytes (2 GiB) a plan may have to be read at once; compile the model with --no-weights`,
      ]);
    } finally {
      rmSync(plan);
    }
  });

  it('a failed compile leaves no plan behind', () => {
    expect(mnc('compile', 'fixtures/models/type-error.ts', '-o', out('failed.mnplan')).status).toBe(1);
    expect(readdirSync(work).filter((f) => f.startsWith('failed.mnplan'))).toEqual([]);
  });

  it('hostile plans are refused in one line, never as an internal error (issue 17)', () => {
    const hostile: [string, Uint8Array, string[], string][] = [
      ['optimization.mnplan', withManifest(handPlan(), (m) => ((m as { optimization: unknown }).optimization = 'x')), [], 'invalid manifest: optimization must be an array'],
      ['deep.mnplan', withManifest(handPlan(), (m) => ((m as unknown as { extra: string }).extra = 'DEEP'), (t) => t.replace('"DEEP"', `${'['.repeat(20_000)}${']'.repeat(20_000)}`)), ['--json'], 'manifest nests arrays and objects more than 64 levels deep'],
      ['entry.mnplan', withManifest(handPlan(), (m) => (m.training = { entry: 'constructor', loss: 's', optimizer: 'sgd', hyper: { input: 'a', fields: [], settable: [], defaults: {} }, parameters: [] })), [], 'invalid manifest: training.entry names entry point "constructor", which the manifest does not list'],
    ];
    for (const [name, bytes, flags, message] of hostile) {
      writeFileSync(out(name), bytes);
      expectFailure(mnc('inspect', out(name), ...flags), [`${out(name)}: error: ${message}`]);
    }
    // the loader's budget: 0.000001 GiB (1074 bytes) is less than the plan's 1620 bytes of buffers
    writeFileSync(out('hand.mnplan'), handPlan());
    expectFailure(mnc('run', out('hand.mnplan'), '--random', '--memory-budget', '0.000001'), [
      `${out('hand.mnplan')}: error: plan "hand-plan" (target "generic") needs 1620 bytes of GPU buffers, more than the loader's budget of 1074 bytes; raise LoadOptions.memoryBudget (mnc run/train: --memory-budget) to load it`,
    ]);
    expectFailure(mnc('run', out('hand.mnplan'), '--random', '--memory-budget', 'lots'), ["error: --memory-budget expects a positive number of GiB; got 'lots'"]);
  });

  it('bad inputs are refused before a device is opened', () => {
    const plan = out('mlp.mnplan');
    expectFailure(mnc('run', plan), ["error: no value for input 'x' f32[4, 784]; give --input NAME=FILE, --inputs FILE.json, or --random"]);
    writeFileSync(out('short.json'), JSON.stringify([1, 2, 3]));
    expectFailure(mnc('run', plan, '--input', `x=${out('short.json')}`), [`error: input 'x' (from ${out('short.json')}) has 3 values; its shape [4, 784] needs 3136`]);
    expectFailure(mnc('run', plan, '--input', `y=${out('short.json')}`), [
      `error: the plan has no input 'y' (given by --input y=${out('short.json')}); its inputs are 'x' f32[4, 784]`,
    ]);
    expectFailure(mnc('run', plan, '--random', '--seed', '-1'), ["error: --seed expects an integer from 0 to 4294967295; got '-1'"]);
  });
});

describe('every input dtype from .npy, JSON and --random; integer ranges; non-finite outputs', () => {
  const int8Plan = out('int8.mnplan');
  const labelsPlan = out('tiny-inference.mnplan');
  // a[i, k] and b[k, j] as i8, and their product by hand
  const a = Int8Array.from({ length: 32 }, (_, i) => ((i * 37) % 256) - 128);
  const b = Int8Array.from({ length: 32 }, (_, i) => ((i * 91 + 5) % 19) - 9);
  const product = Array.from({ length: 16 }, (_, ij) => {
    let sum = 0;
    for (let k = 0; k < 8; k++) sum += a[Math.floor(ij / 4) * 8 + k] * b[k * 4 + (ij % 4)];
    return sum;
  });

  beforeAll(() => {
    writeFileSync(out('int8.ts'), "import { model } from 'mnc';\nexport const q = model((g) => ({ c: g.matmulInt8(g.input('a', [4, 8], 'i8'), g.input('b', [8, 4], 'i8')) }));\n");
    execFileSync(process.execPath, ['dist/mnc.mjs', 'compile', out('int8.ts'), '-o', int8Plan], { cwd: root, stdio: 'pipe' });
    execFileSync(process.execPath, ['dist/mnc.mjs', 'compile', 'fixtures/models/tiny-train.ts', '--inference', '-o', labelsPlan], { cwd: root, stdio: 'pipe' });
  }, 120_000);

  it('an i8 plan runs from int8 .npy files, from JSON and with --random', () => {
    writeFileSync(out('a8.npy'), writeNpy(a, [4, 8]));
    writeFileSync(out('b32.npy'), writeNpy(Int32Array.from(b), [8, 4])); // any integer dtype whose values fit
    const fromNpy = mnc('run', int8Plan, '--input', `a=${out('a8.npy')}`, '--input', `b=${out('b32.npy')}`, '--out', out('c.json'));
    expect(diagnostics(fromNpy)).toEqual([]);
    expect(fromNpy.status).toBe(0);
    expect((JSON.parse(readFileSync(out('c.json'), 'utf8')) as { c: number[][] }).c.flat()).toEqual(product);

    writeFileSync(out('ab.json'), JSON.stringify({ a: Array.from(a), b: Array.from(b) }));
    expect(mnc('run', int8Plan, '--inputs', out('ab.json'), '--out', out('c2.json')).status).toBe(0);
    expect((JSON.parse(readFileSync(out('c2.json'), 'utf8')) as { c: number[][] }).c.flat()).toEqual(product);

    const random = mnc('run', int8Plan, '--random');
    expect(diagnostics(random)).toEqual([]);
    expect(random.stdout).toMatch(/^c\s+i32\[4, 4\]\s+\[-?\d+, /m);
  });

  it('integer inputs refuse float files, fractions and values outside the dtype or the index range', () => {
    writeFileSync(out('a-f32.npy'), writeNpy(Float32Array.from(a), [4, 8]));
    expectFailure(mnc('run', int8Plan, '--input', `a=${out('a-f32.npy')}`, '--random'), [
      `error: input 'a' (from ${out('a-f32.npy')}) is float32; the plan's input is i8: save it with an integer dtype (e.g. np.int8)`,
    ]);
    writeFileSync(out('a-big.npy'), writeNpy(Int32Array.from(a, (v, i) => (i === 3 ? 200 : v)), [4, 8]));
    expectFailure(mnc('run', int8Plan, '--input', `a=${out('a-big.npy')}`, '--random'), [
      `error: input 'a' (from ${out('a-big.npy')}, int32) holds 200 at element 3; i8 input 'a' takes integers from -128 to 127`,
    ]);
    writeFileSync(out('a-half.json'), JSON.stringify({ a: Array.from(a, (v, i) => (i === 6 ? 0.5 : v)) }));
    expectFailure(mnc('run', int8Plan, '--inputs', out('a-half.json'), '--random'), [
      `error: input 'a' (from ${out('a-half.json')}) holds 0.5 at element 6; i8 input 'a' takes integers from -128 to 127`,
    ]);

    // tiny-train's labels feed a 3-class cross-entropy: the plan records 0..2
    const manifest = JSON.parse(mnc('inspect', labelsPlan, '--json').stdout) as { entryPoints: Record<string, { inputs: { name: string; range?: object }[] }> };
    expect(manifest.entryPoints.run.inputs.find((i) => i.name === 'labels')!.range).toEqual({ min: 0, max: 2 });
    expect(manifest.entryPoints.run.inputs.find((i) => i.name === 'x')!.range).toBeUndefined();
    writeFileSync(out('labels-3.json'), JSON.stringify({ labels: [0, 1, 2, 3, 0, 1, 2, 0] }));
    expectFailure(mnc('run', labelsPlan, '--inputs', out('labels-3.json'), '--random'), [
      `error: input 'labels' (from ${out('labels-3.json')}) holds 3 at element 3; i32 input 'labels' takes indices from 0 to 2 (the size of the oneHot or embedding it indexes)`,
    ]);
    const random = mnc('run', labelsPlan, '--random');
    expect(diagnostics(random)).toEqual([]);
    expect(random.stdout).toMatch(/^loss\s+f32\[\]\s+\[[\d.]+\]/m); // a finite loss: every random label is a class
  });

  it('outputs holding NaN or Infinity are named on stderr, and JSON output keeps them as strings', () => {
    // inputs near the f32 maximum overflow the first matmul: logits ±Infinity or NaN, probs NaN
    writeFileSync(out('x-huge.npy'), writeNpy(new Float32Array(4 * 784).fill(3e38), [4, 784]));
    const r = mnc('run', out('mlp.mnplan'), '--input', `x=${out('x-huge.npy')}`, '--out', out('huge.json'));
    expect(r.status).toBe(0);
    const warnings = diagnostics(r);
    expect(warnings.find((l) => l.startsWith("warning: output 'probs' holds "))).toMatch(/^warning: output 'probs' holds (\d+ NaN|.*Infinity).* among its 40 values \(the first at element \d+\)$/);
    const written = JSON.parse(readFileSync(out('huge.json'), 'utf8')) as Record<string, unknown[][]>;
    const values = written.probs.flat();
    expect(values.some((v) => v === 'NaN' || v === 'Infinity' || v === '-Infinity')).toBe(true);
    expect(values.every((v) => typeof v === 'number' || ['NaN', 'Infinity', '-Infinity'].includes(v as string))).toBe(true);
  });
});
