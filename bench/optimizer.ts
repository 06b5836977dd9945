// What the optimizer buys: for the MNIST training plan and a transformer block (one
// SmolLM2-width layer written in primitives, forward + backward + AdamW), the plan compiled
// without and with the e-graph optimizer — dispatches and bytes bound per training step,
// peak memory, compile time — and, on a GPU, the time per training step of each. Then the
// compile time of the whole 30-layer SmolLM2-135M-shaped model, forward and backward.
//
//   npx tsx bench/optimizer.ts [--no-gpu] [--steps 50]                 # here
//   npx esbuild bench/optimizer.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/optimizer.mjs
//   node .device/optimizer.mjs                                          # on the GPU machine
//
// With $OUT set, the figures are also written to $OUT/optimizer.json.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildGraph, type ModelDefinition } from '../compiler/api';
import { compileGraph, type CompiledPlan } from '../compiler/compile';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { peakLiveBytes, scheduleOf } from '../compiler/plan/memory';
import { mnist } from '../examples/mnist/model';
import { buildDecoder, SMOLLM2_135M, type DecoderShape } from '../examples/smollm2/model';
import { loadTrainingPlan, requestNodeDevice, type NodeGPU, type TensorData } from '../runtime/index';
import type { Manifest } from '../schemas/manifest';

const args = process.argv.slice(2);
const useGpu = !args.includes('--no-gpu');
const stepsAt = args.indexOf('--steps');
const steps = stepsAt >= 0 ? Number(args[stepsAt + 1]) : 50;

/** One decoder layer at SmolLM2-135M's width, sequence 128, a 4096-token vocabulary. */
const BLOCK: DecoderShape = { ...SMOLLM2_135M, layers: 1, vocab: 4096 };

interface Workload {
  name: string;
  build: () => Graph;
  train: ModelDefinition['train'];
}

const workloads: Workload[] = [
  { name: 'MNIST MLP train step (784-128-10, batch 32, Adam)', build: () => buildGraph('mnist', mnist, { locate: () => undefined }), train: mnist.train },
  {
    name: 'transformer block train step (hidden 576, 9/3 heads, FFN 1536, seq 128, AdamW)',
    build: () => {
      const g = new Graph('block', { locate: () => undefined });
      const { logits, loss } = buildDecoder(g, BLOCK);
      g.output('logits', logits);
      g.output('loss', loss);
      return g;
    },
    train: { loss: 'loss', optimizer: { kind: 'adamw', lr: 3e-4 } },
  },
];

/** Per training step: dispatches, bytes of every binding (a bound on traffic), peak live intermediates. */
function planFigures(manifest: Manifest) {
  const entry = manifest.entryPoints[manifest.training!.entry];
  const bytes = new Map(manifest.buffers.map((b) => [b.id, b.byteLength]));
  const bound = entry.dispatches.reduce((n, d) => n + d.buffers.reduce((m, id) => m + bytes.get(id)!, 0), 0);
  const sizes = new Map(manifest.buffers.filter((b) => b.role === 'intermediate').map((b) => [b.id, b.byteLength]));
  const arenas = manifest.arenas?.byteLengths.reduce((n, l) => n + l, 0) ?? 0;
  return {
    dispatches: entry.dispatches.length,
    kernels: manifest.kernels.length,
    boundMiB: bound / 2 ** 20,
    peakLiveMiB: peakLiveBytes(scheduleOf(manifest.entryPoints, manifest.kernels), sizes) / 2 ** 20,
    arenasMiB: arenas / 2 ** 20,
  };
}

function batchFor(manifest: Manifest, seed: number): Record<string, TensorData> {
  const u = uniformStream(seed);
  const entry = manifest.entryPoints[manifest.training!.entry];
  const batch: Record<string, TensorData> = {};
  for (const input of entry.inputs) {
    if (input.name === manifest.training!.hyper.input) continue;
    const n = input.shape.reduce((a, d) => a * d, 1);
    batch[input.name] = input.dtype === 'i32' ? Int32Array.from({ length: n }, () => Math.floor(u() * 10)) : Float32Array.from({ length: n }, () => u() * 2 - 1);
  }
  return batch;
}

/** µs per step: `steps` queued steps after 10 warm-up ones, the median of 3 rounds. */
async function stepMicros(gpu: NodeGPU, plan: CompiledPlan): Promise<number> {
  const session = await loadTrainingPlan(plan.bundle, gpu.device);
  try {
    const batch = batchFor(plan.manifest, 1);
    for (let i = 0; i < 10; i++) await session.step(batch);
    const rounds: number[] = [];
    for (let r = 0; r < 3; r++) {
      const started = performance.now();
      await Promise.all(Array.from({ length: steps }, () => session.step(batch)));
      rounds.push(((performance.now() - started) * 1000) / steps);
    }
    return rounds.sort((a, b) => a - b)[1];
  } finally {
    session.destroy();
  }
}

const results: Record<string, unknown>[] = [];
const gpu = useGpu ? await requestNodeDevice() : undefined;
if (gpu) console.log(`device: ${gpu.backend} ${gpu.adapter.info?.description || gpu.adapter.info?.device || ''}`);
for (const w of workloads) {
  console.log(`\n${w.name}`);
  const rows: string[][] = [['plan', 'dispatches/step', 'kernels', 'bound MiB/step', 'peak live MiB', 'arenas MiB', 'compile ms', useGpu ? 'µs/step' : '']];
  const figures: Record<string, unknown> = { workload: w.name };
  for (const optimize of [false, true]) {
    const started = performance.now();
    const plan = await compileGraph(w.build(), { training: w.train, optimize, seed: 1, targets: [NVIDIA_HOPPER] });
    const compileMs = performance.now() - started;
    const f = planFigures(plan.manifest);
    const micros = gpu ? await stepMicros(gpu, plan) : undefined;
    const label = optimize ? 'optimized' : 'one kernel per op';
    figures[label] = { ...f, compileMs, stepMicros: micros };
    rows.push([label, String(f.dispatches), String(f.kernels), f.boundMiB.toFixed(2), f.peakLiveMiB.toFixed(2), f.arenasMiB.toFixed(2), compileMs.toFixed(0), micros === undefined ? '' : micros.toFixed(1)]);
  }
  results.push(figures);
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) console.log('  ' + r.map((cell, c) => cell.padEnd(widths[c])).join('  '));
}
await gpu?.destroy();

// The 30-layer model, forward + backward + AdamW, without embedding its 135M initial values.
console.log('\nSmolLM2-135M shape, 30 layers, forward + backward + AdamW (weights not embedded)');
for (const optimize of [false, true]) {
  const g = new Graph('smollm2', { locate: () => undefined });
  const { logits, loss } = buildDecoder(g, SMOLLM2_135M);
  g.output('logits', logits);
  g.output('loss', loss);
  const started = performance.now();
  const plan = await compileGraph(g, { training: { loss: 'loss', optimizer: { kind: 'adamw', lr: 3e-4 } }, optimize, weights: 'none', targets: [NVIDIA_HOPPER] });
  const seconds = (performance.now() - started) / 1000;
  const f = planFigures(plan.manifest);
  const stages = Object.entries(plan.timings).map(([k, v]) => `${k} ${Math.round(v)}`).join(', ');
  console.log(`  ${optimize ? 'optimized' : 'one kernel per op'}: compiled in ${seconds.toFixed(2)} s (${stages} ms); ${f.dispatches} dispatches per step, peak live ${f.peakLiveMiB.toFixed(0)} MiB`);
  results.push({ workload: 'smollm2-135m compile', optimize, seconds, timings: plan.timings, ...f });
}
if (process.env.OUT) writeFileSync(join(process.env.OUT, 'optimizer.json'), JSON.stringify(results, null, 2));
