// The quantized matrix-vector product of decode (compiler/lower/matmul-quantized.ts): one row
// of x against w [N, K] kept packed, per weight type, as GB/s of weight bytes against a
// plain vec4 copy kernel's GB/s (bytes read + written) on the same device in the same run;
// an f32 product (the ordinary matmul, w [K, N]) beside them for what decode in f32 moves.
// Each plan is compiled in-process, timed with timestamp queries (bench/gpu-time.ts) and
// checked on a sample of outputs against the float64 product of the dequantized weights.
//
//   npx esbuild bench/quantized-matvec.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/quantized-matvec.mjs
//   # device command (carry [".device"]):
//   source .device/bootstrap.sh; node .device/quantized-matvec.mjs
//
// Options: --small (small shapes, to check this program off the GPU machine: llvmpipe's
// figures mean nothing), --types q8_0,q4_k,... (default: every type), --m 1 (rows of x),
// --rounds 7 (timed passes), --kernel old,new (default: both, so one run gives before and
// after on the same card): the matrix-vector kernels to time, each a tuning of
// target.tuning.quantizedMatvec: old = the first kernel ('chunks'), new = the default
// ('units', QUANTIZED_MATVEC_DEFAULT), tXrYsZ = 'units' with X lanes along a row, Y rows
// per invocation and Z steps in flight (e.g. t8r2s2,t32r8s1; new is t8r4s1). With $OUT set it writes $OUT/quantized-matvec.json.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import type { Target } from '../compiler/target/target';
import { withTuning } from '../compiler/target/targets';
import { QUANTIZED_MATVEC_DEFAULT, type QuantizedMatvecTuning } from '../compiler/target/tuning';
import { loadPlan, requestNodeDevice } from '../runtime/index';
import { deviceTarget, PACKED_TYPES, SLAB_ROWS, weightProduct } from './quantized-weights';
import { measureGpuTime, median, prepareTimedPlan, timestampedPasses } from './gpu-time';


interface Options {
  small: boolean;
  types: string[];
  m: number;
  rounds: number;
  kernels: string[];
}

/** A --kernel name's tuning: old, new, or tXrYsZ (units; X lanes along a row, Y rows per invocation, Z steps in flight). */
function kernelTuning(name: string): QuantizedMatvecTuning {
  if (name === 'old') return { ...QUANTIZED_MATVEC_DEFAULT, kernel: 'chunks' };
  if (name === 'new') return QUANTIZED_MATVEC_DEFAULT;
  const trs = /^t(1|2|4|8|16|32)r(\d+)s(\d+)$/.exec(name);
  if (trs && Number(trs[2]) >= 1 && Number(trs[3]) >= 1) return { kernel: 'units', lanesPerRow: Number(trs[1]), rowsPerTeam: Number(trs[2]), stepsInFlight: Number(trs[3]) };
  if (name === 'dot4') return { ...QUANTIZED_MATVEC_DEFAULT, kernel: 'dot4' };
  const dr = /^d(1|2|4|8|16|32)r(\d+)$/.exec(name);
  if (dr && Number(dr[2]) >= 1) return { kernel: 'dot4', lanesPerRow: Number(dr[1]), rowsPerTeam: Number(dr[2]), stepsInFlight: 1 };
  throw new Error(`unknown kernel ${name}: old, new, tXrYsZ (X lanes along a row: 1, 2, 4, 8, 16 or 32; Y rows per invocation; Z steps in flight), dot4 or dXrY (the int8 dot-product kernel, X lanes, Y rows)`);
}

function parseOptions(argv: string[]): Options {
  const options: Options = { small: false, types: [...PACKED_TYPES.map(([t]) => t), 'f32'], m: 1, rounds: 7, kernels: ['old', 'new'] };
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    if (a === '--small') options.small = true;
    else if (a === '--types') options.types = argv[++k].split(',');
    else if (a === '--m') options.m = Number(argv[++k]);
    else if (a === '--rounds') options.rounds = Number(argv[++k]);
    else if (a === '--kernel') options.kernels = argv[++k].split(',');
    else throw new Error(`unknown option ${a}`);
  }
  const unknown = options.types.filter((t) => t !== 'f32' && !PACKED_TYPES.some(([d]) => d === t));
  if (unknown.length) throw new Error(`unknown types ${unknown.join(', ')}; known: ${PACKED_TYPES.map(([t]) => t).join(', ')}, f32`);
  options.kernels.forEach(kernelTuning);
  return options;
}

const options = parseOptions(process.argv.slice(2));
/** w's [N, K]: a square layer and an MLP's up and down projections of a 7B Llama */
const SHAPES: [number, number][] = options.small
  ? [
      [40, 512],
      [24, 768],
    ]
  : [
      [4096, 4096],
      [11008, 4096],
      [4096, 11008],
    ];

const gpu = await requestNodeDevice();
const { device } = gpu;
const info = gpu.adapter.info;
console.log(`device: ${gpu.backend} ${info.description || info.vendor} ${info.architecture ?? ''}`.trim());
if (!device.features.has('timestamp-query')) console.log('no timestamp-query: wall-clock times (submit to done), not kernel times');
const target: Target = deviceTarget(device.limits);

/** GB/s of a vec4 copy of `bytes` (read + written), the median of `rounds` passes of `reps` copies. */
async function copyGbs(bytes: number, rounds: number): Promise<number> {
  const n4 = bytes / 16;
  const groups = Math.ceil(n4 / 256);
  const rows = Math.ceil(groups / 65535);
  const gx = Math.ceil(groups / rows);
  const usage = GPUBufferUsage.STORAGE;
  const src = device.createBuffer({ size: bytes, usage });
  const dst = device.createBuffer({ size: bytes, usage });
  const code = `@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * ${gx}u) * 256u + li;
  if (i < ${n4}u) {
    dst[i] = src[i];
  }
}`;
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: dst } }] });
  const reps = options.small ? 2 : 20;
  const record = (p: GPUComputePassEncoder) => {
    for (let r = 0; r < reps; r++) {
      p.setPipeline(pipeline);
      p.setBindGroup(0, bindGroup);
      p.dispatchWorkgroups(gx, rows, 1);
    }
  };
  let us: number[];
  if (device.features.has('timestamp-query')) {
    us = (await timestampedPasses(device, rounds + 1, record)).slice(1);
  } else {
    us = [];
    for (let i = 0; i < rounds; i++) {
      const encoder = device.createCommandEncoder();
      const p = encoder.beginComputePass();
      record(p);
      p.end();
      const start = performance.now();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      us.push((performance.now() - start) * 1000);
    }
  }
  src.destroy();
  dst.destroy();
  return (2 * bytes * reps) / median(us) / 1e3;
}

interface Row {
  shape: string;
  type: string;
  /** the matrix-vector kernel (--kernel), or 'matmul' for f32 */
  kernel: string;
  weightBytes: number;
  us: number;
  gbs: number;
  ofCopy: number;
  worst: number;
  clock: string;
}

const copyBytes = options.small ? 1 << 20 : 1 << 28;
const copy = await copyGbs(copyBytes, options.rounds);
console.log(`vec4 copy of ${copyBytes / 2 ** 20} MiB: ${copy.toFixed(0)} GB/s (bytes read + written)`);
const rows: Row[] = [];
const m = options.m;
let seed = 1;

/** Compiles g for `tuned`, checks a sample of y against the f64 product of the slab's values, and times it. */
async function measure(g: Graph, tuned: Target, x: Float32Array, slab: Float32Array, n: number, k: number, roundsX: boolean): Promise<{ us: number; worst: number; clock: string }> {
  const { bundle } = await compileGraph(g, { targets: [tuned] });
  const session = await loadPlan(bundle, device);
  const y = (await session.run({ x })).y;
  session.destroy();
  // the dot4 kernel rounds x to int8 per 32 values: x's rounding, at most half its block's scale
  // max|x|/127 a value, adds Σ|w|·scale/2 to the bound
  const xHalfStep = Float64Array.from({ length: x.length }, (_, p) => {
    if (!roundsX) return 0;
    const start = p - (p % 32);
    let amax = 0;
    for (let q = start; q < start + 32; q++) amax = Math.max(amax, Math.abs(x[q]));
    return (amax / 127) * 0.5 * 1.001;
  });
  let worst = 0;
  for (let i = 0; i < m; i++) {
    for (let r = 0; r < Math.min(n, SLAB_ROWS); r++) {
      let exact = 0;
      let scale = 0;
      let rounding = 0;
      for (let p = 0; p < k; p++) {
        exact += x[i * k + p] * slab[r * k + p];
        scale += Math.abs(x[i * k + p] * slab[r * k + p]);
        rounding += Math.abs(slab[r * k + p]) * xHalfStep[i * k + p];
      }
      const error = Math.abs(y[i * n + r] - exact) / ((k + 2) * 2 ** -24 * (scale + rounding) + rounding);
      worst = Math.max(worst, error);
    }
  }
  const timed = await prepareTimedPlan(bundle, device, 'run', { x });
  const time = await measureGpuTime(timed, { passes: options.rounds, ...(options.small ? { targetPassUs: 2000, warmupUs: 0, maxReps: 4 } : {}) });
  timed.destroy();
  return { us: time.medianUs, worst, clock: time.clock };
}

for (const [n, k] of SHAPES) {
  for (const type of options.types) {
    const g = new Graph('matvec');
    const x = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i * 0.37));
    const { slab, weightBytes } = weightProduct(g, type, m, n, k, seed++);
    for (const kernel of type === 'f32' ? ['matmul'] : options.kernels) {
      const tuned = kernel === 'matmul' ? target : withTuning(target, { quantizedMatvec: kernelTuning(kernel) }, `bench-device+${kernel}`);
      const { us, worst, clock } = await measure(g, tuned, x, slab, n, k, kernel !== 'matmul' && kernelTuning(kernel).kernel === 'dot4');
      const gbs = weightBytes / us / 1e3;
      const row: Row = { shape: `${n}x${k}`, type, kernel, weightBytes, us, gbs, ofCopy: gbs / copy, worst, clock };
      rows.push(row);
      // worst: the largest |gpu − f64| over the f32 accumulation bound (k + 2)·2^-24·Σ|x·w|; above 1 is wrong
      console.log(
        `w [${n}, ${k}] ${type.padEnd(5)} ${kernel.padEnd(6)} ${(weightBytes / 2 ** 20).toFixed(1).padStart(7)} MiB  ${us.toFixed(1).padStart(9)} µs  ${gbs.toFixed(0).padStart(6)} GB/s  ${(100 * row.ofCopy).toFixed(0).padStart(4)}% of copy  error/bound ${worst.toExponential(1)}${worst > 1 ? '  WRONG' : ''}`,
      );
    }
  }
}

// the table for bench/README.md: per type and shape, each kernel's µs and % of the copy, and
// the first kernel's time over each later one's
const kernels = [...new Set(rows.map((r) => r.kernel))];
const shapes = [...new Set(rows.map((r) => r.shape))];
console.log(`\n| type | kernel | ${shapes.map((s) => `${s} µs | % of copy`).join(' | ')} |`);
console.log(`| --- | --- | ${shapes.map(() => '---: | ---:').join(' | ')} |`);
for (const type of options.types) {
  for (const kernel of kernels) {
    const cells = shapes.map((shape) => {
      const r = rows.find((x) => x.type === type && x.kernel === kernel && x.shape === shape);
      if (!r) return undefined;
      const base = rows.find((x) => x.type === type && x.kernel === kernels[0] && x.shape === shape);
      const speedup = base && kernel !== kernels[0] ? ` (${(base.us / r.us).toFixed(2)}×)` : '';
      return `${r.us.toFixed(1)}${speedup} | ${(100 * r.ofCopy).toFixed(0)}`;
    });
    if (cells.every((c) => c === undefined)) continue;
    console.log(`| ${type} | ${kernel} | ${cells.map((c) => c ?? '– | –').join(' | ')} |`);
  }
}
await gpu.destroy();
if (process.env.OUT) writeFileSync(join(process.env.OUT, 'quantized-matvec.json'), JSON.stringify({ device: info, copyGbs: copy, m, kernels: options.kernels, rows }, null, 2));
if (rows.some((r) => r.worst > 1)) process.exitCode = 1;
