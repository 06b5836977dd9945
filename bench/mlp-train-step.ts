// The MNIST MLP's training step (784-128-10, batch 32, cross-entropy, Adam) through our plan
// on the auto-picked WebGPU backend, then the same step in PyTorch eager on the same GPU
// (bench/mlp_train_step.py, run as a child process), printed side by side with the ratio.
//
//   npx esbuild bench/mlp-train-step.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/mlp-train-step.mjs
//   cp bench/mlp_train_step.py .device/
//   node .device/mlp-train-step.mjs [--py PATH | --no-torch] [--warmup 50] [--steps 500] [--queue 200] [--seed 1]
//
// With $OUT set, the figures are also written to $OUT/mlp-train-step.json.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileGraph } from '../compiler/compile';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { buildGraph } from '../compiler/api';
import { uniformStream } from '../compiler/ir/init';
import { mnist, BATCH } from '../examples/mnist/model';
import { loadTrainingPlan, readBundle, requestNodeDevice } from '../runtime/index';
import { hyperFeed, prepareTimedPlan } from './gpu-time';

interface Options {
  py: string | null;
  warmup: number;
  steps: number;
  queue: number;
  /** rounds of the queued measurement; the median round is reported */
  rounds: number;
  seed: number;
  /** distinct fixed batches, cycled */
  batches: number;
}

function parseOptions(argv: string[]): Options {
  const options: Options = {
    py: fileURLToPath(new URL('./mlp_train_step.py', import.meta.url)),
    warmup: 50,
    steps: 500,
    queue: 200,
    rounds: 5,
    seed: 1,
    batches: 16,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--no-torch') options.py = null;
    else if (flag === '--py') options.py = argv[++i];
    else if (flag.startsWith('--') && flag.slice(2) in options) {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 1) throw new Error(`${flag} needs a positive integer`);
      (options as unknown as Record<string, number>)[flag.slice(2)] = value;
    } else throw new Error(`unknown argument "${flag}"`);
  }
  return options;
}


const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const median = (xs: number[]) => quantile([...xs].sort((a, b) => a - b), 0.5);

export interface StepFigures {
  /** awaited one at a time (each includes the loss read-back): median and p90, µs */
  latencyMedianUs: number;
  latencyP90Us: number;
  /** K steps queued, then awaited together: wall time / K, µs (median of the rounds) */
  throughputUs: number;
  firstLoss: number;
  lastLoss: number;
}

async function measureOurs(options: Options) {
  const graph = buildGraph('mnist', mnist);
  const t0 = performance.now();
  const compiled = await compileGraph(graph, { seed: options.seed, training: mnist.train, targets: [NVIDIA_HOPPER] });
  const compileMs = performance.now() - t0;
  const entry = compiled.manifest.training!.entry;
  const dispatches = compiled.manifest.entryPoints[entry].dispatches.length;

  const gpu = await requestNodeDevice();
  const { vendor, architecture, description } = gpu.adapter.info;
  const adapter = `${gpu.backend}: ${[vendor, architecture, description].filter((s) => s).join(' ')}`;
  const session = await loadTrainingPlan(compiled.bundle, gpu.device);
  try {
    const next = uniformStream(options.seed);
    const batches = Array.from({ length: options.batches }, () => ({
      x: Float32Array.from({ length: BATCH * 784 }, next),
      labels: Int32Array.from({ length: BATCH }, () => Math.floor(next() * 10)),
    }));
    let i = 0;
    const batch = () => batches[i++ % batches.length];

    const firstLoss = await session.step(batch());
    for (let k = 1; k < options.warmup; k++) await session.step(batch());

    const latencies: number[] = [];
    for (let k = 0; k < options.steps; k++) {
      const start = performance.now();
      await session.step(batch());
      latencies.push((performance.now() - start) * 1000);
    }
    latencies.sort((a, b) => a - b);

    const rounds: number[] = [];
    let lastLoss = NaN;
    for (let r = 0; r < options.rounds; r++) {
      const start = performance.now();
      const losses = await Promise.all(Array.from({ length: options.queue }, () => session.step(batch())));
      rounds.push(((performance.now() - start) * 1000) / options.queue);
      lastLoss = losses[losses.length - 1];
    }

    const readbackUs = await measureReadbackFloor(gpu.device, options.steps);
    let gpuTime: Awaited<ReturnType<typeof measureGpuTime>> | undefined;
    if (gpu.device.features.has('timestamp-query')) {
      gpu.device.pushErrorScope('validation');
      gpuTime = await measureGpuTime(compiled.bundle, gpu.device, batches[0], options.queue).catch((error: Error) => {
        console.error(`GPU-time breakdown failed: ${error.message}`);
        return undefined;
      });
      const error = await gpu.device.popErrorScope();
      if (error) {
        console.error(`GPU-time breakdown failed: ${error.message}`);
        gpuTime = undefined;
      }
    }
    const figures: StepFigures = {
      latencyMedianUs: quantile(latencies, 0.5),
      latencyP90Us: quantile(latencies, 0.9),
      throughputUs: median(rounds),
      firstLoss,
      lastLoss,
    };
    return { adapter, compileMs, dispatches, readbackUs, gpuTime, figures, steps: session.stepCount };
  } finally {
    session.destroy();
    await gpu.destroy();
  }
}

/**
 * The floor under any awaited step on this device: submit a 4-byte copy into a mappable
 * buffer and map it, as step() does for the loss. Median µs over n round trips.
 */
async function measureReadbackFloor(device: GPUDevice, n: number): Promise<number> {
  const source = device.createBuffer({ size: 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const staging = device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const times: number[] = [];
  for (let k = 0; k < n + 20; k++) {
    const start = performance.now();
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(source, 0, staging, 0, 4);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    staging.unmap();
    if (k >= 20) times.push((performance.now() - start) * 1000);
  }
  source.destroy();
  staging.destroy();
  return median(times);
}

/**
 * GPU execution time alone, from timestamp queries (bench/gpu-time.ts rebuilds train_step's
 * dispatch list as the runtime does): `reps` whole steps back to back in one pass, µs per
 * step with no host work and no read-back; and each dispatch repeated `reps` times in its
 * own pass, µs per dispatch.
 */
async function measureGpuTime(bytes: Uint8Array, device: GPUDevice, batch: { x: Float32Array<ArrayBuffer>; labels: Int32Array<ArrayBuffer> }, reps: number) {
  const { manifest } = await readBundle(bytes);
  const timed = await prepareTimedPlan(bytes, device, manifest.training!.entry, { ...batch, ...hyperFeed(manifest) });
  try {
    const [stepUs] = await timed.passes(reps, 1);
    const perDispatch = await timed.perDispatch(reps);
    return { stepUs, perDispatch };
  } finally {
    timed.destroy();
  }
}

interface TorchRow extends StepFigures {
  name: string;
}
interface TorchReport {
  torch: string;
  device: string;
  defaultAdam: string;
  rows: TorchRow[];
}

function runTorch(options: Options): TorchReport {
  const args = [options.py!, '--json', '--warmup', String(options.warmup), '--steps', String(options.steps), '--queue', String(options.queue), '--rounds', String(options.rounds), '--seed', String(options.seed), '--batches', String(options.batches)];
  const child = spawnSync('python3', args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (child.error) throw new Error(`could not start python3 ${options.py}: ${child.error.message}`);
  if (child.status !== 0) throw new Error(`python3 ${options.py} exited with ${child.status}:\n${child.stderr}`);
  const lastLine = child.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(lastLine) as TorchReport;
}

const us = (v: number) => v.toFixed(1).padStart(9);
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`.padStart(7);

const options = parseOptions(process.argv.slice(2));
const ours = await measureOurs(options);
const torch = options.py ? runTorch(options) : undefined;

console.log(`workload: MNIST MLP 784-128-10 train step, batch ${BATCH}, f32, cross-entropy (mean), Adam lr 1e-3`);
console.log(`ours:  ${ours.adapter}; train_step = ${ours.dispatches} dispatches in one compute pass, one submit; compile ${ours.compileMs.toFixed(0)} ms`);
if (torch) console.log(`torch: ${torch.torch} on ${torch.device}, eager, TF32 off; default Adam on CUDA: ${torch.defaultAdam}`);
console.log(`steps: warm-up ${options.warmup}, latency over ${options.steps} awaited steps, throughput = median of ${options.rounds} rounds of ${options.queue} queued steps`);
console.log('');
const header = `${'implementation'.padEnd(34)} ${'lat med µs'.padStart(10)} ${'lat p90 µs'.padStart(10)} ${'thru µs/step'.padStart(12)} ${'lat ratio'.padStart(9)} ${'thru ratio'.padStart(10)}   loss first→last`;
console.log(header);
console.log('-'.repeat(header.length));
const row = (name: string, f: StepFigures, ref?: StepFigures) =>
  console.log(
    `${name.padEnd(34)} ${us(f.latencyMedianUs).padStart(10)} ${us(f.latencyP90Us).padStart(10)} ${us(f.throughputUs).padStart(12)} ` +
      `${(ref ? ratio(f.latencyMedianUs, ref.latencyMedianUs) : '').padStart(9)} ${(ref ? ratio(f.throughputUs, ref.throughputUs) : '').padStart(10)}   ` +
      `${f.firstLoss.toFixed(4)} → ${f.lastLoss.toFixed(4)}`,
  );
row(`ours (${ours.adapter.split(':')[0]})`, ours.figures);
for (const t of torch?.rows ?? []) row(`torch ${t.name}`, t);
if (torch) {
  console.log('');
  for (const t of torch.rows) {
    console.log(`ours / torch ${t.name}: latency ${ratio(ours.figures.latencyMedianUs, t.latencyMedianUs).trim()}, throughput ${ratio(ours.figures.throughputUs, t.throughputUs).trim()} (above 1 = ours slower)`);
  }
}
console.log('');
console.log(`ours: ${(ours.figures.throughputUs / ours.dispatches).toFixed(2)} µs per dispatch implied by the queued figure (${ours.dispatches} dispatches per step)`);
console.log(`ours: submit + 4-byte copy + mapAsync round trip alone = ${ours.readbackUs.toFixed(1)} µs median (the floor under any awaited step)`);
if (ours.gpuTime) {
  const { stepUs, perDispatch } = ours.gpuTime;
  console.log(`ours: GPU time of train_step from timestamps, ${options.queue} steps back to back in one pass = ${stepUs.toFixed(1)} µs per step`);
  const top = [...perDispatch].sort((a, b) => b.us - a.us).slice(0, 6);
  console.log(`ours: slowest dispatches (each repeated ${options.queue}x in its own pass): ${top.map((d) => `${d.node} [${d.workgroups}] ${d.us.toFixed(1)} µs`).join(', ')}`);
  console.log(`ours: sum over all ${perDispatch.length} dispatches = ${perDispatch.reduce((n, d) => n + d.us, 0).toFixed(1)} µs`);
}

if (process.env.OUT) {
  const path = join(process.env.OUT, 'mlp-train-step.json');
  const report = { date: new Date().toISOString(), batch: BATCH, options: { ...options, py: options.py ?? undefined }, ours, torch };
  writeFileSync(path, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${path}`);
}
