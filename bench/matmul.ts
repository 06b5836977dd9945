// The matmul archetype on the GPU: each generated kernel (tiled with several tilings, the
// small-M kernel with several splits, with and without subgroups, plain and fused) timed
// with timestamp queries (N dispatches back to back in one pass, so Dawn's quantized
// timestamps do not matter), checked on sampled outputs against a float64 reference, and
// compared with torch.matmul on the same GPU (TF32 off, CUDA events) in the same run.
//
//   npx esbuild bench/matmul.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/matmul.mjs
//   node .device/matmul.mjs [--sweep | --shapes] [--no-torch] [--small]
//
// Default: the kernels the compiler chooses (the variants a plan carries, each forced in
// turn) for the issue's shapes. --sweep: every candidate tiling and split as well, for
// tuning the chooser. Then split-K: whole plans (partial products and their sum) for
// products with few tiles and a long K, at several slice counts (the first: unsplit).
// Then stream-K: whole plans with and without it for the products it takes.
// --shapes: only A·B at 4096³ and in four full waves (4224×4096×4096), in the kernel shapes
// of SHAPE_SWEEP, against torch.
// --small: small shapes only (runs on llvmpipe). With $OUT set, the
// figures are also written to $OUT/matmul.json.
import { spawnSync } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileGraph } from '../compiler/compile';
import { Graph, type Node } from '../compiler/ir/graph';
import { opDef, type MatmulForm } from '../compiler/ir/ops';
import type { KernelCode } from '../compiler/lower/kernel';
import { lowerMatmul, type MatmulProblem } from '../compiler/lower/matmul';
import { describeGemv, gemvKernel, type GemvConfig } from '../compiler/lower/matmul-gemv';
import { describeTiling, tiledKernel, waveTilings } from '../compiler/lower/matmul-tiled';
import { NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import { TILINGS, type StreamKTuning, type TileConfig } from '../compiler/target/tuning';
import { splitKSlices } from '../compiler/lower/split-k';
import { streamKSchedule } from '../compiler/lower/stream-k';
import { loadPlan, requestNodeDevice } from '../runtime/index';
import { measureGpuTime, median, prepareTimedPlan, timestampedPasses } from './gpu-time';
import { matmulCaseGraph, problemOfNode, type MatmulCase } from './matmul-case';

interface Case extends MatmulCase {
  label: string;
  /** --shapes: the chosen kernels only, not SHAPE_SWEEP */
  chosenOnly?: boolean;
}

const args = new Set(process.argv.slice(2));
// every line also goes to $OUT/matmul.log as it is printed, so a crash or a cut-off output keeps what ran
const log = (line: string) => {
  console.log(line);
  if (process.env.OUT) appendFileSync(join(process.env.OUT, 'matmul.log'), line + '\n');
};
const sweep = args.has('--sweep');
const shapes = args.has('--shapes');
const small = args.has('--small');
const withTorch = !args.has('--no-torch') && !small;

// --- problems and host data -------------------------------------------------------------

function build(c: Case): { problem: MatmulProblem; node: Node; graph: Graph; shapes: number[][] } {
  const { g, y } = matmulCaseGraph(c, 'bench');
  const node = g.node(y);
  return { problem: problemOfNode(g, node, `bench_${c.label}`), node, graph: g, shapes: node.inputs.map((i) => [...g.nodes[i].type.shape]) };
}

function randomData(length: number, seed: number): Float32Array<ArrayBuffer> {
  const data = new Float32Array(length);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    data[i] = (s / 4294967296) * 2 - 1;
  }
  return data;
}

function erf(x: number): number {
  // Abramowitz–Stegun 7.1.26 is too coarse for a 1e-4 check near 0; a series/continued split is enough here
  const t = 1 / (1 + 0.5 * Math.abs(x));
  const y =
    1 -
    t *
      Math.exp(
        -x * x -
          1.26551223 +
          t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628288 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
      );
  return x >= 0 ? y : -y;
}

/** The reference at (batch, row, col) and the scale its rounding error is measured against. */
function reference(c: Case, data: Float32Array[], batch: number, row: number, col: number): { value: number; scale: number } {
  const [a, b] = data;
  const aOff = batch * c.m * c.k;
  let sum = 0;
  let scale = 0;
  for (let k = 0; k < c.k; k++) {
    const av = c.transposeA ? a[aOff + k * c.m + row] : a[aOff + row * c.k + k];
    const bv = c.transposeB ? b[col * c.k + k] : b[k * c.n + col];
    sum += av * bv;
    scale += Math.abs(av * bv);
  }
  if (!c.fused) return { value: sum, scale };
  const x = sum + data[2][col];
  const gelu = 0.5 * x * (1 + erf(x / Math.SQRT2));
  return { value: gelu + data[3][batch * c.m * c.n + row * c.n + col], scale: scale + Math.abs(x) };
}

// --- the device -------------------------------------------------------------------------

const gpu = await requestNodeDevice();
const device = gpu.device;
const adapterInfo = `${gpu.backend}: ${[gpu.adapter.info.vendor, gpu.adapter.info.architecture, gpu.adapter.info.description].filter(Boolean).join(' ')}`;
const canTime = device.features.has('timestamp-query');
const hasSubgroups = device.features.has('subgroups');
log(`device: ${adapterInfo}; subgroups ${hasSubgroups}, timestamps ${canTime}; workgroup storage ${device.limits.maxComputeWorkgroupStorageSize}, invocations ${device.limits.maxComputeInvocationsPerWorkgroup}`);

interface Loaded {
  c: Case;
  problem: MatmulProblem;
  node: Node;
  graph: Graph;
  data: Float32Array[];
  buffers: GPUBuffer[];
  out: GPUBuffer;
}

function load(c: Case): Loaded {
  const { problem, node, graph, shapes } = build(c);
  const data = shapes.map((s, i) => randomData(s.reduce((x, y) => x * y, 1), i + 1));
  const buffers = data.map((d) => {
    const buffer = device.createBuffer({ size: Math.max(16, d.byteLength), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(buffer, 0, d);
    return buffer;
  });
  const out = device.createBuffer({ size: (c.batch ?? 1) * c.m * c.n * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  return { c, problem, node, graph, data, buffers, out };
}

function release(l: Loaded) {
  for (const b of [...l.buffers, l.out]) b.destroy();
}

async function readBack(buffer: GPUBuffer): Promise<Float32Array> {
  const staging = device.createBuffer({ size: buffer.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, 0, staging, 0, buffer.size);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const values = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return values;
}

/** Largest error over sampled outputs, relative to the sum of |a·b| terms (1e-5 is fp32 rounding territory). */
function check(l: Loaded, values: Float32Array, samples = 96): number {
  const { c } = l;
  let worst = 0;
  let seed = 12345;
  const next = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  const batches = c.batch ?? 1;
  for (let s = 0; s < samples; s++) {
    // corners and edges as well as random points
    const row = s < 4 ? [0, c.m - 1, 0, c.m - 1][s] : next(c.m);
    const col = s < 4 ? [0, 0, c.n - 1, c.n - 1][s] : next(c.n);
    const batch = next(batches);
    const { value, scale } = reference(c, l.data, batch, row, col);
    const got = values[batch * c.m * c.n + row * c.n + col];
    const error = Math.abs(got - value) / (scale + 1e-6);
    worst = Math.max(worst, Number.isFinite(error) ? error : Infinity);
  }
  return worst;
}

async function pipelineOf(wgsl: string): Promise<GPUComputePipeline> {
  const module = device.createShaderModule({ code: wgsl });
  device.pushErrorScope('validation');
  const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } }).catch(async (e: Error) => {
    const info = await module.getCompilationInfo();
    throw new Error(`${e.message}\n${info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('\n')}`);
  });
  const error = await device.popErrorScope();
  if (error) throw new Error(error.message);
  return pipeline;
}

/** µs per dispatch: `reps` dispatches in one timed pass, `trials` times; the median trial. */
async function time(pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, grid: [number, number, number], reps: number, trials = 3): Promise<number> {
  const times = await timestampedPasses(device, trials, (pass) => {
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    for (let r = 0; r < reps; r++) pass.dispatchWorkgroups(...grid);
  });
  return median(times.map((us) => us / reps));
}

interface Row {
  case: string;
  kernel: string;
  us: number;
  tflops: number;
  gbps: number;
  error: number;
  workgroups: string;
}
const rows: Row[] = [];

// without timestamp queries (llvmpipe) the kernels are checked but not timed
const timing = (us: number, rates: string) => (Number.isNaN(us) ? 'untimed (no timestamp-query)'.padStart(12) : `${us.toFixed(1).padStart(9)} µs ${rates}`);
const flopsOf = (c: Case) => 2 * c.m * c.n * c.k * (c.batch ?? 1);
const bytesOf = (c: Case) => 4 * ((c.batch ?? 1) * (c.m * c.k + c.m * c.n * (c.fused ? 2 : 1)) + c.k * c.n);

async function measure(l: Loaded, kernel: string, code: KernelCode): Promise<Row | undefined> {
  const { c } = l;
  try {
    const pipeline = await pipelineOf(code.wgsl);
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [...l.buffers, l.out].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    // clear the output, run once, check it
    device.pushErrorScope('validation');
    const encoder = device.createCommandEncoder();
    encoder.clearBuffer(l.out);
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(...code.workgroups);
    pass.end();
    device.queue.submit([encoder.finish()]);
    const invalid = await device.popErrorScope();
    if (invalid) throw new Error(invalid.message);
    const error = check(l, await readBack(l.out));
    let us = NaN;
    if (canTime) {
      const estimate = Math.max(flopsOf(c) / 30e6, bytesOf(c) / 3e6, 4); // µs
      const reps = Math.max(2, Math.min(4000, Math.round(40000 / estimate)));
      // warm: about 0.3 s of this kernel, since the clocks drop while the host compiles (585 MHz seen)
      for (let warmed = 0; warmed < 300_000; ) warmed += Math.max(1000, (await time(pipeline, bindGroup, code.workgroups, reps, 1)) * reps);
      us = await time(pipeline, bindGroup, code.workgroups, reps);
    }
    const row: Row = { case: c.label, kernel, us, tflops: flopsOf(c) / us / 1e6, gbps: bytesOf(c) / us / 1e3, error, workgroups: code.workgroups.join('x') };
    rows.push(row);
    log(
      `${c.label.padEnd(26)} ${kernel.padEnd(58)} ${timing(us, `${row.tflops.toFixed(1).padStart(6)} TFLOP/s ${row.gbps.toFixed(0).padStart(6)} GB/s`)}  err ${error.toExponential(1)}${error > 1e-4 ? '  WRONG' : ''}`,
    );
    return row;
  } catch (e) {
    log(`${c.label.padEnd(26)} ${kernel.padEnd(58)} FAILED: ${(e as Error).message.split('\n').slice(0, 4).join(' | ')}`);
    return undefined;
  }
}

/** The variants a plan carries for this case, each forced in turn (subgroups ones only where offered). */
async function measureChosen(l: Loaded) {
  const node = l.node;
  const operands = node.inputs.map((i) => l.graph.nodes[i].type);
  const lowering = opDef(node.op).lowering as { form?: (i: unknown, a: unknown, o: unknown) => MatmulForm };
  const { kernel, workgroups } = lowerMatmul(node, operands, l.problem.name, NVIDIA_HOPPER, lowering.form?.(operands, node.attrs, node.type));
  // a product stream-K takes runs as two dispatches (measured below); its one-dispatch kernels are for comparison
  const chosen = streamKSchedule(l.graph, node, NVIDIA_HOPPER.tuning.streamK!) && !small ? 'whole' : 'chosen';
  for (const v of kernel.variants ?? []) {
    if (v.features.includes('subgroups') && !hasSubgroups) continue;
    await measure(l, `${chosen} ${v.tag}: ${v.wgsl.match(/archetype: (.*)/)?.[1]}`, { ...v, workgroups });
  }
  await measure(l, `${chosen} portable: ${kernel.wgsl.match(/archetype: (.*)/)?.[1]}`, { ...kernel, workgroups });
}

// --- cases ------------------------------------------------------------------------------

const tiledCases: Case[] = shapes
  ? [
      { label: '4224x4096x4096', m: 4224, k: 4096, n: 4096 },
      { label: '4096³', m: 4096, k: 4096, n: 4096 },
      // 496 blocks of 128×256: 3.76 waves, where torch's time tells whether its last wave costs a whole one
      { label: '3968x4096x4096', m: 3968, k: 4096, n: 4096, chosenOnly: true },
    ]
  : small
  ? [
      { label: '96x80x72', m: 96, k: 80, n: 72 },
      { label: '130x67x129', m: 130, k: 67, n: 129 },
      { label: '70x64x36 Aᵀ', m: 70, k: 64, n: 36, transposeA: true },
      { label: '70x64x36 Bᵀ fused b2', m: 70, k: 64, n: 36, transposeB: true, fused: true, batch: 2 },
    ]
  : [
      { label: '1024³', m: 1024, k: 1024, n: 1024 },
      { label: '2048³', m: 2048, k: 2048, n: 2048 },
      { label: '4096³', m: 4096, k: 4096, n: 4096 },
      { label: '8192³', m: 8192, k: 8192, n: 8192 },
      { label: '128x576x1536', m: 128, k: 576, n: 1536 },
      { label: '2048x576x1536', m: 2048, k: 576, n: 1536 },
      { label: '4096³ fused', m: 4096, k: 4096, n: 4096, fused: true },
      { label: '2048³ fused', m: 2048, k: 2048, n: 2048, fused: true },
      { label: '3072³', m: 3072, k: 3072, n: 3072 },
      // 528 blocks of 128×256: four full waves of 132 SMs, where 4096³'s 512 leave 16 idle in the last
      { label: '4224x4096x4096', m: 4224, k: 4096, n: 4096 },
      { label: '4096³ Aᵀ', m: 4096, k: 4096, n: 4096, transposeA: true },
      { label: '4096³ Bᵀ', m: 4096, k: 4096, n: 4096, transposeB: true },
      { label: '2048x576x1536 Bᵀ fused', m: 2048, k: 576, n: 1536, transposeB: true, fused: true },
    ];
const gemvCases: Case[] = shapes
  ? []
  : small
  ? [
      { label: 'M=1 K=300 N=260', m: 1, k: 300, n: 260 },
      { label: 'M=5 K=129 N=66 Bᵀ', m: 5, k: 129, n: 66, transposeB: true },
      { label: 'M=16 K=64 N=48 fused', m: 16, k: 64, n: 48, fused: true },
    ]
  : [
      { label: 'M=1 K=N=4096', m: 1, k: 4096, n: 4096 },
      { label: 'M=16 K=N=4096', m: 16, k: 4096, n: 4096 },
      { label: 'M=1 K=N=4096 Bᵀ', m: 1, k: 4096, n: 4096, transposeB: true },
      { label: 'M=16 K=N=4096 Bᵀ', m: 16, k: 4096, n: 4096, transposeB: true },
      { label: 'M=16 K=N=4096 fused', m: 16, k: 4096, n: 4096, fused: true },
      { label: 'M=8 K=N=4096', m: 8, k: 4096, n: 4096 },
      { label: 'M=16 K=N=4096 Bᵀ fused', m: 16, k: 4096, n: 4096, transposeB: true, fused: true },
    ];

const sweepTilings: Record<string, TileConfig> = {
  t128x128x16: { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8, stages: 1 },
  t128x128x16np: { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8, stages: 1, prefetch: false },
  t128x128x8np: { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8, stages: 1, prefetch: false },
  t128x128x16pl: { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8, stages: 1, pipelined: true },
  t128x128x16nppl: { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8, stages: 1, prefetch: false, pipelined: true },
  t128x128x32np: { bm: 128, bn: 128, bk: 32, tm: 8, tn: 8, stages: 1, prefetch: false },
  t128x128x32nppl: { bm: 128, bn: 128, bk: 32, tm: 8, tn: 8, stages: 1, prefetch: false, pipelined: true },
  t128x256x16np: { bm: 128, bn: 256, bk: 16, tm: 8, tn: 8, stages: 1, prefetch: false },
  t64x128x16: { bm: 64, bn: 128, bk: 16, tm: 8, tn: 8, stages: 1 },
  t64x128x16np: { bm: 64, bn: 128, bk: 16, tm: 8, tn: 8, stages: 1, prefetch: false },
  t64x64x16: { bm: 64, bn: 64, bk: 16, tm: 8, tn: 8, stages: 1 },
  t64x64x16np: { bm: 64, bn: 64, bk: 16, tm: 8, tn: 8, stages: 1, prefetch: false },
  t64x64x16pl: { bm: 64, bn: 64, bk: 16, tm: 8, tn: 8, stages: 1, pipelined: true },
  t64x64x32np: { bm: 64, bn: 64, bk: 32, tm: 8, tn: 8, stages: 1, prefetch: false },
};
// --shapes: A·B's kernel as the chooser takes it (128×256 blocks, 8×16 per invocation, one
// 16-deep stage, 256 invocations, one workgroup per SM), beside the other ways of writing that
// loop (TileConfig's options that change no value): two stages, one barrier per slice; 128
// invocations in 128×128 or 64×256 blocks, two workgroups per SM whose barriers need not
// meet; the next step's workgroup-memory reads spread among this step's products, as
// cuBLAS's kernel for this product spaces its shared loads.
const T16 = TILINGS.t128x256x16;
const CHOSEN_AB = waveTilings(NVIDIA_HOPPER.tuning.matmul).find(([name]) => name === 'A·B large')![1];
const SHAPE_SWEEP: TileConfig[] = [
  CHOSEN_AB,
  ...[T16, TILINGS.t128x256x8].flatMap((t): TileConfig[] => [
    { ...t, stages: 2 },
    { ...t, stages: 2, pipelined: true },
    { ...t, stages: 2, pipelined: true, readAhead: 2 },
    { ...t, stages: 2, pipelined: true, readAhead: 2, storeStep: t.bk / 2 },
  ]),
  ...[
    { bm: 128, bn: 128 },
    { bm: 64, bn: 256 },
  ].flatMap((block): TileConfig[] => {
    const t: TileConfig = { ...block, bk: 16, tm: 8, tn: 16, stages: 1 };
    return [t, { ...t, pipelined: true }, { ...t, pipelined: true, readAhead: 2, barrierFirst: true }, { ...t, bk: 8, pipelined: true, readAhead: 2, barrierFirst: true }, { ...t, bk: 8, stages: 2, pipelined: true }];
  }),
  ...[4, 8, 16, 21].map((readSpacing): TileConfig => ({ ...CHOSEN_AB, readSpacing })),
];
const sweepGemv = (c: Case): GemvConfig[] => {
  const out: GemvConfig[] = [];
  for (const lanes of [2, 4, 8]) for (const unroll of [1, 2]) out.push({ lanes, unroll, subgroups: false });
  if (hasSubgroups && c.transposeB) for (const unroll of [1, 2]) out.push({ lanes: 1, unroll, subgroups: true });
  return out;
};

const started = performance.now();
for (const c of [...tiledCases, ...gemvCases]) {
  const l = load(c);
  try {
    await measureChosen(l);
    // reference points beside the chosen kernels: the fused product with the other large
    // blocks, and the subgroups variant with its own grid of 4-column workgroups
    if (!sweep && c.fused && c.m > 16 && !small) {
      for (const t of [TILINGS.t128x128x16, TILINGS.t64x128x16]) await measure(l, `block ${describeTiling(t)}`, tiledKernel(l.problem, t));
    }
    if (!sweep && c.transposeB && c.m <= 16 && hasSubgroups) {
      const config = { lanes: 1, unroll: 1, subgroups: true };
      await measure(l, describeGemv(config), gemvKernel(l.problem, config));
    }
    if (shapes && !c.chosenOnly) for (const config of SHAPE_SWEEP) await measure(l, `shape ${describeTiling(config)}`, tiledKernel(l.problem, config));
    if (sweep) {
      if (c.m > 16) {
        for (const [name, config] of Object.entries(sweepTilings)) {
          const threads = (config.bm / config.tm) * (config.bn / config.tn);
          if (threads > device.limits.maxComputeInvocationsPerWorkgroup) continue;
          if (config.stages * config.bk * (config.bm + config.bn) * 4 > device.limits.maxComputeWorkgroupStorageSize) continue;
          await measure(l, `${name}: ${describeTiling(config)}`, tiledKernel(l.problem, config));
        }
      } else {
        for (const config of sweepGemv(c)) await measure(l, describeGemv(config), gemvKernel(l.problem, config));
      }
    }
  } finally {
    release(l);
  }
}

// --- through a compiled plan: the runtime picks the variant -------------------------------

const planCases: Case[] = shapes ? [] : small ? [{ label: 'plan 96x80x72', m: 96, k: 80, n: 72 }] : [
  { label: 'plan 4096³ fused', m: 4096, k: 4096, n: 4096, fused: true },
  { label: 'plan M=16 K=N=4096', m: 16, k: 4096, n: 4096 },
  { label: 'plan M=16 K=N=4096 Bᵀ fused', m: 16, k: 4096, n: 4096, transposeB: true, fused: true },
];
for (const c of planCases) {
  const { graph, shapes } = build(c);
  const data = shapes.map((s, i) => randomData(s.reduce((x, y) => x * y, 1), i + 1));
  const plan = await compileGraph(graph, { optimize: false, targets: [NVIDIA_HOPPER] });
  const session = await loadPlan(plan.bundle, device);
  const names = graph.nodes.filter((n) => n.op === 'input').map((n) => n.name);
  const outputs = await session.run(Object.fromEntries(names.map((name, i) => [name, data[i]])));
  const error = check({ c, data } as Loaded, outputs.y as Float32Array);
  // the runtime's rule: the first variant whose features and own limits the device has
  const limits = device.limits as unknown as Record<string, number>;
  const variants = plan.manifest.kernels.map((k) => {
    const taken = k.variants.find((v) => v.features.every((f) => device.features.has(f)) && Object.entries(v.requiredLimits ?? {}).every(([l, n]) => limits[l] >= (n ?? 0)));
    return `${k.name}: ${k.variants.map((v) => `${v === taken ? '*' : ''}${v.wgsl.split('/').pop()}`).join(' ')}`;
  });
  log(`${c.label}: through loadPlan/run, sampled error ${error.toExponential(1)}${error > 1e-4 ? ' WRONG' : ''}; variants (* = taken) ${variants.join('; ')}`);
  session.destroy();
}
/** A whole plan: run once through loadPlan and checked, then timed; one row. */
async function measurePlan(c: Case, data: Float32Array[], feeds: Record<string, Float32Array>, plan: { bundle: Uint8Array }, kernel: string): Promise<void> {
  const session = await loadPlan(plan.bundle, device);
  const error = check({ c, data } as Loaded, (await session.run(feeds)).y as Float32Array);
  session.destroy();
  let us = NaN;
  if (canTime) {
    const timed = await prepareTimedPlan(plan.bundle, device, 'run', feeds);
    // a long warm-up: the clocks drop while the host compiles
    us = (await measureGpuTime(timed, { passes: 5, warmupUs: 1_000_000 })).medianUs;
    timed.destroy();
  }
  rows.push({ case: c.label, kernel, us, tflops: flopsOf(c) / us / 1e6, gbps: bytesOf(c) / us / 1e3, error, workgroups: '-' });
  log(`${c.label.padEnd(26)} ${kernel.padEnd(58)} ${timing(us, `${(flopsOf(c) / us / 1e6).toFixed(1).padStart(6)} TFLOP/s`)}  err ${error.toExponential(1)}${error > 1e-4 ? '  WRONG' : ''}`);
}

// --- split-K: the whole plan (partial products, sum) at several slice counts -------------

const splitCases: Case[] = shapes
  ? []
  : small
  ? [{ label: 'split 40x256x36', m: 40, k: 256, n: 36 }]
  : [
      { label: 'split 128x1536x576', m: 128, k: 1536, n: 576 },
      { label: 'split 128x4096x576', m: 128, k: 4096, n: 576 },
      { label: 'split 64x4096x1024', m: 64, k: 4096, n: 1024 },
      { label: 'split 256x1536x576 fused', m: 256, k: 1536, n: 576, fused: true },
    ];
// targetTiles per run (0: the product whole); small runs lower every threshold
const splitTargets = small ? [0, 16] : [0, 132, 264, 528, 1056, 2112];
for (const c of splitCases) {
  const { graph, shapes } = build(c);
  const data = shapes.map((s, i) => randomData(s.reduce((x, y) => x * y, 1), i + 1));
  const feeds = Object.fromEntries(graph.nodes.filter((n) => n.op === 'input').map((n, i) => [n.name, data[i]]));
  for (const target of splitTargets) {
    const splitK = { ...NVIDIA_HOPPER.tuning.splitK!, ...(target === 0 ? { belowTiles: 0 } : small ? { belowTiles: 16, minK: 0, targetTiles: target, minChunk: 32 } : { belowTiles: 1 << 30, targetTiles: target }) };
    const slices = splitKSlices(graph, graph.nodes[graph.outputs[0].node], splitK) ?? 1;
    const plan = await compileGraph(graph, { optimize: true, targets: [withTuning(NVIDIA_HOPPER, { splitK })] });
    await measurePlan(c, data, feeds, plan, `split-K ${slices} slice${slices > 1 ? 's' : ''}${target ? ` (target ${target} tiles)` : ' (whole)'}, ${plan.manifest.entryPoints.run.dispatches.length} dispatches`);
  }
}

// --- stream-K: whole plans (partial tiles, then the product) against the one dispatch -------

const streamCases: Case[] = small
  ? [{ label: 'stream-K 300x96x600 fused', m: 300, k: 96, n: 600, fused: true }]
  : tiledCases.filter((c) => {
      const { graph, node } = build(c);
      return streamKSchedule(graph, node, NVIDIA_HOPPER.tuning.streamK!) !== undefined;
    });
// small: 9 tiles on a pretend 4-SM GPU, runs of at least 32
const streamTuning: StreamKTuning = { ...NVIDIA_HOPPER.tuning.streamK!, ...(small ? { units: 4, minIdleK: 0, minUnitK: 32 } : {}) };
for (const c of streamCases) {
  const { graph, shapes } = build(c);
  const data = shapes.map((s, i) => randomData(s.reduce((x, y) => x * y, 1), i + 1));
  const feeds = Object.fromEntries(graph.nodes.filter((n) => n.op === 'input').map((n, i) => [n.name, data[i]]));
  for (const shared of [false, true]) {
    const streamK = shared ? streamTuning : { ...streamTuning, maxLastWave: 0, maxLastWaveTransposed: 0 };
    const schedule = streamKSchedule(graph, graph.nodes[graph.outputs[0].node], streamK);
    const plan = await compileGraph(graph, { optimize: false, targets: [withTuning(NVIDIA_HOPPER, { streamK })] });
    const kernel = schedule
      ? `chosen plan: stream-K, ${schedule.dataParallel} tiles whole, ${schedule.tiles - schedule.dataParallel} shared by ${schedule.units} runs of ${schedule.unitK}`
      : 'plan without stream-K: one dispatch';
    await measurePlan(c, data, feeds, plan, kernel);
  }
}

log(`ours: ${((performance.now() - started) / 1000).toFixed(0)} s`);

// --- torch ------------------------------------------------------------------------------

const TORCH = String.raw`
import json, sys, torch
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
cases = json.loads(sys.argv[1])
dev = 'cuda'
out = {'torch': torch.__version__, 'device': torch.cuda.get_device_name(0), 'rows': []}
for c in cases:
    m, k, n, b = c['m'], c['k'], c['n'], c.get('batch') or 0
    lead = (b,) if b else ()
    a = torch.rand(*lead, *((k, m) if c.get('transposeA') else (m, k)), device=dev) * 2 - 1
    w = torch.rand(*((n, k) if c.get('transposeB') else (k, n)), device=dev) * 2 - 1
    A = a.transpose(-1, -2) if c.get('transposeA') else a
    B = w.t() if c.get('transposeB') else w
    bias = torch.rand(n, device=dev)
    r = torch.rand(*lead, m, n, device=dev)
    if c.get('fused'):
        f = lambda: torch.nn.functional.gelu(torch.matmul(A, B) + bias) + r
    else:
        f = lambda: torch.matmul(A, B)
    for _ in range(3): f()
    torch.cuda.synchronize()
    flops = 2 * m * n * k * (b or 1)
    reps = max(3, min(2000, int(0.04 / max(flops / 40e12, 4e-6))))
    times = []
    for _ in range(3):
        s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(reps): f()
        e.record(); torch.cuda.synchronize()
        times.append(s.elapsed_time(e) * 1000 / reps)
    times.sort()
    # the kernels torch ran for it, by name (cuBLAS picks by shape)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        f(); torch.cuda.synchronize()
    kernels = sorted({e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA and not e.name.startswith('Memset')})
    out['rows'].append({'case': c['label'], 'us': times[1], 'kernels': kernels})
print(json.dumps(out))
`;

let torch: { torch: string; device: string; rows: { case: string; us: number; kernels: string[] }[] } | undefined;
if (withTorch) {
  const all = [...tiledCases, ...gemvCases, ...splitCases, ...streamCases.filter((c) => !tiledCases.includes(c))];
  const child = spawnSync('python3', ['-c', TORCH, JSON.stringify(all)], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (child.status !== 0) log(`torch failed: ${child.error?.message ?? child.stderr}`);
  else {
    torch = JSON.parse(child.stdout.trim().split('\n').pop()!);
    log(`\ntorch ${torch!.torch} on ${torch!.device}, TF32 off`);
    for (const t of torch!.rows) {
      const c = all.find((x) => x.label === t.case)!;
      const best = rows.filter((r) => r.case === t.case && r.error <= 1e-4).sort((x, y) => x.us - y.us)[0];
      const chosen = rows.filter((r) => r.case === t.case && r.kernel.startsWith('chosen') && r.error <= 1e-4).sort((x, y) => x.us - y.us)[0];
      log(
        `${t.case.padEnd(26)} torch ${t.us.toFixed(1).padStart(9)} µs ${(flopsOf(c) / t.us / 1e6).toFixed(1).padStart(6)} TFLOP/s ${(bytesOf(c) / t.us / 1e3).toFixed(0).padStart(6)} GB/s | ` +
          `ours chosen ${chosen ? `${chosen.us.toFixed(1)} µs (${(t.us / chosen.us).toFixed(2)}x torch speed)` : '-'} | best ${best ? `${best.us.toFixed(1)} µs ${best.kernel.slice(0, 40)}` : '-'}`,
      );
      log(`${''.padEnd(26)} torch's kernels: ${t.kernels.join(', ')}`);
    }
  }
}

if (process.env.OUT) {
  const path = join(process.env.OUT, 'matmul.json');
  writeFileSync(path, JSON.stringify({ date: new Date().toISOString(), adapter: adapterInfo, rows, torch }, null, 2) + '\n');
  log(`wrote ${path}`);
}
await gpu.destroy();
