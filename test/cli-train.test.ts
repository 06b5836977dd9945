// `mnc train` as users run it (the bundled CLI in a subprocess) on a tiny training plan
// (fixtures/models/tiny-train.ts) with synthetic, linearly separable data: the printed loss
// falls, --save writes the plan's parameters and optimizer state, --load resumes from them,
// .npy, safetensors and gzipped IDX datasets all feed it, and bad data fails in one line.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readIdx, writeIdx } from '../compiler/cli/idx';
import { formatBytes } from '../compiler/cli/inspect';
import { writeNpy } from '../compiler/cli/npy';
import { uniformStream } from '../compiler/ir/init';
import { decodeSafetensors, encodeSafetensors } from '../runtime/safetensors';
import type { Manifest } from '../schemas/manifest';
import { cliRunner, diagnostics, expectFailure } from './cli-runner';

const root = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'mnc-train-'));
const out = (name: string) => join(work, name);
const plan = out('tiny.mnplan');
// The CLI as scripts/build.mjs bundles it, into a file of this suite's own: test/cli.test.ts
// rebuilds dist/mnc.mjs while running it, and a file being rewritten must not be run here.
const cli = join(root, 'dist', 'test-cli-train', 'mnc.mjs');

const mnc = cliRunner(cli, root);

/** `epoch k/n: loss L (…)` lines → the losses. */
const epochLosses = (stdout: string) => [...stdout.matchAll(/^epoch \d+\/\d+: loss ([\d.]+) \(mean of \d+ steps(?:, \d+ skipped)?\)/gm)].map((m) => Number(m[1]));

// 203 samples of 4 features; the label is the argmax of a fixed linear map, so a linear model can learn it
const SAMPLES = 203;
const random = uniformStream(11);
const x = Float32Array.from({ length: SAMPLES * 4 }, () => random() * 2 - 1);
const truth = [
  [2, -1, 0],
  [-1, 2, 0.5],
  [0.5, 0, -2],
  [1, 1, 1],
];
const labels = Int32Array.from({ length: SAMPLES }, (_, s) => {
  const scores = [0, 1, 2].map((c) => truth.reduce((sum, row, k) => sum + x[s * 4 + k] * row[c], 0));
  return scores.indexOf(Math.max(...scores));
});
const f32Bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

beforeAll(async () => {
  await build({ absWorkingDir: root, entryPoints: ['compiler/cli/mnc.ts'], outfile: cli, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning' });
  execFileSync(process.execPath, [cli, 'compile', 'fixtures/models/tiny-train.ts', '-o', plan], { cwd: root, stdio: 'pipe' });
  writeFileSync(out('x.npy'), writeNpy(x, [SAMPLES, 4]));
  writeFileSync(out('labels.npy'), writeNpy(Float32Array.from(labels), [SAMPLES]));
  writeFileSync(out('x.safetensors'), encodeSafetensors(new Map([['x', { dtype: 'F32', shape: [SAMPLES, 4], data: f32Bytes(x) }]])));
  writeFileSync(out('labels-idx1-ubyte.gz'), gzipSync(writeIdx('u8', labels, [SAMPLES])));
}, 120_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('mnc train on a tiny plan', () => {
  let firstRunLoss = 0;

  it('trains from .npy datasets: the loss falls epoch by epoch, and --save writes the training state', () => {
    const r = mnc('train', plan, '--data', `x=${out('x.npy')}`, '--data', `labels=${out('labels.npy')}`, '--epochs', '3', '--log-every', '10', '--save', out('state.safetensors'));
    expect(diagnostics(r)).toEqual([]);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(
      /tiny\.mnplan: training 'tinyTrain' \(target generic\) on \w+ \(.*\), adam lr 0\.05: 203 samples, batch 8, 25 steps per epoch \(the last 3 samples of each shuffled epoch dropped\)$/,
    );
    expect(r.stdout).toMatch(/^epoch 1\/3 step 10\/25: loss [\d.]+ \(running mean\), \d+ samples\/s$/m);
    const losses = epochLosses(r.stdout);
    expect(losses).toHaveLength(3);
    expect(losses[0]).toBeLessThan(1.2); // ln 3 ≈ 1.1 at the start
    expect(losses[2]).toBeLessThan(0.6 * losses[0]);
    firstRunLoss = losses[0];
    expect(r.stdout).toMatch(/^trained 75 steps of 8 samples in 3 epochs: final loss ([\d.]+) \(mean over the last epoch\), [\d.]+ s, \d+ samples\/s$/m);
    expect(lines[lines.length - 1]).toBe(`wrote ${out('state.safetensors')} (7 tensors, ${formatBytes(readFileSync(out('state.safetensors')).length)})`);

    // the file holds each parameter and its Adam moments, shaped as the plan's buffers
    const manifest = JSON.parse(mnc('inspect', plan, '--json').stdout) as Manifest;
    const saved = decodeSafetensors(readFileSync(out('state.safetensors')));
    const expected = manifest.training!.parameters.flatMap((p) => [p.name, ...p.state.map((s) => s.name)]);
    expect([...saved.tensors.keys()].sort()).toEqual([...expected].sort());
    expect(expected).toEqual(['w', 'optimizer.w.exp_avg', 'optimizer.w.exp_avg_sq', 'b', 'optimizer.b.exp_avg', 'optimizer.b.exp_avg_sq', 'temperature']);
    for (const p of manifest.training!.parameters) {
      const shape = manifest.buffers[p.buffer].shape;
      expect(saved.tensors.get(p.name)).toMatchObject({ dtype: 'F32', shape });
      for (const s of p.state) expect(saved.tensors.get(s.name)).toMatchObject({ dtype: 'F32', shape });
    }
    const temperature = saved.tensors.get('temperature')!.data;
    expect(Array.from(new Float32Array(Uint8Array.from(temperature).buffer))).toEqual([1, 1, 1]); // frozen: never updated
    expect(saved.metadata).toMatchObject({ format: 'mnplan-training-state', model: 'tinyTrain', optimizer: 'adam', step: '75' });
  });

  it('--load resumes from the saved state, here with safetensors and gzipped IDX datasets, --steps and --lr', () => {
    const r = mnc(
      'train',
      plan,
      '--data',
      `x=${out('x.safetensors')}`,
      '--data',
      `labels=${out('labels-idx1-ubyte.gz')}`,
      '--load',
      out('state.safetensors'),
      '--steps',
      '10',
      '--lr',
      '0.01',
      '--shuffle-seed',
      '5',
    );
    expect(diagnostics(r)).toEqual([]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/adam lr 0\.01: 203 samples/);
    expect(r.stdout).toContain(`loaded ${out('state.safetensors')} (optimizer state at step 75)`);
    expect(r.stdout).toMatch(/^trained 10 steps of 8 samples in 1 epoch: final loss [\d.]+/m);
    const [resumed] = epochLosses(r.stdout);
    expect(resumed).toBeLessThan(0.6 * firstRunLoss); // starts trained, not from the initial weights
  });

  it('inspect prints the training section', () => {
    const text = mnc('inspect', plan).stdout;
    expect(text).toMatch(/^training: adam, minimising output 'loss' of 'train_step' \(\d+ dispatches per step\)$/m);
    expect(text).toContain('  hyper-parameters (settable at run time): lr 0.05, beta1 0.9, beta2 0.999, eps 1e-8, weightDecay 0');
    expect(text).toContain('  parameters: 2 trainable, 1 frozen');
    expect(text).toMatch(/^ {4}w\s+f32\[4, 3\]\s+buffer \d+\s+trainable\s+exp_avg \(buffer \d+\), exp_avg_sq \(buffer \d+\)$/m);
    expect(text).toMatch(/^ {4}temperature\s+f32\[3\]\s+buffer \d+\s+frozen\s+-$/m);
  });
});

describe('mnc train errors: one plain line each, exit code 1, before a device is opened', () => {
  const data = (name: string, file: string) => ['--data', `${name}=${out(file)}`];
  const both = [...data('x', 'x.npy'), ...data('labels', 'labels.npy')];

  it('a plan compiled without training', () => {
    execFileSync(process.execPath, [cli, 'compile', 'fixtures/models/tiny-train.ts', '--inference', '-o', out('inference.mnplan')], { cwd: root, stdio: 'pipe' });
    expectFailure(mnc('train', out('inference.mnplan'), ...both), [
      `${out('inference.mnplan')}: error: plan 'tinyTrain' was not compiled for training (it has no train_step entry); compile it with a loss: mnc compile --loss OUTPUT, or a model \`train\` option`,
    ]);
  });

  it('datasets that name no input, or leave one without data', () => {
    expectFailure(mnc('train', plan, ...both, ...data('y', 'x.npy')), [
      `error: the training step has no input 'y' (given by --data y=${out('x.npy')}); its inputs are 'x' f32[8, 4], 'labels' i32[8]`,
    ]);
    expectFailure(mnc('train', plan, ...data('x', 'x.npy')), ["error: no dataset for input 'labels' i32[8]; give --data labels=FILE"]);
    expectFailure(mnc('train', plan, ...both, ...data('x', 'x.safetensors')), [`error: --data gives 'x' twice (${out('x.npy')} and ${out('x.safetensors')})`]);
  });

  it('datasets that differ in sample count or do not fit the input', () => {
    writeFileSync(out('labels-200.npy'), writeNpy(Float32Array.from(labels.subarray(0, 200)), [200]));
    expectFailure(mnc('train', plan, ...data('x', 'x.npy'), ...data('labels', 'labels-200.npy')), [
      `error: datasets differ in sample count: 'x' (${out('x.npy')}) has 203, 'labels' (${out('labels-200.npy')}) has 200`,
    ]);
    writeFileSync(out('x5.npy'), writeNpy(new Float32Array(SAMPLES * 5), [SAMPLES, 5]));
    expectFailure(mnc('train', plan, ...data('x', 'x5.npy'), ...data('labels', 'labels.npy')), [
      `error: dataset 'x' (${out('x5.npy')}) has shape [203, 5], 5 values per sample; input 'x' f32[8, 4] needs 4 per sample ([4])`,
    ]);
    writeFileSync(out('half.npy'), writeNpy(Float32Array.from({ length: SAMPLES }, (_, i) => (i === 7 ? 0.5 : 1)), [SAMPLES]));
    expectFailure(mnc('train', plan, ...data('x', 'x.npy'), ...data('labels', 'half.npy')), [
      `error: dataset 'labels' (${out('half.npy')}) holds 0.5 (sample 7); input 'labels' i32[8] takes integers`,
    ]);
    // labels feed a 3-class cross-entropy: 3 would train on a zero row with loss 0, silently
    writeFileSync(out('label-3.npy'), writeNpy(Float32Array.from(labels, (l, i) => (i === 12 ? 3 : l)), [SAMPLES]));
    expectFailure(mnc('train', plan, ...data('x', 'x.npy'), ...data('labels', 'label-3.npy')), [
      `error: dataset 'labels' (${out('label-3.npy')}) holds 3 (sample 12); input 'labels' i32[8] takes indices from 0 to 2 (the size of the oneHot or embedding it indexes)`,
    ]);
    // one NaN pixel among 812 values would turn the weights to NaN
    writeFileSync(out('x-nan.npy'), writeNpy(Float32Array.from(x, (v, i) => (i === 5 * 4 + 2 ? NaN : v)), [SAMPLES, 4]));
    expectFailure(mnc('train', plan, ...data('x', 'x-nan.npy'), ...data('labels', 'labels.npy')), [
      `error: dataset 'x' (${out('x-nan.npy')}) holds NaN (sample 5, value 2); training on it would make the weights NaN: remove or fix that sample`,
    ]);
    writeFileSync(out('fours.npy'), writeNpy(new Float32Array(SAMPLES * 4).fill(4), [SAMPLES, 4]));
    expectFailure(mnc('train', plan, ...data('x', 'fours.npy'), ...data('labels', 'labels.npy'), '--scale', 'x=1e38'), [
      `error: dataset 'x' (${out('fours.npy')}) holds 4, which --scale 1e+38 makes 4e+38 (sample 0, value 0); training on it would make the weights NaN: remove or fix that sample`,
    ]);
    writeFileSync(out('few.npy'), writeNpy(new Float32Array(5 * 4), [5, 4]));
    writeFileSync(out('few-labels.npy'), writeNpy(new Float32Array(5), [5]));
    expectFailure(mnc('train', plan, ...data('x', 'few.npy'), ...data('labels', 'few-labels.npy')), ['error: the datasets have 5 samples, fewer than one batch of 8']);
  });

  it('bad files and options', () => {
    const idx = writeIdx('u8', labels, [SAMPLES]);
    writeFileSync(out('cut-idx1-ubyte.gz'), gzipSync(idx.subarray(0, 100)));
    expectFailure(mnc('train', plan, ...data('x', 'x.npy'), ...data('labels', 'cut-idx1-ubyte.gz')), [
      `error: ${out('cut-idx1-ubyte.gz')}: truncated IDX data: u8[203] needs 203 bytes, the file has 92`,
    ]);
    writeFileSync(out('labels.txt'), '1 2 3\n');
    expectFailure(mnc('train', plan, ...data('x', 'x.npy'), ...data('labels', 'labels.txt')), [
      `error: ${out('labels.txt')}: not a dataset this reads: expected a .npy array, an IDX file (as MNIST's *-ubyte files), a .safetensors file or a .json array, each possibly gzipped`,
    ]);
    expectFailure(mnc('train', plan, ...data('x', 'x.safetensors'), ...data('labels', 'x.safetensors')), [
      `error: ${out('x.safetensors')} has no tensor 'labels' (its tensors: 'x'); a safetensors dataset holds a tensor named after the input`,
    ]);
    expectFailure(mnc('train', plan, ...both, '--scale', 'labels=2'), ["error: --scale applies to float inputs; input 'labels' i32[8] takes integers"]);
    expectFailure(mnc('train', plan, ...both, '--scale', 'x=1/abc'), ["error: --scale x=1/abc: '1/abc' is not a number or a fraction such as 1/255"]);
    expectFailure(mnc('train', plan, ...both, '--epochs', '0'), ["error: --epochs expects a positive integer; got '0'"]);
    expectFailure(mnc('train', plan, ...both, '--load', out('absent.safetensors')), [`error: cannot read state file '${out('absent.safetensors')}': no such file`]);
  });
});

describe('steps whose loss or gradients are not finite', () => {
  // exp overflows f32 above 88.7: one sample of finite data makes its batch's loss NaN
  const expPlan = out('exp.mnplan');
  const xOverflow = Float32Array.from(x.subarray(0, 200 * 4), (v, i) => (i === 17 * 4 ? 100 : v));
  beforeAll(() => {
    writeFileSync(
      out('exp.ts'),
      `import { model } from 'mnc';
export const expTrain = model((g) => {
  const x = g.input('x', [8, 4]);
  const labels = g.input('labels', [8], 'i32');
  const logits = g.biasAdd(g.matmul(g.exp(x), g.parameter('w', [4, 3])), g.parameter('b', [3]));
  return { logits, loss: g.crossEntropy(logits, labels) };
}, { train: { loss: 'loss', optimizer: { kind: 'adam', lr: 0.05 } } });
`,
    );
    execFileSync(process.execPath, [cli, 'compile', out('exp.ts'), '-o', expPlan], { cwd: root, stdio: 'pipe' });
    writeFileSync(out('x-overflow.npy'), writeNpy(xOverflow, [200, 4]));
    writeFileSync(out('labels-200.npy'), writeNpy(Float32Array.from(labels.subarray(0, 200)), [200]));
  }, 120_000);
  const data = ['--data', `x=${out('x-overflow.npy')}`, '--data', `labels=${out('labels-200.npy')}`];

  it('stop training, naming the step', () => {
    const r = mnc('train', expPlan, ...data, '--epochs', '2');
    expect(r.status).toBe(1);
    expect(diagnostics(r)).toEqual([
      expect.stringMatching(
        /^error: step (\d+) \(epoch 1\): training step \1 of plan "expTrain": the loss is NaN; the update was not applied \(parameters and optimizer state are unchanged\); training stopped: try a smaller --lr, check the data \(--scale\), or pass --skip-non-finite$/,
      ),
    ]);
  });

  it('--skip-non-finite skips them: one per epoch here, and the parameters stay finite', () => {
    const r = mnc('train', expPlan, ...data, '--epochs', '2', '--skip-non-finite', '--save', out('exp-state.safetensors'));
    expect(diagnostics(r)).toEqual([]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^epoch 1\/2: loss [\d.]+ \(mean of 24 steps, 1 skipped\), /m);
    expect(r.stdout).toContain('skipped 2 steps whose loss or gradients were not finite (no update applied)\n');
    const losses = epochLosses(r.stdout);
    expect(losses).toHaveLength(2);
    for (const loss of losses) expect(Number.isFinite(loss)).toBe(true);
    const saved = decodeSafetensors(readFileSync(out('exp-state.safetensors')));
    expect(saved.metadata.step).toBe('48'); // 2 epochs of 25 batches, less the 2 skipped
    for (const [name, t] of saved.tensors) {
      expect(new Float32Array(Uint8Array.from(t.data).buffer).every(Number.isFinite), name).toBe(true);
    }
  });
});

describe('IDX reader (compiler/cli/idx.ts)', () => {
  it('reads every element type, plain or gzipped, big-endian', () => {
    expect(readIdx(writeIdx('i16', [1, -2, 300, 4, 5, 6], [2, 3]), 'a')).toEqual({ type: 'i16', shape: [2, 3], data: Int16Array.from([1, -2, 300, 4, 5, 6]) });
    expect(readIdx(gzipSync(writeIdx('f32', [0.25, 7], [2, 1])), 'b')).toEqual({ type: 'f32', shape: [2, 1], data: Float32Array.from([0.25, 7]) });
    expect(readIdx(writeIdx('f64', [1.5, -2], [2]), 'c').data).toEqual(Float64Array.from([1.5, -2]));
    expect(readIdx(writeIdx('i8', [-1, 2], [2]), 'd').data).toEqual(Int8Array.from([-1, 2]));
    expect(readIdx(writeIdx('i32', [-70000, 3], [2]), 'e').data).toEqual(Int32Array.from([-70000, 3]));
  });

  it('refuses what is not IDX, naming the file', () => {
    const error = (bytes: number[] | Uint8Array) => {
      try {
        readIdx(Uint8Array.from(bytes), 'f.idx');
      } catch (e) {
        return (e as Error).message;
      }
      return 'no error';
    };
    expect(error([1, 0, 8, 1])).toBe('f.idx: not an IDX file: it starts with 0x01 0x00, not two zero bytes');
    expect(error([0, 0, 7, 1])).toBe('f.idx: not an IDX file: unknown type code 0x07 (expected 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32 or 0x0E f64)');
    expect(error([0, 0, 8, 2, 0, 0])).toBe('f.idx: truncated IDX header: rank 2 needs 12 bytes, the file has 6');
    expect(error([...writeIdx('u8', [1, 2], [2]), 9])).toBe('f.idx: 1 byte after the IDX data of u8[2]; the header does not describe this file');
    expect(error([0x1f, 0x8b, 1, 2, 3])).toMatch(/^f\.idx: not a valid gzip file: /);
  });
});
