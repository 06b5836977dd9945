// Bandwidth of the memory-bound kernels (pointwise, fused chains, reductions, row ops,
// optimizer updates) on the device: each case is built with the Graph builder, compiled
// with compileGraph, and its plan's dispatches are timed with timestamp queries; torch runs
// the same ops on the same GPU in the same call (bench/bandwidth.py). Run:
//   npx esbuild bench/bandwidth.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/bandwidth.mjs
//   cp bench/bandwidth.py .device/
//   # device command (carry .device): source .device/bootstrap.sh; node .device/bandwidth.mjs
// Options: --only NAME[,NAME] (cases whose name starts with one), --no-torch, --no-check,
// --rounds 5, --py PATH, --variants (hand-written add kernels), --small (check shapes only),
// --sweep (the axis layouts of SWEEPS besides the defaults). With $OUT set it writes $OUT/bandwidth.json.
// Reductions with few long rows compile to two dispatches (compiler/lower/split-reductions.ts);
// the bytes counted stay each input read once and the output written once.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileGraph } from '../compiler/compile';
import { Graph, type Tensor } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { elementCount } from '../compiler/ir/types';
import type { Target } from '../compiler/target/target';
import { NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import type { AxisTuning } from '../compiler/target/tuning';
import { loadPlan, readBundle, requestNodeDevice } from '../runtime/index';
import { measureGpuTime, prepareTimedPlan, timestampedPasses } from './gpu-time';

/** The figure this bench is judged against: a WGSL 1 GiB scale-copy on the H200 (../shared/device/README.md). */
const WGSL_COPY_GBS = 4100;

interface Options {
  only?: string[];
  torch: boolean;
  check: boolean;
  rounds: number;
  py: string;
  variants: boolean;
  /** run every case at its check shape (a smoke test of this program off the GPU machine) */
  small: boolean;
  sweep: boolean;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { torch: true, check: true, rounds: 5, variants: false, small: false, sweep: false, py: fileURLToPath(new URL('./bandwidth.py', import.meta.url)) };
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    if (a === '--no-torch') options.torch = false;
    else if (a === '--no-check') options.check = false;
    else if (a === '--only') options.only = argv[++k].split(',');
    else if (a === '--sweep') options.sweep = true;
    else if (a === '--small') options.small = true;
    else if (a === '--variants') options.variants = true;
    else if (a === '--rounds') options.rounds = Number(argv[++k]);
    else if (a === '--py') options.py = argv[++k];
    else throw new Error(`unknown option ${a}`);
  }
  return options;
}

/**
 * One measured case: `build` makes the op on inputs of the given shapes; `check` is a smaller
 * set of shapes of the same row length, run through loadPlan and compared with the CPU reference.
 */
interface Case {
  name: string;
  /** what bench/bandwidth.py runs: its op name and the input shape */
  torch: { op: string; shape: number[] };
  shape: number[];
  check: number[];
  build: (g: Graph, shape: number[]) => Tensor;
  range?: [number, number];
  /** bytes moved, when the plan's inputs + outputs do not say it (in-place updates) */
  bytes?: (shape: number[]) => number;
  /** fixed values of small inputs, by name */
  values?: Record<string, number[]>;
}

const M = 1 << 20;
const rowCase = (op: 'softmax' | 'layerNorm' | 'rmsNorm' | 'sum', rows: number, n: number): Case => ({
  name: `${op} ${rows}x${n}`,
  torch: { op, shape: [rows, n] },
  shape: [rows, n],
  // long rows: more rows than the 256 workgroups that take them in turn, so that path is checked too
  check: [rows < 37 ? 3 : n >= 32768 ? 260 : 37, n],
  range: op === 'softmax' ? [-8, 8] : undefined,
  build: (g, [r, c]) => {
    const x = g.input('x', [r, c]);
    if (op === 'softmax') return g.softmax(x);
    if (op === 'sum') return g.sum(x, -1);
    if (op === 'rmsNorm') return g.rmsNorm(x, g.input('gamma', [c]));
    return g.layerNorm(x, g.input('gamma', [c]), g.input('beta', [c]));
  },
});

const CASES: Case[] = [
  {
    name: 'add 16M',
    torch: { op: 'add', shape: [16 * M] },
    shape: [16 * M],
    check: [1000],
    build: (g, s) => g.add(g.input('a', s), g.input('b', s)),
  },
  {
    name: 'add 64M',
    torch: { op: 'add', shape: [64 * M] },
    shape: [64 * M],
    check: [4099],
    build: (g, s) => g.add(g.input('a', s), g.input('b', s)),
  },
  {
    name: 'add bias 16384x4096',
    torch: { op: 'addBias', shape: [16384, 4096] },
    shape: [16384, 4096],
    check: [5, 4096],
    build: (g, s) => g.add(g.input('a', s), g.input('bias', [s[1]])),
  },
  {
    name: 'chain4 32M',
    torch: { op: 'chain', shape: [32 * M] },
    shape: [32 * M],
    check: [2000],
    // mul, add, relu, mul: one fused kernel reading a, b, c
    build: (g, s) => g.mul(g.relu(g.add(g.mul(g.input('a', s), g.input('b', s)), g.input('c', s))), 0.5),
  },
  {
    name: 'gelu 64M',
    torch: { op: 'gelu', shape: [64 * M] },
    shape: [64 * M],
    check: [3000],
    build: (g, s) => g.gelu(g.input('x', s)),
  },
  rowCase('sum', 8192, 4096),
  rowCase('sum', 65536, 576),
  rowCase('sum', 16, 4 * M),
  {
    name: 'sum axis0 4096x8192',
    torch: { op: 'sum0', shape: [4096, 8192] },
    shape: [4096, 8192],
    check: [300, 70],
    build: (g, s) => g.sum(g.input('x', s), 0),
  },
  ...(['softmax', 'layerNorm', 'rmsNorm'] as const).flatMap((op) => [rowCase(op, 65536, 576), rowCase(op, 8192, 4096), rowCase(op, 1024, 32768)]),
  {
    name: 'adam 16M',
    torch: { op: 'adam', shape: [16 * M] },
    shape: [16 * M],
    check: [1000],
    // reads p, g, m, v; writes p, m, v
    bytes: (s) => 7 * 4 * elementCount(s),
    values: { hyper: [0.01, 0.9, 0.999, 1e-8, 0.1, 0, 0.1, 0.001, 0.1, 0.001], check: [0] },
    build: (g, s) => g.adamUpdate(g.parameter('p', s), g.input('grad', s), g.state('m', s), g.state('v', s), g.input('hyper', [10]), g.input('check', [1]), { decoupled: true }),
  },
];

/** Axis layouts other than the default, measured with --sweep (the open questions of bench/README.md, bandwidth). */
const SWEEPS: { name: string; tuning: Partial<AxisTuning> }[] = [
  ...['softmax', 'layerNorm', 'rmsNorm'].flatMap((op) => [
    // the portable kernel alone (rows streamed once per pass), as before the 1024-invocation variant
    { name: `${op} 1024x32768`, tuning: { largeInvocations: 0 } },
    { name: `${op} 1024x32768`, tuning: { largeInvocations: 0, streamGroups: 256 } },
    { name: `${op} 1024x32768`, tuning: { largeInvocations: 512, largeRegisterFloats: 64 } },
    { name: `${op} 1024x32768`, tuning: { maxRegisterFloats: 128 } },
  ]),
  // split reductions: unsplit, and fewer or more workgroups in the first step
  { name: 'sum 16x4194304', tuning: { splitBelowWorkgroups: 0 } },
  { name: 'sum 16x4194304', tuning: { splitTargetWorkgroups: 1024 } },
  { name: 'sum 16x4194304', tuning: { splitTargetWorkgroups: 16384 } },
  { name: 'sum axis0 4096x8192', tuning: { splitBelowWorkgroups: 0 } },
  { name: 'sum axis0 4096x8192', tuning: { splitBelowWorkgroups: 0, interleavedBytes: 64, streamAccumulators: 8 } },
  { name: 'sum axis0 4096x8192', tuning: { splitTargetWorkgroups: 2048 } },
  { name: 'sum axis0 4096x8192', tuning: { splitTargetWorkgroups: 8192 } },
];

// ---------------------------------------------------------------------------------------
// Timing a compiled plan's dispatches

function grid(groups: number): [number, number, number] {
  const rows = Math.ceil(groups / 65535);
  return [Math.ceil(groups / rows), rows, 1];
}

interface Measured {
  us: number;
  bytes: number;
  gbs: number;
  dispatches: number;
  kernels: string[];
  workgroups: string[];
}

async function measurePlan(device: GPUDevice, c: Case, rounds: number, target: Target = NVIDIA_HOPPER): Promise<Measured> {
  const g = new Graph(c.name.replace(/[^A-Za-z0-9_]/g, '_'));
  g.output('y', c.build(g, c.shape));
  const compiled = await compileGraph(g, { weights: 'none', targets: [target] });
  const { manifest } = await readBundle(compiled.bundle);
  const entry = manifest.entryPoints.run;
  // inputs: fixed values where the case gives them, else uniform in its range; parameters and
  // state start at zero (compiled without weights), which changes no kernel's memory traffic
  const feeds: Record<string, Float32Array> = {};
  let seed = 12345;
  for (const input of entry.inputs) {
    const fixed = c.values?.[input.name];
    const [lo, hi] = c.range ?? [-2, 2];
    const u = uniformStream(seed++ * 7919);
    feeds[input.name] = fixed ? Float32Array.from(fixed) : Float32Array.from({ length: elementCount(input.shape) }, () => lo + (hi - lo) * u());
  }
  const timed = await prepareTimedPlan(compiled.bundle, device, 'run', feeds);
  // timed.variants: the WGSL section each kernel runs, kernels in order of first dispatch
  const used = [...new Set(entry.dispatches.map((d) => d.kernel))];
  const variantOf = new Map(used.map((k, i) => [k, timed.variants[i]]));
  const bytes =
    c.bytes?.(c.shape) ??
    [...entry.inputs, ...entry.outputs].reduce((s, t) => s + 4 * elementCount(t.shape), 0);
  // measureGpuTime warms the GPU up first: after the uploads it idles, and memory-bound
  // kernels ran up to 3x slower for the first few hundred ms of work on the H200
  let median: number;
  try {
    median = (await measureGpuTime(timed, { passes: rounds })).medianUs;
  } finally {
    timed.destroy();
  }
  return {
    us: median,
    bytes,
    gbs: bytes / median / 1e3,
    dispatches: entry.dispatches.length,
    // with the variant timed where it is not the portable kernel (e.g. 'large': 1024 invocations)
    kernels: entry.dispatches.map((d) => {
      const { name } = manifest.kernels[d.kernel];
      const tag = variantOf.get(d.kernel)!.slice(`kernels/${name}`.length).replace(/\.wgsl$/, '').replace(/^\./, '');
      return tag ? `${name} (${tag})` : name;
    }),
    workgroups: entry.dispatches.map((d) => d.workgroups.join('x')),
  };
}

/** `rounds` compute passes, each running `body` `reps` times; µs per repetition of each pass. */
async function timePasses(device: GPUDevice, rounds: number, reps: number, body: (p: GPUComputePassEncoder) => void): Promise<number[]> {
  if (!device.features.has('timestamp-query')) return Array.from({ length: rounds }, () => NaN);
  const times = await timestampedPasses(device, rounds, (p) => {
    for (let k = 0; k < reps; k++) body(p);
  });
  return times.map((us) => us / reps);
}

/** The reference figure in this run: a vec4 WGSL copy of `n` floats. */
async function measureCopy(device: GPUDevice, n: number, rounds: number): Promise<number> {
  const usage = GPUBufferUsage.STORAGE;
  const src = device.createBuffer({ size: 4 * n, usage });
  const dst = device.createBuffer({ size: 4 * n, usage });
  const code = `@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * ${grid(n / 4 / 256)[0]}u) * 256u + lid;
  if (i < ${n / 4}u) {
    dst[i] = src[i] * 1.0001;
  }
}`;
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: dst } }] });
  const us = await timePasses(device, rounds + 1, 20, (p) => {
    p.setPipeline(pipeline);
    p.setBindGroup(0, bindGroup);
    p.dispatchWorkgroups(...grid(n / 4 / 256));
  });
  src.destroy();
  dst.destroy();
  const times = us.slice(1).sort((a, b) => a - b);
  return (8 * n) / times[Math.floor(times.length / 2)] / 1e3;
}

/**
 * Hand-written `a + b` kernels over `n` floats, one per way of spreading elements over
 * invocations, to choose the pointwise kernels' form (--variants).
 */
async function measureAddVariants(device: GPUDevice, n: number, rounds: number): Promise<{ name: string; gbs: number }[]> {
  const usage = GPUBufferUsage.STORAGE;
  const [a, b, out] = [0, 1, 2].map(() => device.createBuffer({ size: 4 * n, usage }));
  // per: elements (or vec4s) per invocation; blocked: invocation lid takes lid, lid + 256, ...; else consecutive
  const make = (name: string, vec: boolean, per: number, blocked: boolean, wg = 256) => {
    const units = vec ? n / 4 : n;
    const groups = Math.ceil(units / (wg * per));
    const [gx] = grid(groups);
    const t = vec ? 'vec4<f32>' : 'f32';
    const lines: string[] = [];
    for (let k = 0; k < per; k++) {
      const idx = blocked ? `base + lid + ${k * wg}u` : `(base + lid) * ${per}u + ${k}u`;
      lines.push(`  { let i = ${idx}; if (i < ${units}u) { out[i] = a[i] + b[i]; } }`);
    }
    const base = blocked ? `(wid.x + wid.y * ${gx}u) * ${wg * per}u` : `(wid.x + wid.y * ${gx}u) * ${wg}u`;
    const code = `@group(0) @binding(0) var<storage, read> a: array<${t}>;
@group(0) @binding(1) var<storage, read> b: array<${t}>;
@group(0) @binding(2) var<storage, read_write> out: array<${t}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let base = ${base};
${lines.join('\n')}
}`;
    return { name, code, workgroups: grid(groups) };
  };
  const gridStride = (name: string, vec: boolean, groups: number) => {
    const units = vec ? n / 4 : n;
    const t = vec ? 'vec4<f32>' : 'f32';
    const code = `@group(0) @binding(0) var<storage, read> a: array<${t}>;
@group(0) @binding(1) var<storage, read> b: array<${t}>;
@group(0) @binding(2) var<storage, read_write> out: array<${t}>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  for (var i = wid.x * 256u + lid; i < ${units}u; i += ${groups * 256}u) {
    out[i] = a[i] + b[i];
  }
}`;
    return { name, code, workgroups: [groups, 1, 1] as [number, number, number] };
  };
  const variants = [
    make('scalar x1', false, 1, true),
    make('scalar x4 blocked', false, 4, true),
    make('scalar x4 consecutive', false, 4, false),
    make('scalar x8 blocked', false, 8, true),
    make('vec4 x1', true, 1, true),
    make('vec4 x1 wg128', true, 1, true, 128),
    make('vec4 x2 blocked', true, 2, true),
    make('vec4 x4 blocked', true, 4, true),
    make('vec4 x4 consecutive', true, 4, false),
    gridStride('scalar grid-stride 2112 wgs', false, 2112),
    gridStride('vec4 grid-stride 1056 wgs', true, 1056),
    gridStride('vec4 grid-stride 4224 wgs', true, 4224),
  ];
  const results: { name: string; gbs: number }[] = [];
  for (const v of variants) {
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code: v.code }), entryPoint: 'main' } });
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [a, b, out].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const us = await timePasses(device, rounds + 1, 20, (p) => {
      p.setPipeline(pipeline);
      p.setBindGroup(0, bindGroup);
      p.dispatchWorkgroups(...v.workgroups);
    });
    const times = us.slice(1).sort((x, y) => x - y);
    results.push({ name: v.name, gbs: (12 * n) / times[Math.floor(times.length / 2)] / 1e3 });
  }
  for (const buffer of [a, b, out]) buffer.destroy();
  return results;
}

/** Runs the case at its small `check` shape through loadPlan and compares with the CPU reference. */
async function checkCase(device: GPUDevice, c: Case, target: Target = NVIDIA_HOPPER): Promise<string> {
  const g = new Graph(`${c.name.replace(/[^A-Za-z0-9_]/g, '_')}_check`);
  g.output('y', c.build(g, c.check));
  const compiled = await compileGraph(g, { seed: 3, targets: [target] });
  const feeds: Record<string, Float32Array> = {};
  let k = 0;
  for (const node of g.nodes.filter((n) => n.op === 'input')) {
    const u = uniformStream(17 + 101 * k++);
    const [lo, hi] = c.range ?? [-2, 2];
    feeds[node.name] = c.values?.[node.name] ? Float32Array.from(c.values[node.name]) : Float32Array.from({ length: elementCount(node.type.shape) }, () => lo + (hi - lo) * u());
  }
  const state = new Map<string, Float64Array>(g.nodes.filter((n) => n.op === 'state').map((n) => [n.name, new Float64Array(elementCount(n.type.shape))]));
  const session = await loadPlan(compiled.bundle, device);
  try {
    const actual = (await session.run(feeds)).y;
    const expected = interpret(g, feeds, compiled.parameters, { state }).y;
    // |gpu - cpu| <= 1e-3 (1 + |cpu|) everywhere
    let worst = { i: 0, excess: -Infinity };
    for (let i = 0; i < expected.length; i++) {
      const excess = Math.abs(actual[i] - expected[i]) - 1e-3 * (1 + Math.abs(expected[i]));
      if (!(excess <= worst.excess)) worst = { i, excess: Number.isNaN(excess) ? Infinity : excess };
    }
    return worst.excess <= 0 ? 'ok' : `MISMATCH at ${worst.i}: gpu ${actual[worst.i]} vs cpu ${expected[worst.i]}`;
  } finally {
    session.destroy();
  }
}

// ---------------------------------------------------------------------------------------

interface TorchRow {
  name: string;
  us: number;
  gbs: number;
}

function runTorch(options: Options, cases: Case[], measured: Map<string, Measured>): { version: string; rows: TorchRow[] } | undefined {
  const spec = cases.map((c) => ({ name: c.name, ...c.torch, bytes: measured.get(c.name)!.bytes, rounds: options.rounds }));
  const result = spawnSync('python3', [options.py, JSON.stringify(spec)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (result.status !== 0) {
    console.log(`torch: failed (${result.status}): ${result.stderr.slice(-2000)}`);
    return undefined;
  }
  return JSON.parse(result.stdout.trim().split('\n').pop()!);
}

const options = parseOptions(process.argv.slice(2));
const cases = CASES.filter((c) => !options.only || options.only.some((o) => c.name.startsWith(o))).map((c) => (options.small ? { ...c, shape: c.check } : c));
const copyElements = options.small ? 1 << 16 : 128 * M;
const gpu = await requestNodeDevice();
const { device } = gpu;
try {
  const { vendor, architecture, description } = gpu.adapter.info;
  console.log(`ours: ${gpu.backend}: ${[vendor, architecture, description].filter((s) => s).join(' ')}`);
  // without timestamps (llvmpipe) only --small's checks mean anything
  if (!device.features.has('timestamp-query') && !options.small) throw new Error('the device has no timestamp-query');
  const copyGbs = await measureCopy(device, copyElements, options.rounds);
  console.log(`WGSL vec4 copy of ${(4 * copyElements) / 1e6} MB in this run: ${copyGbs.toFixed(0)} GB/s`);
  if (options.variants) {
    for (const v of await measureAddVariants(device, copyElements / 2, options.rounds)) console.log(`  variant add ${copyElements / 2 / M}M, ${v.name}: ${v.gbs.toFixed(0)} GB/s`);
  }
  const measured = new Map<string, Measured>();
  const checks = new Map<string, string>();
  for (const c of cases) {
    measured.set(c.name, await measurePlan(device, c, options.rounds));
    if (options.check) checks.set(c.name, await checkCase(device, c).catch((e: Error) => `ERROR ${e.message}`));
    const m = measured.get(c.name)!;
    console.log(`  ${c.name}: ${m.us.toFixed(1)} µs, ${m.gbs.toFixed(0)} GB/s, ${m.kernels.join(' + ')} [${m.workgroups.join(', ')}] ${checks.get(c.name) ?? ''}`);
  }
  if (options.sweep) {
    for (const s of SWEEPS) {
      const c = cases.find((x) => x.name === s.name);
      if (!c) continue;
      const target = withTuning(NVIDIA_HOPPER, { axis: { ...NVIDIA_HOPPER.tuning.axis, ...s.tuning } });
      const m = await measurePlan(device, c, options.rounds, target);
      const ok = options.check ? await checkCase(device, c, target).catch((e: Error) => `ERROR ${e.message}`) : '';
      console.log(`  sweep ${s.name} ${JSON.stringify(s.tuning)}: ${m.us.toFixed(1)} µs, ${m.gbs.toFixed(0)} GB/s (default ${measured.get(s.name)!.gbs.toFixed(0)}) ${ok}`);
    }
  }
  const torch = options.torch ? runTorch(options, cases, measured) : undefined;
  if (torch) console.log(`torch: ${torch.version}`);
  const torchBy = new Map(torch?.rows.map((r) => [r.name, r]));
  console.log('');
  console.log('| case | MB moved | ours µs | ours GB/s | % of 4.1 TB/s | torch GB/s | dispatches | check |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const c of cases) {
    const m = measured.get(c.name)!;
    const t = torchBy.get(c.name);
    console.log(
      `| ${c.name} | ${(m.bytes / 1e6).toFixed(0)} | ${m.us.toFixed(1)} | ${m.gbs.toFixed(0)} | ${((100 * m.gbs) / WGSL_COPY_GBS).toFixed(0)}% | ${t ? t.gbs.toFixed(0) : '-'} | ${m.dispatches} | ${checks.get(c.name) ?? '-'} |`,
    );
  }
  if (process.env.OUT) {
    const rows = cases.map((c) => ({ name: c.name, ...measured.get(c.name)!, torch: torchBy.get(c.name), check: checks.get(c.name) }));
    writeFileSync(join(process.env.OUT, 'bandwidth.json'), JSON.stringify({ copyGbs, torch: torch?.version, rows }, null, 2));
  }
} finally {
  await gpu.destroy();
}
