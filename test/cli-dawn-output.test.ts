// Dawn's own diagnostics stay out of the CLI's output (issue 17, item 8): `mnc run` on this
// machine (no Vulkan loader, llvmpipe's limits above Dawn's) prints neither "Couldn't load
// Vulkan" nor "artificially reduced" unless asked with --verbose or MNC_DAWN_VERBOSE=1.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dawnLineFilter } from '../compiler/cli/dawn-output';
import { handPlan } from './hand-plan';

const root = resolve(import.meta.dirname, '..');
const DAWN = [/Couldn't load Vulkan/, /BackendVk\.cpp/, /artificially reduced/];
let plan: string;

beforeAll(() => {
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'pipe' });
  plan = join(mkdtempSync(join(tmpdir(), 'mnc-dawn-output-')), 'hand.mnplan');
  writeFileSync(plan, handPlan());
});

function mnc(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [join(root, 'dist', 'mnc.mjs'), ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, EGL_PLATFORM: 'surfaceless', MNC_DAWN_VERBOSE: '', MNC_DAWN_FILTERED: '', ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("Dawn's diagnostics", () => {
  it('are dropped by the line filter, with the lines that belong to them, and nothing else is', () => {
    const keep = dawnLineFilter();
    const lines = [
      "Warning: Couldn't load Vulkan: libvulkan.so.1: cannot open shared object file: No such file or directory",
      '    at operator() (/dawn/src/dawn/native/vulkan/BackendVk.cpp:368)',
      '',
      'Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 90 to 16 to fit dynamic offset allocation limit.',
      'error: plan "x": something the user must see',
      '',
      '(node:123) Warning: a warning of Node itself',
      '    at a stack line of an error',
    ];
    expect(lines.filter(keep)).toEqual(lines.slice(4));
  });

  it('stay out of `mnc run`', () => {
    const r = mnc(['run', plan, '--random']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("ran 'hand-plan'");
    for (const pattern of DAWN) expect(r.stderr).not.toMatch(pattern);
  });

  it('show with --verbose or MNC_DAWN_VERBOSE=1', () => {
    for (const r of [mnc(['run', plan, '--random', '--verbose']), mnc(['run', plan, '--random'], { MNC_DAWN_VERBOSE: '1' })]) {
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/artificially reduced/);
    }
  });

  it("let the command's own errors through, with its exit status", () => {
    const r = mnc(['run', join(root, 'no-such.mnplan')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('no-such.mnplan');
    expect(r.stderr).toContain('error:');
  });
});
