// Runaway GPU work (issue 17, item 1). A WebGPU queue cannot be interrupted once it runs, and
// on Dawn's OpenGL backend (llvmpipe) queue.submit() itself holds the thread until the work
// ends, so plans whose grids exceed the dispatch bound are refused before anything is submitted.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { isPlanError, PlanError, readBundle } from '../runtime/index';
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
function runInChild(plan: Uint8Array, limitMs: number) {
  const file = join(mkdtempSync(join(tmpdir(), 'mnc-runaway-')), 'plan.mnplan');
  writeFileSync(file, plan);
  const started = performance.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'runaway-child.ts'), file], {
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
