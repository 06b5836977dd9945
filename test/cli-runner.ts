// Running a built mnc CLI as a subprocess, for the CLI suites: its exit status and output,
// with Dawn's own stderr warnings filtered out of the diagnostics a test compares.
import { spawnSync } from 'node:child_process';
import { expect } from 'vitest';

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** A function running `node <cli> ...args` in `cwd`. */
export function cliRunner(cli: string, cwd: string): (...args: string[]) => CliResult {
  return (...args) => {
    const r = spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8', env: { ...process.env, MNC_DEBUG: '' } });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
}

/** stderr without Dawn's own warnings (adapter limits, a missing Vulkan loader). */
export function diagnostics(r: CliResult): string[] {
  return r.stderr.split('\n').filter((l) => l !== '' && !/^(Warning: |\s+at operator\(\))/.test(l));
}

export function expectFailure(r: CliResult, lines: string[]): void {
  expect(diagnostics(r)).toEqual(lines);
  expect(r.status).toBe(1);
}
