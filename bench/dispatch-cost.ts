// What dispatches cost the plans: the GPU time of one dependent dispatch (an empty kernel
// that writes the buffer the previous one wrote, N times in one pass), and for the MNIST
// and transformer-block training steps, with and without the optimizer, how much of the
// step's GPU time that fixed cost accounts for (dispatches × cost / step time).
//
//   npx esbuild bench/dispatch-cost.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/dispatch-cost.mjs
//   node .device/dispatch-cost.mjs        # on the GPU machine (needs timestamp-query)
import { buildGraph } from '../compiler/api';
import { compileGraph } from '../compiler/compile';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { mnist } from '../examples/mnist/model';
import { buildDecoder, SMOLLM2_135M } from '../examples/smollm2/model';
import { requestNodeDevice, type TensorData } from '../runtime/index';
import { BUFFER_STORAGE } from '../runtime/gpu-flags';
import type { Manifest } from '../schemas/manifest';
import { hyperFeed, measureGpuTime, median, prepareTimedPlan, timestampedPasses } from './gpu-time';


/** µs per dependent dispatch: `n` dispatches of an empty read-modify-write kernel in one pass. */
async function dependentDispatchMicros(device: GPUDevice, n: number): Promise<number> {
  const module = device.createShaderModule({
    code: `@group(0) @binding(0) var<storage, read_write> cell: array<u32>;
@compute @workgroup_size(1) fn main() { cell[0] = cell[0] + 1u; }`,
  });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const buffer = device.createBuffer({ size: 4, usage: BUFFER_STORAGE });
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer } }] });
  const times = await timestampedPasses(device, 7, (pass) => {
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    for (let i = 0; i < n; i++) pass.dispatchWorkgroups(1);
  });
  buffer.destroy();
  // the first pass warms up
  return median(times.slice(1).map((us) => us / n));
}

function batchFor(manifest: Manifest): Record<string, TensorData> {
  const u = uniformStream(3);
  const entry = manifest.entryPoints.train_step;
  const feeds: Record<string, TensorData> = { ...hyperFeed(manifest) };
  for (const input of entry.inputs) {
    if (input.name in feeds) continue;
    const n = input.shape.reduce((a, d) => a * d, 1);
    feeds[input.name] = input.dtype === 'i32' ? Int32Array.from({ length: n }, () => Math.floor(u() * 10)) : Float32Array.from({ length: n }, () => 2 * u() - 1);
  }
  return feeds;
}

const gpu = await requestNodeDevice();
if (!gpu.device.features.has('timestamp-query')) throw new Error(`${gpu.backend}: no timestamp-query, nothing to measure`);
const perDispatch = await dependentDispatchMicros(gpu.device, 2000);
console.log(`device: ${gpu.backend} ${gpu.adapter.info?.description ?? ''}`);
console.log(`one dependent dispatch (empty kernel, 2000 in one pass): ${perDispatch.toFixed(2)} µs\n`);

const plans: { name: string; build: () => Graph; train: NonNullable<typeof mnist.train> }[] = [
  { name: 'MNIST MLP train step', build: () => buildGraph('mnist', mnist, { locate: () => undefined }), train: mnist.train! },
  {
    name: 'transformer block train step (hidden 576, seq 128)',
    build: () => {
      const g = new Graph('block', { locate: () => undefined });
      const { logits, loss } = buildDecoder(g, { ...SMOLLM2_135M, layers: 1, vocab: 4096 });
      g.output('logits', logits);
      g.output('loss', loss);
      return g;
    },
    train: { loss: 'loss', optimizer: { kind: 'adamw', lr: 3e-4 } },
  },
];
console.log('plan'.padEnd(62), 'dispatches', 'GPU µs/step', 'dispatch cost µs', 'share');
for (const p of plans) {
  for (const optimize of [false, true]) {
    const compiled = await compileGraph(p.build(), { training: p.train, optimize, seed: 1, targets: [NVIDIA_HOPPER] });
    const timed = await prepareTimedPlan(compiled.bundle, gpu.device, 'train_step', batchFor(compiled.manifest));
    const { medianUs } = await measureGpuTime(timed);
    timed.destroy();
    const n = compiled.manifest.entryPoints.train_step.dispatches.length;
    const cost = n * perDispatch;
    const label = `${p.name}, ${optimize ? 'optimized' : 'one kernel per op'}`;
    console.log(label.padEnd(62), String(n).padStart(10), medianUs.toFixed(1).padStart(11), cost.toFixed(1).padStart(16), `${((100 * cost) / medianUs).toFixed(0)}%`.padStart(6));
  }
}
await gpu.destroy();
