// A sweep of the attention kernels' tuning (nvidia-hopper's AttentionTuning, changed per configuration, in
// compiler/lower/attention-tiled.ts: the register-blocked kernel's workgroup tile and
// prefetch, the tiled kernel's rows, key groups, lanes and variants) over the suite's
// attention shapes, in one run: each
// configuration is compiled with compileGraph, checked against a CPU reference on sampled
// rows (a broken configuration is reported, not timed), and timed from timestamp queries
// through bench/gpu-time.ts. Configurations that produce the kernel an earlier one produced
// are not timed again. One table per shape, the best configuration per shape, and how each
// configuration fares against the defaults over all shapes. Run:
//   npx esbuild bench/attention.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/attention.mjs
//   # device command (carry .device): source .device/bootstrap.sh; node .device/attention.mjs
// Options: --only SUBSTRING[,…] (shapes), --configs SUBSTRING[,…] (configurations), --quick
// (fewer configurations), --passes 7, --target-ms 5, --gpu-warmup-ms 200, --small (two tiny
// shapes and four configurations: a smoke test off the GPU machine, e.g. on llvmpipe), --list.
// With $OUT set it writes $OUT/attention.json.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import type { AttentionTuning } from '../compiler/target/tuning';
import { loadPlan, readBundle } from '../runtime/index';
import { benchDevice } from './bench-device';
import { measureGpuTime, prepareTimedPlan, type GpuTime } from './gpu-time';
import { attentionError, uniform } from './bench-data';

// --- shapes and configurations -------------------------------------------------------------

interface AttentionShape {
  name: string;
  heads: number;
  seq: number;
  d: number;
  causal: boolean;
}

const shape = (heads: number, seq: number, d: number, causal = false): AttentionShape => ({ name: `${heads}x${seq}x${d}${causal ? ' causal' : ''}`, heads, seq, d, causal });

/** The suite's attention rows (bench/suite.ts), and a batched case with 8x the heads. */
const SHAPES = [shape(9, 128, 64), shape(9, 512, 64), shape(9, 2048, 64), shape(9, 2048, 64, true), shape(72, 512, 64)];
const SMALL_SHAPES = [shape(2, 40, 64), shape(2, 40, 64, true)];

interface Config {
  name: string;
  tuning: Partial<AttentionTuning>;
  /** in the --quick list */
  quick?: boolean;
}

const rows = (n: number) => ({ minRows: n, maxRows: n });
const groups = (n: number) => ({ minGroups: n, maxGroups: n });
/** every key tile from maxTileKeys down, also once the keys are split (the default stops at 8 keys then) */
const keys = (n: number) => ({ maxTileKeys: n, minSplitTileKeys: Math.min(8, n) });
const LARGE_32K = { largeWorkgroupBytes: 32768 };

/**
 * Each knob away from the default alone (rows per workgroup, key groups, keys per tile,
 * lanes per row, the key-split targets), then combinations, then the 'large' variant with
 * more workgroup storage (it runs only where the device's limits allow it; the table says
 * which variant ran). The chooser falls back to what fits, so the tiling column shows what
 * each configuration became.
 */
const TILED = { blockedRows: 0 };
/** the blocked kernel with a fixed workgroup tile */
const blocked = (rows: number, keys: number) => ({ blockedRows: rows, blockedKeys: keys });
/** Tiled-kernel configurations: the blocked kernel off. */
const tiledConfigs = (configs: Config[]) => configs.map((c) => ({ ...c, tuning: { ...TILED, ...c.tuning } }));
const CONFIGS: Config[] = [
  { name: 'default', tuning: {}, quick: true },
  // the register-blocked kernel (the default: 48 rows × 64 keys) at other workgroup tiles, and the tiled kernel
  { name: 'tiled', tuning: TILED, quick: true },
  { name: 'blocked 64x32', tuning: blocked(64, 32), quick: true },
  { name: 'blocked 32x64', tuning: blocked(32, 64), quick: true },
  { name: 'blocked 40x64', tuning: blocked(40, 64) },
  { name: 'blocked 24x64', tuning: blocked(24, 64) },
  { name: 'blocked 48x32', tuning: blocked(48, 32) },
  { name: 'blocked 32x32', tuning: blocked(32, 32) },
  { name: 'blocked 64x16', tuning: blocked(64, 16) },
  { name: 'blocked, no prefetch', tuning: { blockedPrefetch: false }, quick: true },
  // the tiled kernel (attention-tiled.ts), which the blocked kernel replaces where it applies
  ...tiledConfigs([
    { name: 'br16', tuning: rows(16), quick: true },
    { name: 'br32', tuning: rows(32) },
    // in 16 KiB, 64 rows leave no room to merge key groups at d = 64: br64 alone is g1 (or the default)
    { name: 'br64', tuning: rows(64) },
    { name: 'g1', tuning: groups(1), quick: true },
    { name: 'g2', tuning: groups(2) },
    { name: 'g4', tuning: groups(4) },
    { name: 'g8 keys4', tuning: { ...groups(8), ...keys(4) }, quick: true },
    { name: 'keys4', tuning: keys(4) },
    { name: 'keys8', tuning: keys(8) },
    { name: 'g1 keys32', tuning: { ...groups(1), ...keys(32) }, quick: true },
    { name: 'lanes2', tuning: { maxLaneVec4: 8 }, quick: true },
    { name: 'lanes4', tuning: { maxLaneVec4: 4 } },
    { name: 'target32K', tuning: { targetInvocations: 32768 } },
    { name: 'target128K', tuning: { targetInvocations: 131072 } },
    { name: 'target256K', tuning: { targetInvocations: 262144 } },
    { name: 'minKeys32', tuning: { minKeysPerGroup: 32 } },
    { name: 'minKeys128', tuning: { minKeysPerGroup: 128 } },
    { name: 'br16 g4', tuning: { ...rows(16), ...groups(4) } },
    { name: 'br16 g8 keys4', tuning: { ...rows(16), ...groups(8), ...keys(4) } },
    { name: 'lanes2 g1', tuning: { maxLaneVec4: 8, ...groups(1) } },
    { name: 'lanes2 g4', tuning: { maxLaneVec4: 8, ...groups(4) } },
    { name: 'large32K', tuning: LARGE_32K, quick: true },
    { name: 'large32K br64 g2', tuning: { ...LARGE_32K, ...rows(64), ...groups(2) } },
    { name: 'large32K br64 keys8', tuning: { ...LARGE_32K, ...rows(64), ...keys(8) }, quick: true },
    { name: 'large32K br32 g8', tuning: { ...LARGE_32K, ...rows(32), ...groups(8) } },
    { name: 'large32K keys32', tuning: { ...LARGE_32K, ...keys(32) } },
    { name: 'large32K br64 g8 (512 inv)', tuning: { ...LARGE_32K, largeInvocations: 512, ...rows(64), ...groups(8) } },
    { name: 'large32K lanes2', tuning: { ...LARGE_32K, maxLaneVec4: 8 } },
    { name: 'large64K keys32', tuning: { largeWorkgroupBytes: 65536, ...keys(32) } },
    // candidates for the defaults: more key groups in a 32 KiB variant, as the chooser picks them
    { name: 'large32K br32 g4', tuning: { ...LARGE_32K, ...rows(32), ...groups(4) } },
    { name: 'large32K ≤32 rows, ≤4 groups of ≥32 keys', tuning: { ...LARGE_32K, maxRows: 32, maxGroups: 4, minKeysPerGroup: 32 } },
    { name: 'large32K ≤4 groups of ≥32 keys', tuning: { ...LARGE_32K, maxGroups: 4, minKeysPerGroup: 32 } },
    { name: 'large32K ≤32 rows, ≤4 groups of ≥32 keys, target128K', tuning: { ...LARGE_32K, maxRows: 32, maxGroups: 4, minKeysPerGroup: 32, targetInvocations: 131072 } },
  ]),
];

const SMALL_CONFIGS: Config[] = [
  { name: 'default', tuning: {} },
  // the blocked kernel at 40 query rows (its default needs 64)
  { name: 'blocked 16 rows', tuning: { blockedRows: 16, minBlockedTq: 16 } },
  { name: 'br16 lanes2 g2 keys8', tuning: { ...rows(16), maxLaneVec4: 8, ...groups(2), ...keys(8) } },
  // at 40 keys the portable kernel cannot merge 2 groups of 64 rows in 16 KiB: the variant can
  { name: 'large32K br64 g2', tuning: { ...LARGE_32K, ...rows(64), ...groups(2) } },
];

// --- options -----------------------------------------------------------------------------

interface Options {
  only: string[];
  configs: string[];
  quick: boolean;
  small: boolean;
  list: boolean;
  passes: number;
  targetMs: number;
  gpuWarmupMs: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      only: { type: 'string', multiple: true, default: [] },
      configs: { type: 'string', multiple: true, default: [] },
      quick: { type: 'boolean', default: false },
      small: { type: 'boolean', default: false },
      list: { type: 'boolean', default: false },
      passes: { type: 'string', default: '7' },
      'target-ms': { type: 'string', default: '5' },
      'gpu-warmup-ms': { type: 'string', default: '200' },
    },
  });
  const list = (vs: string[]) => vs.flatMap((v) => v.split(',')).map((s) => s.trim().toLowerCase()).filter((s) => s);
  const positive = (flag: string, v: string) => {
    const n = Number(v);
    if (!(n > 0)) throw new Error(`--${flag} needs a positive number`);
    return n;
  };
  return {
    only: list(values.only),
    configs: list(values.configs),
    quick: values.quick,
    small: values.small,
    list: values.list,
    passes: Math.round(positive('passes', values.passes)),
    targetMs: positive('target-ms', values['target-ms']),
    gpuWarmupMs: positive('gpu-warmup-ms', values['gpu-warmup-ms']),
  };
}

const matches = (name: string, filters: string[]) => filters.length === 0 || filters.some((f) => name.toLowerCase().includes(f));

// --- one shape: graph, feeds, reference check --------------------------------------------------

/** q, k, v [heads, seq, d] and a scalar 0 mask; causal shapes as causal attention (the suite's constant causal mask becomes that). */
function buildGraph(s: AttentionShape): Graph {
  const g = new Graph(`attention_${s.name.replace(/[^A-Za-z0-9]+/g, '_')}`);
  const [q, k, v] = ['q', 'k', 'v'].map((n) => g.input(n, [s.heads, s.seq, s.d]));
  g.output('o', g.attention(q, k, v, g.constant(0), { scale: 1 / Math.sqrt(s.d), causal: s.causal }));
  return g;
}

function feedsFor(s: AttentionShape): Record<string, Float32Array> {
  const next = uniform(7);
  const random = () => Float32Array.from({ length: s.heads * s.seq * s.d }, next);
  return { q: random(), k: random(), v: random() };
}

/** (head, row) pairs: the first and last rows, then seeded picks. */
function sampleRows(s: AttentionShape, n = 8): [number, number][] {
  const next = uniform(12345);
  const pick = (m: number) => Math.min(m - 1, Math.floor(((next() + 1) / 2) * m));
  const out: [number, number][] = [
    [0, 0],
    [s.heads - 1, s.seq - 1],
  ];
  while (out.length < n) out.push([pick(s.heads), pick(s.seq)]);
  return out;
}

const TOLERANCE = 1e-3;

// --- one configuration -------------------------------------------------------------------

interface Result {
  config: string;
  tuning: Partial<AttentionTuning>;
  /** what the configuration became: rows, keys per tile, groups, lanes (from the kernel's archetype line) */
  tiling?: string;
  /** the kernel variant that ran: 'portable' or a tag ('large') */
  variant?: string;
  workgroupBytes?: number;
  invocations?: number;
  check?: { error: number; ok: boolean };
  gpu?: GpuTime;
  us?: number;
  tflops?: number;
  /** an earlier configuration of this shape produced the same kernel: its figures are repeated */
  sameAs?: string;
  error?: string;
  seconds: number;
}

/** "64 rows, 4 groups × 8 keys, 1 lane" from the archetype line of the tiled kernel; "row kernel" otherwise. */
function tilingOf(wgsl: string): string {
  const line = wgsl.split('\n').find((l) => l.startsWith('// archetype:')) ?? '';
  if (/workgroup per query row/.test(line)) return 'row kernel';
  const b = /register-blocked FlashAttention-2: (\d+) query rows per workgroup, keys in tiles of (\d+)/.exec(line);
  if (b) return `blocked: ${b[1]} rows, ${b[2]} keys`;
  const m = /tiles: (\d+) query rows per workgroup, keys in tiles of (\d+)(?: split (\d+) ways)?, (?:an invocation|(\d+) invocations) per row/.exec(line);
  if (!m) return line.replace('// archetype: ', '');
  const [rowsPer, tileKeys, split, lanes] = [Number(m[1]), Number(m[2]), Number(m[3] ?? 1), Number(m[4] ?? 1)];
  return `${rowsPer} rows, ${split > 1 ? `${split} groups × ${tileKeys / split}` : `${tileKeys}`} keys, ${lanes} lane${lanes > 1 ? 's' : ''}`;
}

/** Bytes of var<workgroup> storage the module declares. */
function workgroupBytesOf(wgsl: string): number {
  let bytes = 0;
  for (const m of wgsl.matchAll(/var<workgroup>\s+\w+\s*:\s*array<(vec4<f32>|f32),\s*(\d+)u?>/g)) bytes += Number(m[2]) * (m[1] === 'f32' ? 4 : 16);
  return bytes;
}

async function measureConfig(
  s: AttentionShape,
  config: Config,
  device: GPUDevice,
  feeds: Record<string, Float32Array>,
  seen: Map<string, Result>,
  options: Options,
  warmupMs: number,
  fresh = false,
): Promise<Result> {
  const started = performance.now();
  const result: Result = { config: config.name, tuning: config.tuning, seconds: 0 };
  try {
    const target = withTuning(NVIDIA_HOPPER, { attention: { ...NVIDIA_HOPPER.tuning.attention, ...config.tuning } });
    const compiled = await compileGraph(buildGraph(s), { seed: 1, targets: [target] });
    const timed = await prepareTimedPlan(compiled.bundle, device, 'run', feeds);
    try {
      const { text, manifest } = await readBundle(compiled.bundle);
      const kernel = manifest.kernels.find((k) => k.ops.includes('attention'));
      if (!kernel) throw new Error('the plan has no attention kernel');
      const section = timed.variants.find((v) => v.startsWith(`kernels/${kernel.name}.`)) ?? timed.variants[0];
      const wgsl = text(section);
      result.tiling = tilingOf(wgsl);
      const prefix = `kernels/${kernel.name}`;
      result.variant = section === `${prefix}.wgsl` ? 'portable' : section.slice(prefix.length + 1).replace(/\.wgsl$/, '');
      result.workgroupBytes = workgroupBytesOf(wgsl);
      const size = /@workgroup_size\((\d+)\)/.exec(wgsl);
      result.invocations = size ? Number(size[1]) : undefined;
      const earlier = fresh ? undefined : seen.get(wgsl);
      if (earlier) {
        Object.assign(result, { check: earlier.check, gpu: earlier.gpu, us: earlier.us, tflops: earlier.tflops, sameAs: earlier.sameAs ?? earlier.config, error: earlier.error });
        return result;
      }
      if (!fresh) seen.set(wgsl, result);

      // the check, through the real runtime
      const session = await loadPlan(compiled.bundle, device);
      try {
        const error = attentionError(feeds, (await session.run(feeds)).o, s, sampleRows(s));
        result.check = { error, ok: error <= TOLERANCE };
      } finally {
        session.destroy();
      }
      if (!result.check.ok) return result;

      result.gpu = await measureGpuTime(timed, { passes: options.passes, targetPassUs: options.targetMs * 1000, warmupUs: warmupMs * 1000 });
      result.us = result.gpu.medianUs;
      result.tflops = flopsOf(s) / result.us / 1e6;
    } finally {
      timed.destroy();
    }
  } catch (error) {
    result.error = (error instanceof Error ? error.message : String(error)).split('\n')[0].slice(0, 200);
  } finally {
    result.seconds = (performance.now() - started) / 1000;
  }
  return result;
}

/** QKᵀ and PV in full, masked or not (the suite's count, so figures compare with its table). */
const flopsOf = (s: AttentionShape) => 4 * s.heads * s.seq * s.seq * s.d;

// --- report ------------------------------------------------------------------------------

const fmt = (us: number | undefined) => (us === undefined ? '' : us >= 100 ? us.toFixed(0) : us >= 10 ? us.toFixed(1) : us.toFixed(2));

function table(header: string[], rows: string[][], left: number[]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) => `| ${cells.map((cell, c) => (left.includes(c) ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join(' | ')} |`;
  return [line(header), `| ${widths.map((n, c) => (left.includes(c) ? '-'.repeat(n) : '-'.repeat(n - 1) + ':')).join(' | ')} |`, ...rows.map(line)];
}

function checkText(r: Result): string {
  if (r.error) return `FAILED: ${r.error}`;
  if (!r.check) return '';
  return `${r.check.ok ? 'ok' : 'MISMATCH'} (${r.check.error.toExponential(1)})`;
}

/** The shape's table; `again` (the defaults timed once more at the end) is shown last and not ranked. */
function shapeTable(s: AttentionShape, results: Result[], again?: Result): string[] {
  const timed = results.filter((r) => r.us !== undefined);
  const best = timed.length ? Math.min(...timed.map((r) => r.us!)) : undefined;
  const base = results.find((r) => r.config === 'default')?.us;
  const rows = [...results, ...(again ? [again] : [])].map((r) => [
    `${r !== again && r.us !== undefined && r.us === best ? '* ' : '  '}${r.config}`,
    r.tiling ?? '',
    r.variant ?? '',
    r.workgroupBytes !== undefined ? `${(r.workgroupBytes / 1024).toFixed(1)}` : '',
    r.invocations !== undefined ? String(r.invocations) : '',
    fmt(r.us),
    r.tflops !== undefined ? (r.tflops >= 1 ? r.tflops.toFixed(2) : r.tflops.toPrecision(2)) : '',
    r.us !== undefined && base ? `${(base / r.us).toFixed(2)}x` : '',
    r.gpu ? `${fmt(Math.min(...r.gpu.passUs))}–${fmt(Math.max(...r.gpu.passUs))}` : '',
    checkText(r),
    r.sameAs ? `= ${r.sameAs}` : '',
  ]);
  return [
    `attention ${s.name} (${(flopsOf(s) / 1e9).toFixed(2)} GFLOP per run; * fastest)`,
    ...table(['config', 'tiling', 'variant', 'KiB', 'inv', 'µs', 'TFLOP/s', 'vs default', 'min–max µs', 'check', 'same kernel as'], rows, [0, 1, 2, 9, 10]),
  ];
}

// --- main --------------------------------------------------------------------------------

async function main() {
  const options = parseOptions(process.argv.slice(2));
  const shapes = (options.small ? SMALL_SHAPES : SHAPES).filter((s) => matches(s.name, options.only));
  const configs = (options.small ? SMALL_CONFIGS : CONFIGS).filter((c) => (!options.quick || c.quick || options.small) && matches(c.name, options.configs));
  if (options.list || shapes.length === 0 || configs.length === 0) {
    for (const s of options.small ? SMALL_SHAPES : SHAPES) console.log(`shape  ${s.name}`);
    for (const c of options.small ? SMALL_CONFIGS : CONFIGS) console.log(`config ${c.name.padEnd(28)} ${JSON.stringify(c.tuning)}${c.quick ? ' (quick)' : ''}`);
    if (shapes.length === 0) console.error(`--only ${options.only.join(',')} matches no shape`);
    if (configs.length === 0) console.error(`--configs ${options.configs.join(',')} matches no configuration`);
    return;
  }

  const bench = await benchDevice();
  let gpu = await bench.current();
  const { vendor, architecture, description } = gpu.adapter.info;
  const adapter = `${gpu.backend}: ${[vendor, architecture, description].filter((x) => x).join(' ')}`;
  const limits = { maxComputeWorkgroupStorageSize: gpu.device.limits.maxComputeWorkgroupStorageSize, maxComputeInvocationsPerWorkgroup: gpu.device.limits.maxComputeInvocationsPerWorkgroup };
  console.error(
    `${adapter}; timestamp-query ${gpu.device.features.has('timestamp-query') ? 'yes' : 'no (wall-clock fallback)'}; ` +
      `workgroup storage ${limits.maxComputeWorkgroupStorageSize} B, ${limits.maxComputeInvocationsPerWorkgroup} invocations`,
  );

  const started = performance.now();
  const report: { shape: AttentionShape; flops: number; results: Result[]; defaultAgain?: Result }[] = [];
  for (const s of shapes) {
    const feeds = feedsFor(s);
    const seen = new Map<string, Result>();
    const results: Result[] = [];
    for (const [n, config] of configs.entries()) {
      gpu = await bench.current();
      // a longer warm-up for a shape's first configuration: the GPU idles while its inputs upload
      const r = await measureConfig(s, config, gpu.device, feeds, seen, options, n === 0 ? Math.max(1000, options.gpuWarmupMs) : options.gpuWarmupMs);
      results.push(r);
      const what = r.error ? `FAILED: ${r.error}` : r.sameAs ? `same kernel as ${r.sameAs}` : r.check && !r.check.ok ? `MISMATCH ${r.check.error.toExponential(1)}` : `${fmt(r.us)} µs`;
      console.error(`${s.name} ${config.name}: ${r.tiling ?? ''}${r.variant && r.variant !== 'portable' ? ` [${r.variant}]` : ''}: ${what} (${r.seconds.toFixed(1)} s)`);
    }
    // the defaults once more at the end: how far the figures drifted over the shape's sweep
    let defaultAgain: Result | undefined;
    const first = configs.find((c) => c.name === 'default');
    if (first && configs.length > 2) {
      defaultAgain = await measureConfig(s, first, gpu.device, feeds, seen, options, options.gpuWarmupMs, true);
      defaultAgain.config = 'default (again, last)';
    }
    report.push({ shape: s, flops: flopsOf(s), results, defaultAgain });
    console.log(['', ...shapeTable(s, results, defaultAgain)].join('\n'));
  }
  await bench.destroy();
  const totalSeconds = (performance.now() - started) / 1000;

  // the best per shape, and each configuration against the defaults over all shapes (geometric mean of the speedups)
  console.log('\nbest per shape:');
  for (const { shape: s, results } of report) {
    const timed = results.filter((r) => r.us !== undefined).sort((a, b) => a.us! - b.us!);
    const base = results.find((r) => r.config === 'default')?.us;
    if (!timed.length) console.log(`  ${s.name}: nothing timed`);
    else console.log(`  ${s.name}: ${timed[0].config} (${timed[0].tiling}${timed[0].variant !== 'portable' ? `, ${timed[0].variant}` : ''}) ${fmt(timed[0].us)} µs, ${timed[0].tflops!.toPrecision(3)} TFLOP/s${base ? `, ${(base / timed[0].us!).toFixed(2)}x the default's ${fmt(base)} µs` : ''}`);
  }
  const overall = configs
    .map((c) => {
      const ratios = report.map(({ results }) => {
        const base = results.find((r) => r.config === 'default')?.us;
        const us = results.find((r) => r.config === c.name)?.us;
        return base && us ? base / us : undefined;
      });
      const ok = ratios.filter((x): x is number => x !== undefined);
      return { config: c.name, shapes: ok.length, geomean: ok.length === report.length ? Math.exp(ok.reduce((a, x) => a + Math.log(x), 0) / ok.length) : undefined };
    })
    .filter((o) => o.geomean !== undefined)
    .sort((a, b) => b.geomean! - a.geomean!);
  if (overall.length > 1) console.log(`\nover all ${report.length} shapes, speedup against the defaults (geometric mean): ${overall.map((o) => `${o.config} ${o.geomean!.toFixed(2)}x`).join(', ')}`);
  console.log(`\n${adapter}; ${configs.length} configurations x ${shapes.length} shapes in ${totalSeconds.toFixed(0)} s; GPU time from ${report.some((r) => r.results.some((x) => x.gpu?.clock === 'wall')) ? 'wall clock (no timestamp-query)' : 'timestamp queries'}, median of ${options.passes} passes of ~${options.targetMs} ms after ${options.gpuWarmupMs} ms of warm-up (1 s for each shape's first)`);

  if (process.env.OUT) {
    const path = join(process.env.OUT, 'attention.json');
    writeFileSync(
      path,
      JSON.stringify({ date: new Date().toISOString(), argv: process.argv.slice(2), options, adapter, limits, totalSeconds, shapes: report, overall }, null, 2) + '\n',
    );
    console.log(`wrote ${path}`);
  }
}

await main();
