// The benchmark suite: each workload (matmul at square and transformer shapes, bandwidth-bound
// pointwise and norm kernels, softmax, attention, the MNIST MLP train step, a SmolLM2-width
// transformer block forward and train step) compiled by the real compiler, loaded and run
// by the real runtime, timed on the GPU from timestamp queries (bench/gpu-time.ts), then the
// same workloads in PyTorch on the same GPU (bench/suite_torch.py, one child process at the
// end) and one table: workload | ours µs | torch µs | ratio | rates.
//
//   npx esbuild bench/suite.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/suite.mjs
//   cp bench/suite_torch.py .device/
//   node .device/suite.mjs [--only matmul,softmax] [--passes 9] [--target-ms 10] [--gpu-warmup-ms 1000]
//                          [--warmup 3] [--breakdown] [--no-torch | --py PATH] [--list]
//                          [--target nvidia-hopper | generic | …] [--wgsl: hash each workload's kernels, no GPU]
//
// With $OUT set, everything is also written to $OUT/suite.json.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TrainingSpec } from '../compiler/autodiff/train';
import { compileGraph } from '../compiler/compile';
import type { Target } from '../compiler/target/target';
import { BUILTIN_TARGETS, NVIDIA_HOPPER, parseTargets } from '../compiler/target/targets';
import { Graph, type Tensor } from '../compiler/ir/graph';
import { BATCH as MNIST_BATCH, mnist } from '../examples/mnist/model';
import { loadPlan, loadTrainingPlan, type NodeGPU, type TensorData } from '../runtime/index';
import { benchDevice } from './bench-device';
import { hyperFeed, measureGpuTime, median, prepareTimedPlan, type GpuTime } from './gpu-time';
import { attentionError, causalMask, uniform } from './bench-data';
import { decoderBlock, SMOLLM2_BLOCK, type BlockShape } from './decoder-block';

// --- workloads ---------------------------------------------------------------------------

type Feeds = Record<string, TensorData>;
type Outputs = Record<string, Float32Array>;

interface Workload {
  name: string;
  /** what --only matches besides the name */
  group: string;
  /** records the graph: inputs, parameters, outputs */
  build: (g: Graph) => void;
  training?: TrainingSpec;
  /** nominal work per run, for the derived rate: FLOPs (TFLOP/s) or bytes moved (GB/s) */
  flops?: number;
  bytes?: number;
  /** the same workload for bench/suite_torch.py: its kind and parameters */
  torch: Record<string, unknown> & { kind: string };
  /** feeds other than uniform [-1, 1) floats (integer labels, ...) */
  feed?: (name: string, length: number, next: () => number) => TensorData | undefined;
  /** spot check of the outputs against a CPU reference: the largest normalized error */
  check?: (feeds: Record<string, Float32Array>, outputs: Outputs) => number;
  /** tolerance of check (default 1e-3) */
  tolerance?: number;
  /** what `flops` counts: floating-point (TFLOP/s, the default) or integer operations (TOPS) */
  ops?: 'integer';
  /** time the portable kernels rather than the variants the device would run */
  portable?: boolean;
}

function matmul(m: number, k: number, n: number): Workload {
  return {
    name: `matmul ${m}x${k}x${n}`,
    group: 'matmul',
    build: (g) => g.output('c', g.matmul(g.input('a', [m, k]), g.input('b', [k, n]))),
    flops: 2 * m * k * n,
    torch: { kind: 'matmul', m, k, n },
    check: (f, o) => {
      const [a, b, c] = [f.a, f.b, o.c];
      let worst = 0;
      for (const [i, j] of samples(64, m, n)) {
        let sum = 0;
        let norm = 0;
        for (let p = 0; p < k; p++) {
          const t = a[i * k + p] * b[p * n + j];
          sum += t;
          norm += t * t;
        }
        worst = Math.max(worst, Math.abs(c[i * n + j] - sum) / Math.sqrt(norm + 1e-30));
      }
      return worst;
    },
  };
}

/**
 * [m, k] i8 · [k, n] i8 → i32 (on a device with subgroup matrices, its tensor cores; with
 * `portable`, the fallback kernel every device runs). Torch: torch._int_mm.
 */
function matmulInt8(m: number, k: number, n: number, portable = false): Workload {
  return {
    name: `int8 matmul ${m}x${k}x${n}${portable ? ' (portable)' : ''}`,
    group: 'int8',
    build: (g) => g.output('c', g.matmulInt8(g.input('a', [m, k], 'i8'), g.input('b', [k, n], 'i8'))),
    flops: 2 * m * k * n,
    torch: { kind: 'int_mm', m, k, n },
    portable,
    feed: (_name, length, next) => Int8Array.from({ length }, () => Math.floor(next() * 128)),
    // exact: the i32 result read back as f32 is the exact sum rounded once; the error is the count of wrong samples
    check: (f, o) => {
      const [a, b, c] = [f.a, f.b, o.c];
      let wrong = 0;
      for (const [i, j] of samples(64, m, n)) {
        let sum = 0;
        for (let p = 0; p < k; p++) sum += a[i * k + p] * b[p * n + j];
        if (c[i * n + j] !== Math.fround(sum)) wrong++;
      }
      return wrong;
    },
    tolerance: 0.5,
    ops: 'integer',
  };
}

const MB256 = [8192, 8192]; // 64 Mi f32 = 256 MiB

function elementwiseAdd(): Workload {
  const n = MB256[0] * MB256[1];
  return {
    name: 'add 2x256MiB',
    group: 'elementwise',
    build: (g) => g.output('c', g.add(g.input('a', MB256), g.input('b', MB256))),
    bytes: 3 * 4 * n,
    torch: { kind: 'add', shape: MB256 },
    check: (f, o) => sampleMax(n, (i) => Math.abs(o.c[i] - (f.a[i] + f.b[i]))),
  };
}

function geluChain(): Workload {
  const n = MB256[0] * MB256[1];
  return {
    name: 'gelu(x*1.5+0.5) 256MiB',
    group: 'elementwise',
    build: (g) => g.output('y', g.gelu(g.add(g.mul(g.input('x', MB256), 1.5), 0.5))),
    bytes: 2 * 4 * n,
    torch: { kind: 'gelu_chain', shape: MB256, scale: 1.5, shift: 0.5 },
    check: (f, o) => sampleMax(n, (i) => Math.abs(o.y[i] - gelu(f.x[i] * 1.5 + 0.5))),
  };
}

function norm(kind: 'layer_norm' | 'rms_norm', rows: number, cols: number): Workload {
  const eps = kind === 'layer_norm' ? 1e-5 : 1e-6;
  return {
    name: `${kind === 'layer_norm' ? 'layerNorm' : 'rmsNorm'} ${rows}x${cols}`,
    group: 'norm',
    build: (g) => {
      const x = g.input('x', [rows, cols]);
      const gamma = g.input('gamma', [cols]);
      g.output('y', kind === 'layer_norm' ? g.layerNorm(x, gamma, g.input('beta', [cols]), { eps }) : g.rmsNorm(x, gamma, { eps }));
    },
    bytes: 2 * 4 * rows * cols,
    torch: { kind, rows, cols, eps },
    check: (f, o) => {
      let worst = 0;
      for (const [r] of samples(8, rows, 1)) {
        const x = f.x.subarray(r * cols, (r + 1) * cols);
        let mean = 0;
        if (kind === 'layer_norm') mean = x.reduce((s, v) => s + v, 0) / cols;
        const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / cols;
        const inv = 1 / Math.sqrt(variance + eps);
        for (let c = 0; c < cols; c++) {
          const want = (x[c] - mean) * inv * f.gamma[c] + (kind === 'layer_norm' ? f.beta[c] : 0);
          worst = Math.max(worst, Math.abs(o.y[r * cols + c] - want));
        }
      }
      return worst;
    },
  };
}

function softmax(heads: number, seq: number): Workload {
  const rows = heads * seq;
  return {
    name: `softmax ${rows}x${seq}`,
    group: 'softmax',
    build: (g) => g.output('y', g.softmax(g.input('x', [rows, seq]))),
    bytes: 2 * 4 * rows * seq,
    torch: { kind: 'softmax', rows, cols: seq },
    check: (f, o) => {
      let worst = 0;
      for (const [r] of samples(8, rows, 1)) {
        const x = f.x.subarray(r * seq, (r + 1) * seq);
        const max = x.reduce((m, v) => Math.max(m, v), -Infinity);
        const sum = x.reduce((s, v) => s + Math.exp(v - max), 0);
        for (let c = 0; c < seq; c++) worst = Math.max(worst, Math.abs(o.y[r * seq + c] - Math.exp(x[c] - max) / sum));
      }
      return worst;
    },
  };
}

/**
 * q, k, v [heads, seq, d]; without a mask (a scalar 0) or with the additive causal mask
 * [seq, seq] as a constant, as models write it (the compiler makes that attention causal).
 */
function attention(heads: number, seq: number, d: number, causal: boolean): Workload {
  const scale = 1 / Math.sqrt(d);
  return {
    name: `attention ${heads}x${seq}x${d}${causal ? ' causal' : ''}`,
    group: 'attention',
    build: (g) => {
      const [q, k, v] = ['q', 'k', 'v'].map((n) => g.input(n, [heads, seq, d]));
      const mask = causal ? g.constant(causalMask(seq), [seq, seq], 'causal_mask') : g.constant(0);
      g.output('o', g.attention(q, k, v, mask, { scale }));
    },
    // QKᵀ and PV in full, masked or not (both sides get the same count)
    flops: 4 * heads * seq * seq * d,
    torch: { kind: 'attention', heads, seq, d, causal },
    check: (f, o) => attentionError(f, o.o, { seq, d, causal }, samples(8, heads, seq)),
  };
}

function mnistTrainStep(): Workload {
  const forward = 2 * MNIST_BATCH * (784 * 128 + 128 * 10);
  return {
    name: `MNIST MLP train step (batch ${MNIST_BATCH}, Adam)`,
    group: 'train',
    build: (g) => {
      for (const [key, t] of Object.entries(mnist.build(g) ?? {})) g.output(key, t);
    },
    training: mnist.train,
    flops: 3 * forward,
    torch: { kind: 'mlp_train', batch: MNIST_BATCH, lr: 1e-3 },
    feed: (name, length, next) => (name === 'labels' ? Int32Array.from({ length }, () => Math.floor(((next() + 1) / 2) * 10) % 10) : undefined),
  };
}

function blockFlops(s: BlockShape): number {
  const kv = (s.kvHeads * s.hidden) / s.heads;
  const projections = 2 * s.seq * s.hidden * (2 * s.hidden + 2 * kv + 3 * s.ffn);
  return projections + 4 * s.seq * s.seq * s.hidden;
}

function transformerBlock(train: boolean): Workload {
  const s = SMOLLM2_BLOCK;
  return {
    name: `SmolLM2 block seq ${s.seq} ${train ? 'train step (AdamW)' : 'forward'}`,
    group: 'block',
    build: (g) => {
      const y = decoderBlock(g, s, g.input('x', [s.seq, s.hidden]));
      g.output('y', y);
      if (train) g.output('loss', g.mseLoss(y, g.input('target', [s.seq, s.hidden])));
    },
    training: train ? { loss: 'loss', optimizer: { kind: 'adamw', lr: 3e-4 } } : undefined,
    // the train step counts 3x the forward FLOPs (forward, and two products per matmul backward)
    flops: (train ? 3 : 1) * blockFlops(s),
    torch: { kind: 'block', ...s, train },
  };
}

const WORKLOADS: Workload[] = [
  matmul(1024, 1024, 1024),
  matmul(2048, 2048, 2048),
  matmul(4096, 4096, 4096),
  matmul(8192, 8192, 8192),
  matmul(128, 576, 1536),
  matmul(128, 1536, 576),
  matmul(2048, 576, 1536),
  matmul(1, 4096, 4096),
  matmul(16, 4096, 4096),
  matmulInt8(4096, 4096, 4096),
  matmulInt8(4096, 4096, 4096, true),
  matmulInt8(8192, 8192, 8192),
  matmulInt8(2048, 576, 1536),
  elementwiseAdd(),
  geluChain(),
  norm('layer_norm', 8192, 4096),
  norm('rms_norm', 8192, 4096),
  softmax(9, 128),
  softmax(9, 512),
  softmax(9, 2048),
  attention(9, 128, 64, false),
  attention(9, 512, 64, false),
  attention(9, 2048, 64, false),
  attention(9, 2048, 64, true),
  mnistTrainStep(),
  transformerBlock(false),
  transformerBlock(true),
];

// --- helpers -----------------------------------------------------------------------------

/** n pseudo-random index pairs in [0, rows) x [0, cols), first and last corners included. */
function samples(n: number, rows: number, cols: number): [number, number][] {
  const next = uniform(12345);
  const pick = (m: number) => Math.min(m - 1, Math.floor(((next() + 1) / 2) * m));
  const out: [number, number][] = [
    [0, 0],
    [rows - 1, cols - 1],
  ];
  while (out.length < n) out.push([pick(rows), pick(cols)]);
  return out;
}

function sampleMax(n: number, error: (i: number) => number): number {
  let worst = 0;
  for (const [i] of samples(4096, n, 1)) worst = Math.max(worst, error(i));
  return worst;
}

/** erf by Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7), for the exact GELU. */
function erf(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return x >= 0 ? y : -y;
}
const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));

// --- options -----------------------------------------------------------------------------

interface Options {
  only: string[];
  passes: number;
  targetMs: number;
  /** awaited session runs before timing */
  warmup: number;
  /** GPU work at the timed reps before the timed passes, per workload (both sides) */
  gpuWarmupMs: number;
  py: string | null;
  list: boolean;
  /** per-dispatch breakdown of multi-dispatch workloads */
  breakdown: boolean;
  /** print a hash of each workload's kernel sources and stop (no GPU) */
  wgsl: boolean;
  /** the compile target (default nvidia-hopper, the GPU class the suite is tuned on) */
  target: Target;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { only: [], passes: 9, targetMs: 10, warmup: 3, gpuWarmupMs: 1000, py: fileURLToPath(new URL('./suite_torch.py', import.meta.url)), list: false, breakdown: false, wgsl: false, target: NVIDIA_HOPPER };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const positive = () => {
      const n = Number(value());
      if (!(n > 0)) throw new Error(`${flag} needs a positive number`);
      return n;
    };
    if (flag === '--only') options.only.push(...value().split(',').map((s) => s.trim().toLowerCase()).filter((s) => s));
    else if (flag === '--passes') options.passes = Math.round(positive());
    else if (flag === '--target-ms') options.targetMs = positive();
    else if (flag === '--warmup') options.warmup = Math.round(positive());
    else if (flag === '--gpu-warmup-ms') options.gpuWarmupMs = positive();
    else if (flag === '--py') options.py = value();
    else if (flag === '--no-torch') options.py = null;
    else if (flag === '--list') options.list = true;
    else if (flag === '--breakdown') options.breakdown = true;
    else if (flag === '--wgsl') options.wgsl = true;
    else if (flag === '--target') [options.target] = parseTargets(value());
    else throw new Error(`unknown argument "${flag}" (options: --only a,b --passes N --target-ms MS --warmup N --gpu-warmup-ms MS --py PATH --no-torch --list --breakdown --wgsl --target NAME)`);
  }
  return options;
}

const selected = (w: Workload, only: string[]) => only.length === 0 || only.some((o) => w.name.toLowerCase().includes(o) || w.group === o);

// --- measuring ours ----------------------------------------------------------------------

interface OursResult {
  compileMs: number;
  dispatches: number;
  kernels: string[];
  /** the WGSL sections of the kernel variants the timed copy ran */
  variants: string[];
  gpu: GpuTime;
  /** awaited session.run / step wall time, median µs (includes upload and read-back) */
  runUs: number;
  runs: number;
  /** the spot check's largest error, or for training the loss before and after */
  check?: { error: number; tolerance: number; ok: boolean };
  loss?: { first: number; last: number };
  slowest?: { node: string; kernel: string; workgroups: string; us: number }[];
}

function makeFeeds(workload: Workload, inputs: { name: string; shape: number[]; dtype: string }[]): Feeds {
  const next = uniform(7);
  const feeds: Feeds = {};
  for (const input of inputs) {
    const length = input.shape.reduce((n, d) => n * d, 1);
    const custom = workload.feed?.(input.name, length, next);
    if (custom) feeds[input.name] = custom;
    else if (input.dtype === 'f32') {
      const data = new Float32Array(length);
      for (let i = 0; i < length; i++) data[i] = next();
      feeds[input.name] = data;
    } else throw new Error(`no feed for ${input.dtype} input "${input.name}"`);
  }
  return feeds;
}

async function measureOurs(workload: Workload, gpu: NodeGPU, options: Options): Promise<OursResult> {
  const graph = new Graph(workload.name.replace(/[^A-Za-z0-9_]+/g, '_'));
  workload.build(graph);
  const started = performance.now();
  const compiled = await compileGraph(graph, { seed: 1, training: workload.training, targets: [options.target] });
  const compileMs = performance.now() - started;
  const { manifest } = compiled;
  const entry = workload.training ? manifest.training!.entry : 'run';
  const desc = manifest.entryPoints[entry];
  const hyperName = manifest.training?.hyper.input;
  const feeds = makeFeeds(workload, desc.inputs.filter((i) => i.name !== hyperName));

  // the real runtime: load, run (check), warm up, awaited wall time
  let run: () => Promise<Outputs | number>;
  let destroy: () => void;
  if (workload.training) {
    const session = await loadTrainingPlan(compiled.bundle, gpu.device);
    run = () => session.step(feeds);
    destroy = () => session.destroy();
  } else {
    const session = await loadPlan(compiled.bundle, gpu.device);
    run = () => session.run(feeds, entry);
    destroy = () => session.destroy();
  }
  let check: OursResult['check'];
  let loss: OursResult['loss'];
  const times: number[] = [];
  try {
    const first = await run();
    if (typeof first === 'number') {
      loss = { first, last: NaN };
    } else if (workload.check) {
      const error = workload.check(feeds as Record<string, Float32Array | Int8Array> as Record<string, Float32Array>, first);
      const tolerance = workload.tolerance ?? 1e-3;
      check = { error, tolerance, ok: error <= tolerance };
    } else {
      const finite = Object.values(first).every((o) => o.every(Number.isFinite));
      check = { error: finite ? 0 : Infinity, tolerance: 0, ok: finite };
    }
    for (let k = 1; k < options.warmup; k++) await run();
    const budget = performance.now() + 1500;
    while (times.length < 3 || (times.length < 30 && performance.now() < budget)) {
      const t0 = performance.now();
      const result = await run();
      times.push((performance.now() - t0) * 1000);
      if (loss && typeof result === 'number') loss.last = result;
    }
  } finally {
    destroy();
  }

  // GPU time from timestamps on a rebuilt copy of the same entry
  const timed = await prepareTimedPlan(compiled.bundle, gpu.device, entry, { ...feeds, ...hyperFeed(manifest) }, { portable: workload.portable });
  try {
    const gpuTime = await measureGpuTime(timed, { passes: options.passes, targetPassUs: options.targetMs * 1000, warmupUs: options.gpuWarmupMs * 1000 });
    let slowest: OursResult['slowest'];
    if (options.breakdown && timed.dispatches.length > 1) {
      const per = await timed.perDispatch(Math.max(1, Math.min(200, gpuTime.reps)));
      slowest = per.sort((a, b) => b.us - a.us).slice(0, 5);
    }
    return {
      compileMs,
      dispatches: desc.dispatches.length,
      kernels: [...new Set(desc.dispatches.map((d) => manifest.kernels[d.kernel].name))],
      variants: timed.variants,
      gpu: gpuTime,
      runUs: median(times),
      runs: times.length,
      check,
      loss,
      slowest,
    };
  } finally {
    timed.destroy();
  }
}

// --- torch -------------------------------------------------------------------------------

interface TorchResult {
  name: string;
  us?: number;
  reps?: number;
  passUs?: number[];
  note?: string;
  error?: string;
}
interface TorchReport {
  torch: string;
  cuda: string;
  device: string;
  tf32: boolean;
  results: TorchResult[];
}

function runTorch(workloads: Workload[], options: Options): TorchReport {
  const dir = mkdtempSync(join(tmpdir(), 'suite-'));
  try {
    const spec = join(dir, 'spec.json');
    writeFileSync(spec, JSON.stringify({ passes: options.passes, targetMs: options.targetMs, warmupMs: options.gpuWarmupMs, workloads: workloads.map((w) => ({ name: w.name, ...w.torch })) }));
    const child = spawnSync('python3', [options.py!, spec], { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'inherit'] });
    if (child.error) throw new Error(`could not start python3 ${options.py}: ${child.error.message}`);
    if (child.status !== 0) throw new Error(`python3 ${options.py} exited with ${child.status}`);
    return JSON.parse(child.stdout.trim().split('\n').pop() ?? '') as TorchReport;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- report ------------------------------------------------------------------------------

function rate(w: Workload, us: number | undefined): string {
  if (us === undefined || !(us > 0)) return '';
  if (w.flops) return `${(w.flops / us / 1e6).toFixed(w.flops / us / 1e6 < 1 ? 3 : 1)} ${w.ops === 'integer' ? 'TOPS' : 'TFLOP/s'}`;
  if (w.bytes) return `${((w.bytes / us) * 1e-3).toFixed(0)} GB/s`;
  return '';
}

const fmt = (us: number | undefined) => (us === undefined ? '' : us >= 100 ? us.toFixed(0) : us >= 10 ? us.toFixed(1) : us.toFixed(2));

/** The target the runtime picks on this device from a plan compiled for every built-in target. */
async function chosenTarget(device: GPUDevice) {
  const g = new Graph('which_target');
  g.output('y', g.relu(g.input('x', [4])));
  const session = await loadPlan((await compileGraph(g, { targets: BUILTIN_TARGETS, weights: 'none' })).bundle, device);
  session.destroy();
  return session.target;
}

async function main() {
  const options = parseOptions(process.argv.slice(2));
  const workloads = WORKLOADS.filter((w) => selected(w, options.only));
  if (options.wgsl) {
    // the kernels' sources, hashed per workload: compare compiler versions without a GPU
    const { createHash } = await import('node:crypto');
    for (const w of workloads) {
      const graph = new Graph(w.name.replace(/[^A-Za-z0-9_]+/g, '_'));
      w.build(graph);
      const { bundle, manifest } = await compileGraph(graph, { seed: 1, training: w.training, targets: [options.target] });
      const sections = manifest.sections.filter((s) => s.name.endsWith('.wgsl')).map((s) => s.sha256).sort();
      console.log(`${createHash('sha256').update(sections.join()).digest('hex').slice(0, 16)} ${String(sections.length).padStart(3)} sources  ${w.name}`);
      void bundle;
    }
    return;
  }
  if (options.list || workloads.length === 0) {
    for (const w of WORKLOADS) console.log(`${w.group.padEnd(12)} ${w.name}`);
    if (workloads.length === 0) console.error(`--only ${options.only.join(',')} matches no workload`);
    return;
  }

  // unsafe APIs: the adapter then offers subgroup matrices, which the int8 variants use
  const bench = await benchDevice({ allowUnsafeApis: true });
  let gpu = await bench.current();
  const { vendor, architecture, description } = gpu.adapter.info;
  const adapter = `${gpu.backend}: ${[vendor, architecture, description].filter((s) => s).join(' ')}`;
  console.error(`ours: ${adapter}; timestamp-query ${gpu.device.features.has('timestamp-query') ? 'yes' : 'no (wall-clock fallback)'}`);
  const chosen = await chosenTarget(gpu.device);
  console.error(`ours: adapter ${JSON.stringify(gpu.adapter.info)}; a plan for every built-in target runs ${chosen.name} here (${chosen.reason}); timing --target ${options.target.name}`);

  const ours = new Map<string, OursResult | { error: string }>();
  for (const w of workloads) {
    const t0 = performance.now();
    try {
      gpu = await bench.current();
      const result = await measureOurs(w, gpu, options);
      ours.set(w.name, result);
      console.error(`ours  ${w.name}: ${fmt(result.gpu.medianUs)} µs (${result.gpu.reps} reps/pass, compile ${result.compileMs.toFixed(0)} ms, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      ours.set(w.name, { error: message });
      console.error(`ours  ${w.name}: FAILED: ${message}`);
    }
  }
  await bench.destroy();

  let torch: TorchReport | undefined;
  let torchError: string | undefined;
  if (options.py) {
    try {
      torch = runTorch(workloads, options);
    } catch (error) {
      torchError = error instanceof Error ? error.message : String(error);
      console.error(`torch: FAILED: ${torchError}`);
    }
  }
  const torchOf = (name: string) => torch?.results.find((r) => r.name === name);

  console.log(`ours:  ${adapter}; plans compiled for --target ${options.target.name}; GPU time from ${[...ours.values()].some((r) => 'gpu' in r && r.gpu.clock === 'wall') ? 'wall clock (no timestamp-query)' : 'timestamp queries'}, median of ${options.passes} passes of ~${options.targetMs} ms after ${options.gpuWarmupMs} ms of warm-up`);
  if (torch) console.log(`torch: ${torch.torch} (CUDA ${torch.cuda}) on ${torch.device}, eager, TF32 ${torch.tf32 ? 'on' : 'off'}; CUDA events, median of ${options.passes} passes of ~${options.targetMs} ms after ${options.gpuWarmupMs} ms of warm-up`);
  console.log('');
  const header = ['workload', 'ours µs', 'torch µs', 'ours/torch', 'ours rate', 'torch rate', 'ours min–max', 'check', 'ours run µs', 'dispatches'];
  const rows: string[][] = [];
  for (const w of workloads) {
    const o = ours.get(w.name)!;
    const t = torchOf(w.name);
    const oursUs = 'gpu' in o ? o.gpu.medianUs : undefined;
    const torchUs = t?.us;
    const checkText =
      'error' in o ? `FAILED: ${o.error.split('\n')[0].slice(0, 160)}` : o.loss ? `loss ${o.loss.first.toFixed(3)}→${o.loss.last.toFixed(3)}` : o.check
            ? o.check.tolerance === 0
              ? o.check.ok
                ? 'finite'
                : 'NON-FINITE'
              : `${o.check.ok ? 'ok' : 'MISMATCH'} (${o.check.error.toExponential(1)})`
            : '';
    rows.push([
      w.name,
      fmt(oursUs),
      t?.error ? `FAILED: ${t.error.split('\n')[0].slice(0, 80)}` : fmt(torchUs),
      oursUs !== undefined && torchUs ? `${(oursUs / torchUs).toFixed(2)}x` : '',
      rate(w, oursUs),
      rate(w, torchUs),
      'gpu' in o ? `${fmt(Math.min(...o.gpu.passUs))}–${fmt(Math.max(...o.gpu.passUs))}` : '',
      checkText,
      'runUs' in o ? fmt(o.runUs) : '',
      'dispatches' in o ? String(o.dispatches) : '',
    ]);
  }
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) => `| ${cells.map((cell, c) => (c === 0 || c === 7 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join(' | ')} |`;
  console.log(line(header));
  console.log(`| ${widths.map((n, c) => (c === 0 || c === 7 ? '-'.repeat(n) : '-'.repeat(n - 1) + ':')).join(' | ')} |`);
  for (const r of rows) console.log(line(r));
  console.log('');
  console.log('ours µs: GPU time per run from timestamp queries (reps back to back in one compute pass). torch µs: CUDA-event time per call over back-to-back calls.');
  console.log('ratio above 1: ours slower. ours min–max: fastest and slowest pass. ours run µs: awaited session.run()/step() wall time, with input upload and output read-back.');
  for (const t of torch?.results ?? []) if (t.note) console.log(`torch ${t.name}: ${t.note}`);
  for (const [name, o] of ours) {
    // a section kernels/<name>.<tag>.wgsl is a variant; kernels/<name>.wgsl the portable kernel
    const tagged = 'variants' in o ? o.variants.map((v) => v.replace(/^kernels\//, '').replace(/\.wgsl$/, '')).filter((v) => v.includes('.')) : [];
    if (tagged.length) console.log(`ours ${name}: variants ${tagged.join(', ')}`);
    if ('slowest' in o && o.slowest) console.log(`ours ${name}: slowest dispatches ${o.slowest.map((d) => `${d.node} (${d.kernel}) [${d.workgroups}] ${fmt(d.us)} µs`).join(', ')}`);
  }
  if (torchError) console.log(`torch failed: ${torchError}`);

  if (process.env.OUT) {
    const path = join(process.env.OUT, 'suite.json');
    const report = {
      date: new Date().toISOString(),
      argv: process.argv.slice(2),
      options: { ...options, py: options.py ?? undefined },
      adapter,
      torch: torch && { version: torch.torch, cuda: torch.cuda, device: torch.device, tf32: torch.tf32 },
      torchError,
      workloads: workloads.map((w) => {
        const o = ours.get(w.name)!;
        const t = torchOf(w.name);
        const oursUs = 'gpu' in o ? o.gpu.medianUs : undefined;
        return {
          name: w.name,
          group: w.group,
          flops: w.flops,
          bytes: w.bytes,
          torchSpec: w.torch,
          ours: o,
          torch: t,
          ratio: oursUs !== undefined && t?.us ? oursUs / t.us : undefined,
          oursRate: rate(w, oursUs) || undefined,
          torchRate: rate(w, t?.us) || undefined,
        };
      }),
    };
    writeFileSync(path, JSON.stringify(report, null, 2) + '\n');
    console.log(`wrote ${path}`);
  }
}

await main();
