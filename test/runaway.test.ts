// Runaway GPU work (issue 17, item 1). A WebGPU queue cannot be interrupted once it runs, and
// on Dawn's OpenGL backend (llvmpipe) queue.submit() itself holds the thread until the work
// ends, so: plans whose grids exceed the dispatch bound are refused before anything is
// submitted; run/step take a deadline; a lost device ends the session with a PlanError.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { isPlanError, loadPlan, loadTrainingPlan, PlanError, readBundle, requestNodeDevice } from '../runtime/index';
import { dispatchOverBound } from '../schemas/dispatch-work';
import { N, handPlan } from './hand-plan';
import { editPlan } from './replan';

/** The MLP of examples/mlp.ts: 784 → 128 (ReLU) → 10, batch 4. */
function mlp(): Graph {
  const g = new Graph('mlp');
  const x = g.input('x', [4, 784]);
  const h = g.relu(g.biasAdd(g.matmul(x, g.parameter('w1', [784, 128])), g.parameter('b1', [128])));
  const logits = g.biasAdd(g.matmul(h, g.parameter('w2', [128, 10])), g.parameter('b2', [10]));
  g.output('probs', g.softmax(logits));
  return g;
}

async function rejection(promise: Promise<unknown>): Promise<PlanError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(isPlanError(error), String(error)).toBe(true);
  return error as PlanError;
}

/** Runs runaway-child.ts on a plan in a child process, killed after `limitMs`. */
function runInChild(plan: Uint8Array, limitMs: number, timeoutMs?: number, after?: Uint8Array) {
  const dir = mkdtempSync(join(tmpdir(), 'mnc-runaway-'));
  const file = join(dir, 'plan.mnplan');
  writeFileSync(file, plan);
  if (after) writeFileSync(join(dir, 'after.mnplan'), after);
  const started = performance.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'runaway-child.ts'), file, ...(timeoutMs ? [String(timeoutMs)] : []), ...(after ? [join(dir, 'after.mnplan')] : [])], {
    encoding: 'utf8',
    timeout: limitMs,
    killSignal: 'SIGKILL',
    env: { ...process.env, EGL_PLATFORM: 'surfaceless' },
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return { signal: r.signal, status: r.status, result: line.startsWith('{') ? JSON.parse(line) : undefined, ms: performance.now() - started, stderr: r.stderr };
}

describe('the dispatch bound', () => {
  it('holds for compiled plans (the compiler also checks every plan it writes)', async () => {
    const compiled = await compileGraph(mlp(), { seed: 1 });
    expect(dispatchOverBound(compiled.manifest)).toBeUndefined();
    expect(dispatchOverBound((await readBundle(handPlan())).manifest)).toBeUndefined();
  });

  it('refuses a dispatch of 65535x65535x1 workgroups at read, naming it', async () => {
    const compiled = await compileGraph(mlp(), { seed: 1 });
    const huge = await editPlan(compiled.bundle, (m) => void (m.entryPoints.run.dispatches[0].workgroups = [65535, 65535, 1]));
    const error = await rejection(readBundle(huge));
    expect(error.kind).toBe('bad-manifest');
    expect(error.message).toContain(`dispatch 0 ("${compiled.manifest.entryPoints.run.dispatches[0].node}") of entry "run"`);
    expect(error.message).toContain('65535x65535x1 = 4294836225 workgroups');
    expect(error.message).toContain('largest buffer it binds ("w1")');
  });

  it('ends such a plan with a PlanError in a child process that would otherwise hang until killed', async () => {
    const huge = handPlan(({ manifest }) => void (manifest.entryPoints.run.dispatches[0].workgroups = [65535, 65535, 1]));
    const child = runInChild(huge, 30_000);
    expect(child.signal, `the child hung (killed after ${child.ms.toFixed(0)} ms)`).toBeNull();
    expect(child.result?.kind).toBe('bad-manifest');
    expect(child.result?.message).toContain('dispatch 0 ("t") of entry "run"');
  });

  it('counts every target of a plan', async () => {
    const over = handPlan(({ manifest }) => {
      const { target, requiredLimits, buffers, entryPoints } = structuredClone(manifest);
      entryPoints.run.dispatches[1].workgroups = [N + 1, 1, 1];
      manifest.otherTargets = [{ ...target, name: 'second', requiredLimits, buffers, entryPoints }];
    });
    const error = await rejection(readBundle(over));
    expect(error.message).toContain('dispatch 1 ("y") of entry "run" (target "second") launches 101x1x1 = 101 workgroups');
  });
});

/**
 * The hand plan with scale_add looping before its work, over 8 workgroups (the bound allows
 * 100): endless on a GPU, finite on llvmpipe, which stops an invocation's loops after 65535
 * iterations in all (about 1 s here).
 */
function spinningPlan(): Uint8Array {
  return handPlan(({ manifest, sections }) => {
    manifest.entryPoints.run.dispatches[0].workgroups = [8, 1, 1];
    const section = sections.find((s) => s.name === 'scale_add.wgsl')!;
    const text = new TextDecoder().decode(section.bytes).replace(
      'if (id.x < ',
      `var acc = 0.0;
  var i = 0u;
  loop { i++; acc += a[i % ${N}u]; if (acc > 1e30) { break; } }
  if (acc == 12345.5) { t[0] = acc; }
  if (id.x < `,
    );
    section.bytes = new TextEncoder().encode(text);
  });
}

describe('deadlines and device loss', () => {
  it('a run past timeoutMs rejects with "timeout", leaves the session unusable, and the process goes on and exits cleanly', () => {
    // in a child: on a real GPU this loop never ends (llvmpipe stops it after 65535 iterations);
    // freeing Dawn while the abandoned run's callbacks were pending crashed it at exit about every other time
    for (let round = 0; round < 4; round++) {
      const last = round === 3;
      const child = runInChild(spinningPlan(), 120_000, 20, last ? handPlan() : undefined);
      expect(child.signal, `the child hung or crashed (${child.signal} after ${child.ms.toFixed(0)} ms)\n${child.stderr}`).toBeNull();
      expect(child.status, child.stderr).toBe(0);
      expect(child.result?.kind).toBe('timeout');
      expect(child.result?.message).toContain('entry "run" of plan "hand-plan" did not finish within its 20 ms deadline');
      expect(child.result?.again).toBe('timeout');
      if (last) expect(child.result?.after).toBe('ok');
    }
  });

  it('refuses a timeoutMs that is not a positive number of milliseconds', async () => {
    const gpu = await requestNodeDevice();
    try {
      const session = await loadPlan(handPlan(), gpu.device);
      for (const timeoutMs of [0, -5, Number.NaN, 2 ** 31, '100' as unknown as number]) {
        expect((await rejection(session.run({ a: new Float32Array(N) }, { timeoutMs }))).kind).toBe('bad-input');
      }
      session.destroy();
    } finally {
      await gpu.destroy();
    }
  });

  it('a lost device makes every later call reject with "device-lost"', async () => {
    const gpu = await requestNodeDevice();
    try {
      const session = await loadPlan(handPlan(), gpu.device);
      gpu.device.destroy(); // as a driver reset would
      await gpu.device.lost;
      for (let i = 0; i < 2; i++) {
        const error = await rejection(session.run({ a: new Float32Array(N) }));
        expect(error.kind).toBe('device-lost');
        expect(error.message).toContain('plan "hand-plan": the device was destroyed underneath it');
      }
      session.destroy();
    } finally {
      await gpu.destroy();
    }
  });

  it('step() takes the same deadline', async () => {
    const g = new Graph('trained');
    const y = g.matmul(g.input('x', [4, 8]), g.parameter('w', [8, 2]));
    g.output('loss', g.mean(g.mean(g.mul(y, y), -1), 0));
    const plan = await compileGraph(g, { seed: 1, training: { loss: 'loss', optimizer: { kind: 'sgd', lr: 0.1 } } });
    const gpu = await requestNodeDevice();
    try {
      const trainer = await loadTrainingPlan(plan.bundle, gpu.device);
      const x = Float32Array.from({ length: 32 }, (_, i) => (i % 7) - 3);
      expect(Number.isFinite(await trainer.step({ x }, { timeoutMs: 60_000 }))).toBe(true);
      expect((await rejection(trainer.step({ x }, { timeoutMs: -1 }))).kind).toBe('bad-input');
      trainer.destroy();
    } finally {
      await gpu.destroy();
    }
  });
});
