// Soak: many steps and runs of real plans on one device, with host and GPU memory sampled
// along the way, to show that neither grows and how step times drift. Three phases:
// the MNIST MLP's training step, the SmolLM2-width decoder block's training step (AdamW),
// and the MNIST plan's inference entry. Each phase is cut into windows; per window it
// prints the median and 99th-percentile wall time of a step (submit to loss or outputs
// read back), the process's RSS, V8 heap and external memory, and the GPU memory
// nvidia-smi reports for this process (or the whole GPU where per-process figures are not
// given; 'n/a' without nvidia-smi). The closing lines compare the last window with the
// first (after a warm-up window that is not counted).
//
//   npx esbuild bench/soak.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/soak.mjs
//   node .device/soak.mjs [--mnist 10000] [--block 2000] [--runs 100000] [--windows 10]
//
// With $OUT set, the samples are also written to $OUT/soak.json.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { BATCH as MNIST_BATCH, mnist } from '../examples/mnist/model';
import { loadPlan, loadTrainingPlan, requestNodeDevice } from '../runtime/index';
import { uniform } from './bench-data';
import { decoderBlock, SMOLLM2_BLOCK } from './decoder-block';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const COUNTS = { mnist: option('mnist', 10_000), block: option('block', 2_000), runs: option('runs', 100_000) };
const WINDOWS = option('windows', 10);

interface Sample {
  phase: string;
  window: number;
  /** steps or runs done by the end of the window */
  done: number;
  medianMs: number;
  p99Ms: number;
  rssMiB: number;
  heapMiB: number;
  externalMiB: number;
  gpuMiB: number | undefined;
  /** the window's last loss (training phases) or first output element (inference) */
  loss?: number;
}

const MiB = 2 ** 20;

/** GPU memory this process holds (nvidia-smi's per-process figure), else the whole GPU's used memory, in MiB. */
function gpuMemory(): number | undefined {
  const apps = spawnSync('nvidia-smi', ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'], { encoding: 'utf8' });
  if (apps.status === 0) {
    for (const line of apps.stdout.split('\n')) {
      const [pid, used] = line.split(',').map((s) => s.trim());
      if (Number(pid) === process.pid) return Number(used);
    }
  }
  const total = spawnSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], { encoding: 'utf8' });
  return total.status === 0 ? Number(total.stdout.trim().split('\n')[0]) : undefined;
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

/** Runs `count` iterations of `once` in WINDOWS windows plus a warm-up window, sampling after each. */
async function soak(phase: string, count: number, once: (i: number) => Promise<number | undefined>): Promise<Sample[]> {
  const perWindow = Math.max(1, Math.floor(count / WINDOWS));
  const samples: Sample[] = [];
  let done = 0;
  for (let w = 0; w <= WINDOWS; w++) {
    const size = w === 0 ? Math.min(perWindow, 200) : perWindow; // window 0 warms up
    const times = new Float64Array(size);
    let loss: number | undefined;
    for (let i = 0; i < size; i++) {
      const t0 = performance.now();
      loss = await once(done + i);
      times[i] = performance.now() - t0;
    }
    if (w > 0) done += size;
    // with node --expose-gc, collect first so that the heap and RSS figures are what is
    // live, not what the collector has not reached yet
    (globalThis as { gc?: () => void }).gc?.();
    const memory = process.memoryUsage();
    const sample: Sample = {
      phase,
      window: w,
      done,
      medianMs: percentile([...times], 0.5),
      p99Ms: percentile([...times], 0.99),
      rssMiB: memory.rss / MiB,
      heapMiB: memory.heapUsed / MiB,
      externalMiB: (memory.external + memory.arrayBuffers) / MiB,
      gpuMiB: gpuMemory(),
      ...(loss !== undefined ? { loss } : {}),
    };
    samples.push(sample);
    const cells = [
      w === 0 ? 'warm-up' : `${String(done).padStart(7)}`,
      `${sample.medianMs.toFixed(3)} ms`,
      `p99 ${sample.p99Ms.toFixed(3)} ms`,
      `rss ${sample.rssMiB.toFixed(1)} MiB`,
      `heap ${sample.heapMiB.toFixed(1)}`,
      `external ${sample.externalMiB.toFixed(1)}`,
      `gpu ${sample.gpuMiB === undefined ? 'n/a' : `${sample.gpuMiB} MiB`}`,
      ...(loss !== undefined ? [`${phase.includes('train') ? 'loss' : 'out[0]'} ${loss.toPrecision(4)}`] : []),
    ];
    console.log(`${phase.padEnd(16)} ${cells.join('  ')}`);
  }
  const [first, last] = [samples[1], samples[samples.length - 1]];
  const drift = (a: number, b: number) => `${a.toFixed(3)} → ${b.toFixed(3)} (${(((b - a) / a) * 100).toFixed(1)}%)`;
  console.log(
    `${phase}: ${done} in ${WINDOWS} windows; median step ${drift(first.medianMs, last.medianMs)} ms; ` +
      `rss ${drift(first.rssMiB, last.rssMiB)} MiB; heap ${drift(first.heapMiB, last.heapMiB)} MiB; ` +
      `gpu ${first.gpuMiB ?? 'n/a'} → ${last.gpuMiB ?? 'n/a'} MiB\n`,
  );
  return samples;
}

const gpu = await requestNodeDevice();
console.log(`device: ${gpu.adapter.info.vendor} ${gpu.adapter.info.architecture} ${gpu.adapter.info.device}; node ${process.version}`);
const all: Sample[] = [];

// MNIST: the example model's plan, trained on a fixed set of random batches (the data is
// not the point; the same batches each pass keep the loss moving down, a visible sign that
// the steps keep updating)
{
  const g = new Graph('mnist');
  for (const [key, t] of Object.entries(mnist.build(g) ?? {})) g.output(key, t);
  const { bundle } = await compileGraph(g, { seed: 1, training: mnist.train });
  const trainer = await loadTrainingPlan(bundle, gpu.device);
  const next = uniform(7);
  const batches = Array.from({ length: 16 }, () => ({
    x: Float32Array.from({ length: MNIST_BATCH * 784 }, () => (next() + 1) / 2),
    labels: Int32Array.from({ length: MNIST_BATCH }, () => Math.floor(((next() + 1) / 2) * 10) % 10),
  }));
  all.push(...(await soak('mnist train', COUNTS.mnist, (i) => trainer.step(batches[i % batches.length]))));

  // a second session of the same plan, one window long: if its steps are as slow as the
  // first session's last window, the drift is the process's or the device's, not the session's
  if (COUNTS.mnist >= 1000) {
    const fresh = await loadTrainingPlan(bundle, gpu.device);
    all.push(...(await soak('mnist fresh', Math.floor(COUNTS.mnist / WINDOWS), (i) => fresh.step(batches[i % batches.length]))));
    fresh.destroy();
  }

  // inference on the trained parameters: the plan's 'run' entry, outputs read back each time
  const inputs = { x: batches[0].x };
  all.push(...(await soak('mnist run', COUNTS.runs, async (i) => (await trainer.run(i % 2 ? inputs : { x: batches[1].x }, 'run')).logits[0])));
  trainer.destroy();
}

// the decoder block's training step, AdamW
{
  const s = SMOLLM2_BLOCK;
  const g = new Graph('block');
  const y = decoderBlock(g, s, g.input('x', [s.seq, s.hidden]));
  g.output('y', y);
  g.output('loss', g.mseLoss(y, g.input('target', [s.seq, s.hidden])));
  const { bundle } = await compileGraph(g, { seed: 1, training: { loss: 'loss', optimizer: { kind: 'adamw', lr: 3e-4 } } });
  const trainer = await loadTrainingPlan(bundle, gpu.device);
  const next = uniform(11);
  const batch = {
    x: Float32Array.from({ length: s.seq * s.hidden }, next),
    target: Float32Array.from({ length: s.seq * s.hidden }, next),
  };
  all.push(...(await soak('block train', COUNTS.block, () => trainer.step(batch))));
  trainer.destroy();
}

// a fresh session per window would hide leaks in loadPlan itself: load and destroy 200
// sessions of the MNIST inference plan too
{
  const g = new Graph('mnist');
  for (const [key, t] of Object.entries(mnist.build(g) ?? {})) g.output(key, t);
  const { bundle } = await compileGraph(g, { seed: 1 });
  const x = new Float32Array(MNIST_BATCH * 784).fill(0.5);
  const labels = new Int32Array(MNIST_BATCH); // the plan's 'run' computes the loss too
  all.push(
    ...(await soak('load+run+free', 200 * WINDOWS / 10, async () => {
      const session = await loadPlan(bundle, gpu.device);
      const out = await session.run({ x, labels });
      session.destroy();
      return out.logits[0];
    })),
  );
}

if (process.env.OUT) writeFileSync(join(process.env.OUT, 'soak.json'), JSON.stringify({ counts: COUNTS, windows: WINDOWS, samples: all }, null, 1));
await gpu.destroy();
