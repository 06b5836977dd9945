// The quantized product of prefill (compiler/lower/matmul-quantized.ts): x [M, K] against
// w [N, K] kept packed, per weight type, in the tiled kernel with w decoded into its tiles; for
// Q8_0 also the int8 subgroup-matrix variant (matmul-q8-subgroup-matrix.ts: x rounded to int8
// per 32 values, tensor-core products scaled by d_x·d_w) and the tiled kernel the plan
// carries beside it (its twin, in the variant's blocks); an f32 product (the ordinary matmul, w [K, N]) for comparison. Each plan
// is compiled in-process, timed with timestamp queries (bench/gpu-time.ts) and checked on
// every row of x and 64 + N/64 columns against the float64 product of x and the dequantized weights
// (error over its bound: f32 accumulation's, plus x's rounding Σ|w|·d_x/2 for the variant).
//
//   npx esbuild bench/quantized-prefill.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/quantized-prefill.mjs
//   # device command (carry [".device"]):
//   source .device/bootstrap.sh; node .device/quantized-prefill.mjs
//
// Options: --small (small shapes, to check this program off the GPU machine), --types
// q8_0,q4_k,... (default: every type and f32), --rounds 7 (timed passes). Dawn's unsafe APIs
// are allowed so an H100/H200 offers subgroup matrices; without them the variant rows are
// left out. With $OUT set it writes $OUT/quantized-prefill.json.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { SUBGROUP_MATRIX_FEATURE } from '../compiler/lower/matmul-int8';
import type { Target } from '../compiler/target/target';
import { ggmlType } from '../runtime/ggml-types';
import { loadPlan, readBundle, requestNodeDevice } from '../runtime/index';
import { deviceTarget, PACKED_TYPES, SLAB_ROWS, weightProduct } from './quantized-weights';
import { measureGpuTime, prepareTimedPlan } from './gpu-time';


interface Options {
  small: boolean;
  types: string[];
  rounds: number;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { small: false, types: [...PACKED_TYPES.map(([t]) => t), 'f32'], rounds: 7 };
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    if (a === '--small') options.small = true;
    else if (a === '--types') options.types = argv[++k].split(',');
    else if (a === '--rounds') options.rounds = Number(argv[++k]);
    else throw new Error(`unknown option ${a}`);
  }
  const unknown = options.types.filter((t) => t !== 'f32' && !PACKED_TYPES.some(([d]) => d === t));
  if (unknown.length) throw new Error(`unknown types ${unknown.join(', ')}; known: ${PACKED_TYPES.map(([t]) => t).join(', ')}, f32`);
  return options;
}

const options = parseOptions(process.argv.slice(2));
/** [M, K, N]: 128 tokens through SmolLM2-135M's MLP up projection, 512 through a 7B Llama's square layer */
const SHAPES: [number, number, number][] = options.small
  ? [
      [64, 512, 128],
      [128, 256, 64],
    ]
  : [
      [128, 576, 1536],
      [512, 4096, 4096],
    ];

const gpu = await requestNodeDevice({ allowUnsafeApis: true });
const { device } = gpu;
const info = gpu.adapter.info;
const matrices = device.features.has(SUBGROUP_MATRIX_FEATURE);
console.log(`device: ${gpu.backend} ${info.description || info.vendor} ${info.architecture ?? ''}`.trim());
console.log(matrices ? 'subgroup matrices: yes (the Q8_0 variant is timed)' : 'subgroup matrices: no (the Q8_0 variant rows are left out)');
if (!device.features.has('timestamp-query')) console.log('no timestamp-query: wall-clock times (submit to done), not kernel times');
const portableTarget: Target = deviceTarget(device.limits);
/** the same device with its subgroup matrices: Q8_0 products in 64-blocks carry the variant */
const matrixTarget: Target = { ...portableTarget, name: 'bench-device+subgroup-matrix', features: [SUBGROUP_MATRIX_FEATURE] };

/**
 * The largest |y − exact| over its bound, on every row of x and, of w's rows (which repeat the
 * slab's), the first 64 and one in each later block of 64: f32 accumulation's
 * (k + 2)·2^-24·Σ|x·w|, and with `roundsX` x's rounding to int8 per 32 values,
 * Σ|w|·max|x|/127/2 (the accumulation term doubled for the rounded x).
 */
function worstError(y: Float32Array, x: Float32Array, slab: Float32Array, m: number, k: number, n: number, roundsX: boolean): number {
  const half = Float64Array.from({ length: x.length }, (_, p) => {
    if (!roundsX) return 0;
    let amax = 0;
    for (let q = p - (p % 32); q < p - (p % 32) + 32; q++) amax = Math.max(amax, Math.abs(x[q]));
    return (amax / 127 / 2) * 1.001;
  });
  const slabRows = Math.min(n, SLAB_ROWS);
  const columns = [...Array.from({ length: slabRows }, (_, c) => c), ...Array.from({ length: Math.floor(n / 64) }, (_, b) => 64 * b + ((7 * b) % 64)).filter((c) => c >= 64 && c < n)];
  let worst = 0;
  for (let i = 0; i < m; i++) {
    const exact = new Float64Array(slabRows);
    const bound = new Float64Array(slabRows);
    for (let r = 0; r < slabRows; r++) {
      let magnitude = 0;
      let rounding = 0;
      for (let p = 0; p < k; p++) {
        const w = slab[r * k + p];
        exact[r] += x[i * k + p] * w;
        magnitude += Math.abs(x[i * k + p] * w);
        rounding += Math.abs(w) * half[i * k + p];
      }
      bound[r] = (roundsX ? 2 : 1) * (k + 2) * 2 ** -24 * magnitude + rounding;
    }
    for (const c of columns) worst = Math.max(worst, Math.abs(y[i * n + c] - exact[c % SLAB_ROWS]) / bound[c % SLAB_ROWS]);
  }
  return worst;
}

/** The compiler's messages for each subgroup-matrix module of the plan (Dawn checks them; naga cannot), errors first; empty where all compile. */
async function variantMessages(bundle: Uint8Array): Promise<string[]> {
  const { manifest, text } = await readBundle(bundle);
  const messages: string[] = [];
  for (const kernel of manifest.kernels) {
    for (const variant of kernel.variants.filter((v) => v.validatedBy === 'dawn')) {
      const info = await device.createShaderModule({ code: text(variant.wgsl) }).getCompilationInfo();
      for (const m of info.messages) if (m.type === 'error') messages.push(`${variant.wgsl}:${m.lineNum}:${m.linePos}: ${m.message}`);
    }
  }
  return messages;
}

interface Row {
  shape: string;
  type: string;
  /** 'tiled' (the tiling the compiler picks without subgroup matrices), 'subgroup-matrix', 'tiled twin' (the variant's portable twin, in its blocks) */
  kernel: string;
  /** the WGSL section that ran */
  section: string;
  weightBytes: number;
  us: number;
  tflops: number;
  gbs: number;
  /** error over bound (above 1 is wrong); NaN: not checked (the twin runs only with the variant's plan forced portable) */
  worst: number;
  clock: string;
}

const rows: Row[] = [];
let seed = 1;

/** Times the plan's run (its chosen variants, or with `portable` the portable ones), returning µs and the section that ran. */
async function time(bundle: Uint8Array, x: Float32Array, portable: boolean): Promise<{ us: number; section: string; clock: string }> {
  const timed = await prepareTimedPlan(bundle, device, 'run', { x }, { portable });
  const time = await measureGpuTime(timed, { passes: options.rounds, ...(options.small ? { targetPassUs: 2000, warmupUs: 0, maxReps: 4 } : {}) });
  const section = timed.variants.join(', ');
  timed.destroy();
  return { us: time.medianUs, section, clock: time.clock };
}

async function run(bundle: Uint8Array, x: Float32Array): Promise<Float32Array> {
  const session = await loadPlan(bundle, device);
  try {
    return (await session.run({ x })).y as Float32Array;
  } finally {
    session.destroy();
  }
}

function record(row: Omit<Row, 'tflops' | 'gbs'>, m: number, k: number, n: number): void {
  const full: Row = { ...row, tflops: (2 * m * n * k) / row.us / 1e6, gbs: row.weightBytes / row.us / 1e3 };
  rows.push(full);
  console.log(
    `${full.shape} ${full.type.padEnd(5)} ${full.kernel.padEnd(15)} ${(full.weightBytes / 2 ** 20).toFixed(1).padStart(6)} MiB ${full.us.toFixed(1).padStart(9)} µs ${full.tflops.toFixed(2).padStart(7)} TFLOP/s ${full.gbs.toFixed(0).padStart(6)} GB/s  error/bound ${Number.isNaN(full.worst) ? '–' : full.worst.toExponential(1)}${full.worst > 1 ? '  WRONG' : ''}  (${full.section})`,
  );
}

for (const [m, k, n] of SHAPES) {
  const shape = `${m}x${k}x${n}`;
  const x = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i * 0.37));
  for (const type of options.types) {
    // a K-quant's super-block of 256 values does not divide SmolLM2's K of 576
    const block = type === 'f32' ? 1 : ggmlType(PACKED_TYPES.find(([d]) => d === type)![1]).blockElements;
    if (k % block !== 0) {
      console.log(`${shape} ${type.padEnd(5)} skipped: K ${k} is not a multiple of its block of ${block}`);
      continue;
    }
    const g = new Graph('prefill');
    const { slab, weightBytes } = weightProduct(g, type, m, n, k, seed++);
    const { bundle } = await compileGraph(g, { targets: [portableTarget] });
    const tiled = await time(bundle, x, false);
    record({ shape, type, kernel: 'tiled', section: tiled.section, weightBytes, us: tiled.us, worst: worstError(await run(bundle, x), x, slab, m, k, n, false), clock: tiled.clock }, m, k, n);
    if (type !== 'q8_0' || !matrices) continue;
    const variantPlan = (await compileGraph(g, { targets: [matrixTarget] })).bundle;
    const refused = await variantMessages(variantPlan);
    if (refused.length > 0) {
      console.log(`  Dawn refuses the subgroup-matrix variant:\n${refused.map((r) => `    ${r}`).join('\n')}`);
      process.exitCode = 1;
      continue;
    }
    const variant = await time(variantPlan, x, false);
    if (!variant.section.includes('.subgroup-matrix')) {
      console.log(`  the runtime did not pick the subgroup-matrix variant (ran ${variant.section}): shape off the 64-blocks, or I8_MATRIX_UNIT unmeasured`);
      process.exitCode = 1;
    }
    record({ shape, type, kernel: 'subgroup-matrix', section: variant.section, weightBytes, us: variant.us, worst: worstError(await run(variantPlan, x), x, slab, m, k, n, true), clock: variant.clock }, m, k, n);
    const twin = await time(variantPlan, x, true);
    record({ shape, type, kernel: 'tiled twin', section: twin.section, weightBytes, us: twin.us, worst: NaN, clock: twin.clock }, m, k, n);
  }
}

// the table for bench/README.md: per shape, each type and kernel's µs, TFLOP/s and GB/s of weight bytes
const shapes = [...new Set(rows.map((r) => r.shape))];
console.log(`\n| type | kernel | ${shapes.map((s) => `${s} µs | TFLOP/s | GB/s`).join(' | ')} |`);
console.log(`| --- | --- | ${shapes.map(() => '---: | ---: | ---:').join(' | ')} |`);
for (const type of options.types) {
  for (const kernel of [...new Set(rows.filter((r) => r.type === type).map((r) => r.kernel))]) {
    const cells = shapes.map((shape) => {
      const r = rows.find((x) => x.type === type && x.kernel === kernel && x.shape === shape);
      return r ? `${r.us.toFixed(1)} | ${r.tflops.toFixed(2)} | ${r.gbs.toFixed(0)}` : '– | – | –';
    });
    console.log(`| ${type} | ${kernel} | ${cells.join(' | ')} |`);
  }
}
await gpu.destroy();
if (process.env.OUT) writeFileSync(join(process.env.OUT, 'quantized-prefill.json'), JSON.stringify({ device: info, subgroupMatrices: matrices, rows }, null, 2));
if (rows.some((r) => r.worst > 1)) process.exitCode = 1;
