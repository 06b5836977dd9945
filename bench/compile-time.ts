// The whole compile as a user runs it: `node bin/mnc.mjs compile <model> --no-weights --report`
// in a child process, from process start to exit, for the SmolLM2-shaped decoder's training
// plan (for the generic target, and for three targets) and for examples/mlp.ts; each stage's
// time (from --report), Node's start-up and the process's CPU time (all threads). No GPU
// involved. Builds dist/ first.
//
//   npx tsx bench/compile-time.ts [--runs 3] [--threads auto,1] [--baseline DIR] [--no-build]
//
// --threads lists the --validation-threads settings to time ('auto' passes none); each case
// runs --runs times, alternating with the others, and prints the median and the best.
// --baseline times another checkout's built CLI (DIR/bin/mnc.mjs, e.g. an older commit from
// `git archive` with node_modules linked and `node scripts/build.mjs` run) in the same rounds,
// with its default threads. A CLI whose --report has no frontend figure gets one derived
// from its 'compiled in' time less the stages.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const RUNS = Number(option('runs', '3'));
const THREADS = option('threads', 'auto,1').split(',');
const BASELINE = option('baseline', '');

interface Case {
  label: string;
  args: string[];
}

const CASES: Case[] = [
  { label: 'smollm2 training', args: ['examples/smollm2/model.ts', '--model', 'smollm2', '--no-weights'] },
  { label: 'smollm2, 3 targets', args: ['examples/smollm2/model.ts', '--model', 'smollm2', '--no-weights', '--target', 'generic,nvidia-hopper,intel-xe'] },
  { label: 'mlp', args: ['examples/mlp.ts', '--no-weights'] },
];

/** One run's figures, in ms: wall, cpu, start-up (before the compile command starts), and --report's stages. */
type Figures = Record<string, number>;

// the child prints its CPU time (every thread's) as it exits
const CPU_PROBE = 'data:text/javascript,process.on("exit",()=>{const u=process.cpuUsage();console.log("cpu-us "+(u.user+u.system))})';

function compileOnce(c: Case, threads: string, out: string, cwd: string): Figures {
  const args = ['--import', CPU_PROBE, 'bin/mnc.mjs', 'compile', ...c.args, '--report', '-o', out];
  if (threads !== 'auto') args.push('--validation-threads', threads);
  const started = performance.now();
  const r = spawnSync(process.execPath, args, { cwd, encoding: 'utf8' });
  const wall = performance.now() - started;
  if (r.status !== 0) throw new Error(`mnc compile ${c.args.join(' ')} failed:\n${r.stderr}`);
  const compiled = /compiled in ([\d.]+) s/.exec(r.stdout);
  const stages = /stages \(ms\): (.*)/.exec(r.stdout);
  const cpu = /cpu-us (\d+)/.exec(r.stdout);
  if (!compiled || !stages || !cpu) throw new Error(`unexpected output of mnc compile:\n${r.stdout}`);
  const figures: Figures = { wall, cpu: Number(cpu[1]) / 1000, startup: wall - Number(compiled[1]) * 1000 };
  let staged = 0;
  for (const part of stages[1].split(', ')) {
    const [stage, ms] = part.split(' ');
    figures[stage] = Number(ms);
    staged += Number(ms);
  }
  figures.frontend ??= Number(compiled[1]) * 1000 - staged;
  return figures;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

if (!process.argv.includes('--no-build')) execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'pipe' });
const work = mkdtempSync(join(tmpdir(), 'mnc-compile-time-'));
const runs = new Map<string, Figures[]>();
try {
  for (let run = 0; run < RUNS; run++) {
    for (const c of CASES) {
      const settings = [...THREADS.map((threads) => ({ tag: threads, threads, cwd: root })), ...(BASELINE ? [{ tag: 'baseline', threads: 'auto', cwd: BASELINE }] : [])];
      for (const { tag, threads, cwd } of settings) {
        const key = `${c.label}|${tag}`;
        const figures = compileOnce(c, threads, join(work, 'plan.mnplan'), cwd);
        runs.set(key, [...(runs.get(key) ?? []), figures]);
        console.error(`run ${run + 1}/${RUNS} ${c.label}, ${tag}: ${(figures.wall / 1000).toFixed(2)} s`);
      }
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

const COLUMNS = ['wall', 'cpu', 'startup', 'frontend', 'parameters', 'optimize', 'autodiff', 'lower', 'validate', 'plan', 'write', 'typecheck'];
console.log(`\nwhole compile (mnc compile … --no-weights), ms: median of ${RUNS} runs, best in brackets`);
console.log(`node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'})`);
console.log(['plan'.padEnd(17), 'threads ', ...COLUMNS.map((c) => c.padStart(13))].join(' '));
for (const [key, figures] of runs) {
  const [label, threads] = key.split('|');
  const cells = COLUMNS.map((c) => {
    const values = figures.map((f) => f[c] ?? 0);
    return `${median(values).toFixed(0)} (${Math.min(...values).toFixed(0)})`.padStart(13);
  });
  console.log([label.padEnd(17), threads.padEnd(8), ...cells].join(' '));
}
