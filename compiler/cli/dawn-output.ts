// Keeps Dawn's own diagnostics out of the CLI's output. Dawn prints them from native code
// straight to file descriptor 2 ("Warning: Couldn't load Vulkan …", "… artificially reduced
// …"), with no toggle to turn them off and nothing JavaScript can redirect in-process, so a
// command that opens a GPU runs itself again as a child whose stderr passes through
// dawnLineFilter. `--verbose` or MNC_DAWN_VERBOSE=1 skips that and shows everything.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { createInterface } from 'node:readline';

/** Commands that create a WebGPU device. */
const GPU_COMMANDS = ['run', 'train'];
/** Set in the child, so it runs the command itself. */
const FILTERED = 'MNC_DAWN_FILTERED';

/** Whether `argv` (process.argv) should run as a filtered child: a GPU command, not verbose, not already the child. */
export function wantsDawnFilter(argv: string[], env: NodeJS.ProcessEnv = process.env): boolean {
  const args = argv.slice(2);
  return GPU_COMMANDS.includes(args[0]) && !args.includes('--verbose') && env.MNC_DAWN_VERBOSE !== '1' && env[FILTERED] !== '1';
}

/**
 * A line filter dropping Dawn's log lines: `Warning: …` (Dawn's LogMessage prefix at the
 * start of a line; Node's own warnings start with "(node:"), the `    at …` source lines that
 * follow one, and the blank line that closes such a block. Everything else passes.
 */
export function dawnLineFilter(): (line: string) => boolean {
  let inBlock = false;
  return (line) => {
    if (line.startsWith('Warning: ')) return (inBlock = true), false;
    if (inBlock && /^\s+at /.test(line)) return false;
    if (inBlock && line === '') return (inBlock = false), false;
    inBlock = false;
    return true;
  };
}

/** Runs this CLI again with `argv` as a child whose stderr is filtered; resolves to its exit code. */
export function runWithDawnFiltered(argv: string[]): Promise<number> {
  const child = spawn(process.execPath, [...process.execArgv, ...argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'pipe'],
    env: { ...process.env, [FILTERED]: '1' },
  });
  const keep = dawnLineFilter();
  createInterface({ input: child.stderr!, crlfDelay: Infinity }).on('line', (line) => {
    if (keep(line)) process.stderr.write(`${line}\n`);
  });
  // passed on, so the child ends as it would have alone (a terminal's Ctrl-C reaches both anyway)
  const forward = (signal: NodeJS.Signals) => () => void child.kill(signal);
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((signal) => [signal, forward(signal)] as const);
  for (const [signal, handler] of handlers) process.on(signal, handler);
  return new Promise((resolve) => {
    child.on('error', (error) => {
      process.stderr.write(`mnc: could not start the GPU command: ${error.message}\n`);
      resolve(1);
    });
    child.on('close', (code, signal) => {
      for (const [name, handler] of handlers) process.off(name, handler);
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}
