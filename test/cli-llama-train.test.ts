// `mnc train` on a Llama training plan (fixtures/models/llama-train-tiny.ts) as users run it
// (the bundled CLI in a subprocess): a seeded checkpoint through --weights, token datasets
// shaped [samples, sequence] from .npy and JSON, one sequence per step, the loss falling; an id
// outside the vocabulary fails before training, naming file, sample, position and value.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeNpy } from '../compiler/cli/npy';
import { uniformStream } from '../compiler/ir/init';
import { llamaShape } from '../models/llama';
import { LLAMA_TRAIN_CONFIG } from '../fixtures/models/llama-train-tiny';
import { encodeSafetensors } from '../runtime/safetensors';
import { cliRunner, diagnostics, expectFailure } from './cli-runner';
import { asSafetensors, randomCheckpoint, referenceLoss } from './llama-reference';

const root = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'mnc-llama-train-'));
const out = (name: string) => join(work, name);
const plan = out('llama-train.mnplan');
// a bundle of this suite's own (test/cli.test.ts rewrites dist/mnc.mjs while it runs)
const cli = join(root, 'dist', 'test-cli-llama-train', 'mnc.mjs');
const mnc = cliRunner(cli, root);

const s = llamaShape(LLAMA_TRAIN_CONFIG);
const weights = randomCheckpoint(s, 7);
const SAMPLES = 8;
const SEQUENCE = 12;
const random = uniformStream(3);
const tokens = Int32Array.from({ length: SAMPLES * SEQUENCE }, () => Math.floor(random() * s.vocab));
const rows = Array.from({ length: SAMPLES }, (_, i) => Array.from(tokens.subarray(i * SEQUENCE, (i + 1) * SEQUENCE)));

/** `epoch k/n: loss L (…)` lines → the losses. */
const epochLosses = (stdout: string) => [...stdout.matchAll(/^epoch \d+\/\d+: loss ([\d.]+) \(mean of \d+ steps\)/gm)].map((m) => Number(m[1]));

beforeAll(async () => {
  await build({ absWorkingDir: root, entryPoints: ['compiler/cli/mnc.ts'], outfile: cli, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning' });
  execFileSync(process.execPath, [cli, 'compile', 'fixtures/models/llama-train-tiny.ts', '-o', plan], { cwd: root, stdio: 'pipe' });
  writeFileSync(out('model.safetensors'), encodeSafetensors(asSafetensors(weights)));
  writeFileSync(out('tokens.npy'), writeNpy(tokens, [SAMPLES, SEQUENCE]));
  writeFileSync(out('tokens.json'), JSON.stringify(rows));
}, 180_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('mnc train on a Llama plan with token datasets', () => {
  it('trains from the checkpoint on [samples, sequence] token ids: one sequence a step, the loss falling', () => {
    const r = mnc('train', plan, '--weights', out('model.safetensors'), '--data', `tokens=${out('tokens.npy')}`, '--epochs', '3', '--shuffle-seed', '1');
    expect(diagnostics(r)).toEqual([]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`${out('model.safetensors')}: loaded ${weights.size} parameter(s)`);
    expect(r.stdout).toMatch(/training 'llamaTrainTiny' .*adamw lr 0\.001: 8 samples, batch 1, 8 steps per epoch$/m);
    const losses = epochLosses(r.stdout);
    expect(losses).toHaveLength(3);
    // the first epoch's mean starts from the checkpoint's loss (the reference's, per sequence) and falls from there
    const start = rows.reduce((sum, row) => sum + referenceLoss(s, weights, row), 0) / SAMPLES;
    expect(losses[0]).toBeLessThan(start);
    expect(losses[0]).toBeGreaterThan(0.5 * start);
    expect(losses[1]).toBeLessThan(losses[0]);
    expect(losses[2]).toBeLessThan(losses[1]);
  }, 180_000);

  it('reads the same ids from JSON (nested arrays, one per sample)', () => {
    const r = mnc('train', plan, '--weights', out('model.safetensors'), '--data', `tokens=${out('tokens.json')}`, '--steps', '4');
    expect(diagnostics(r)).toEqual([]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/8 samples, batch 1, 8 steps per epoch$/m);
    expect(r.stdout).toMatch(/^trained 4 steps of 1 samples in 1 epoch: final loss [\d.]+/m);
  }, 180_000);

  it('refuses an id outside the vocabulary, and sequences of another length', () => {
    const bad = Int32Array.from(tokens, (t, i) => (i === 5 * SEQUENCE + 7 ? s.vocab : t));
    writeFileSync(out('bad.npy'), writeNpy(bad, [SAMPLES, SEQUENCE]));
    expectFailure(mnc('train', plan, '--data', `tokens=${out('bad.npy')}`), [
      `error: dataset 'tokens' (${out('bad.npy')}) holds 300 (sample 5, position 7); input 'tokens' i32[12] takes indices from 0 to 299 (the size of the oneHot or embedding it indexes)`,
    ]);
    writeFileSync(out('short.json'), JSON.stringify(rows.map((row) => row.slice(0, 10))));
    expectFailure(mnc('train', plan, '--data', `tokens=${out('short.json')}`), [
      `error: dataset 'tokens' (${out('short.json')}) has shape [8, 10], 10 values per sample; input 'tokens' i32[12] needs 1 per sample ([]), or samples of its whole shape ([samples, 12], one a step)`,
    ]);
  });
});
