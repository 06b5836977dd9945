// Compiling a model with gigabytes of weights: `mnc compile` in a child process on a generated
// chain of [4096, 4096] f32 matmuls (64 MiB each, within every target's binding limit) whose
// parameters total the given GiB; prints wall time, the child's peak RSS, the plan's size
// and its SHA-256 (the same model and seed must give the same bytes with any CLI). No GPU
// involved. Builds dist/ first.
//
//   npx tsx bench/big-model.ts [GiB = 2.1] [--baseline DIR] [--no-build] [--keep]
//
// --baseline times another checkout's built CLI (DIR/bin/mnc.mjs) on the same model.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const args = process.argv.slice(2);
const option = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const gib = Number(args.find((a, i) => /^[\d.]+$/.test(a) && !args[i - 1]?.startsWith('--')) ?? '2.1');
const baseline = option('baseline');
const SIDE = 4096;
const layers = Math.ceil((gib * 2 ** 30) / (SIDE * SIDE * 4));

if (!args.includes('--no-build')) execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'ignore' });
const dir = mkdtempSync(join(tmpdir(), 'mnc-big-'));
const modelFile = join(dir, 'big.ts');
writeFileSync(
  modelFile,
  `import { model } from 'mnc';\n` +
    `export const big = model((g) => {\n` +
    `  let h = g.input('x', [1, ${SIDE}]);\n` +
    `  for (let i = 0; i < ${layers}; i++) h = g.matmul(h, g.parameter('w' + i, [${SIDE}, ${SIDE}]));\n` +
    `  return { y: h };\n});\n`,
);
// the child reports its own peak RSS on exit (kilobytes, as getrusage gives it)
const preload = join(dir, 'rss.cjs');
writeFileSync(preload, `process.on('exit', () => require('fs').writeSync(2, 'maxrss-kb ' + process.resourceUsage().maxRSS + '\\n'));\n`);

/** A file's SHA-256, read in 64 MiB pieces (a plan may be larger than one read takes). */
function sha256(file: string): string {
  const hash = createHash('sha256');
  const fd = openSync(file, 'r');
  const piece = Buffer.alloc(1 << 26);
  for (let n; (n = readSync(fd, piece, 0, piece.length, null)) > 0; ) hash.update(piece.subarray(0, n));
  closeSync(fd);
  return hash.digest('hex');
}

console.log(`model: ${layers} parameters of [${SIDE}, ${SIDE}] f32, ${((layers * SIDE * SIDE * 4) / 2 ** 30).toFixed(2)} GiB`);
for (const [label, cli] of [['this checkout', root], ...(baseline ? [['baseline', baseline]] : [])]) {
  const out = join(dir, `${label.replace(/\W/g, '-')}.mnplan`);
  const started = performance.now();
  const child = spawnSync(process.execPath, ['--require', preload, join(cli, 'bin/mnc.mjs'), 'compile', modelFile, '-o', out], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const seconds = (performance.now() - started) / 1000;
  const rss = Number(/maxrss-kb (\d+)/.exec(child.stderr)?.[1] ?? NaN) / 2 ** 20;
  const size = child.status === 0 ? statSync(out).size : NaN;
  const said = (child.stdout + child.stderr).replace(/maxrss-kb \d+\n/, '').trim().split('\n').at(-1);
  const sha = child.status === 0 ? `, sha256 ${sha256(out).slice(0, 16)}…` : '';
  console.log(`${label}: exit ${child.status}, ${seconds.toFixed(1)} s, peak RSS ${rss.toFixed(2)} GiB, plan ${(size / 2 ** 30).toFixed(3)} GiB (${size} bytes)${sha}\n  ${said}`);
  if (!args.includes('--keep')) rmSync(out, { force: true });
}
if (!args.includes('--keep')) rmSync(dir, { recursive: true, force: true });
else console.log(`kept ${dir}`);
