// The Llama builder's (models/llama.ts) prefill and decode at SmolLM2-135M's config.json
// (vocab 49152, hidden 576, 30 layers, 9 heads, 3 KV heads, FFN 1536, rope_theta 100000, tied
// embeddings), weights not embedded: dispatches per entry by kernel, from the plan's dispatch
// list (no GPU needed); with --time, on a GPU (with timestamp-query for figures), each entry's GPU time (its
// dispatches back to back, bench/gpu-time.ts) and its awaited latency through a session
// (inputs written, dispatches submitted, logits read back). Decode runs at --position (the
// context it attends over), prefill over a full prompt of --max-prompt tokens.
//
// --weight-storage bf16 (or f16) holds the projections, embedding and head at 2 bytes a value
// (compileGraph's weightStorage), for the decode against the f32 plan's.
//
//   npx tsx bench/llama-dispatches.ts [--layers 30] [--max-sequence 256] [--max-prompt 128] [--weight-storage bf16]
//   npx esbuild bench/llama-dispatches.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/llama-dispatches.mjs
//   node .device/llama-dispatches.mjs --time [--position 128] [--per-dispatch 50]   # on the GPU machine
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import type { WeightStorage } from '../compiler/ir/weight-storage';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { llama, llamaEntries, type HfLlamaConfig, type LlamaOptions } from '../models/llama';
import { loadPlan, requestNodeDevice, type TensorData } from '../runtime/index';
import { measureGpuTime, median, prepareTimedPlan } from './gpu-time';
import { SMOLLM2_135M_CONFIG } from './models/smollm2-135m-config';

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback);

const config: HfLlamaConfig = { ...SMOLLM2_135M_CONFIG, num_hidden_layers: option('--layers', 30) };
const options: LlamaOptions = { maxSequence: option('--max-sequence', 256), maxPrompt: option('--max-prompt', 128) };
const position = option('--position', 128);

const g = new Graph('smollm2_135m', { locate: () => undefined });
for (const [name, t] of Object.entries(llama(g, config, options))) g.output(name, t);
const started = performance.now();
const weightStorage = (args.includes('--weight-storage') ? args[args.indexOf('--weight-storage') + 1] : 'f32') as WeightStorage;
const plan = await compileGraph(g, { weights: 'none', entries: llamaEntries(options), targets: [NVIDIA_HOPPER], weightStorage });
const weightBytes = plan.manifest.buffers.filter((b) => b.role === 'parameter').reduce((n, b) => n + b.byteLength, 0);
console.log(
  `SmolLM2-135M config, ${config.num_hidden_layers} layers, cache ${options.maxSequence} rows, prompt ${options.maxPrompt}, weights held as ${weightStorage} ` +
    `(${(weightBytes / 1e6).toFixed(1)} MB): compiled for nvidia-hopper in ${((performance.now() - started) / 1000).toFixed(1)} s`,
);
for (const [entry, { dispatches }] of Object.entries(plan.manifest.entryPoints)) {
  const byKind = new Map<string, number>();
  for (const d of dispatches) {
    const k = plan.manifest.kernels[d.kernel];
    const kind = `${k.name.replace(/_\d+$/, '')} [${k.ops.join(' ')}]`;
    byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
  }
  console.log(`\n${entry}: ${dispatches.length} dispatches`);
  for (const [kind, n] of [...byKind].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(4)}  ${kind}`);
}

if (args.includes('--time')) {
  const gpu = await requestNodeDevice();
  // without timestamp-query (llvmpipe) gpu-time.ts times submit → done instead: a check of this program, not a figure
  const clock = gpu.device.features.has('timestamp-query') ? 'timestamps' : 'wall clock (no timestamp-query)';
  console.log(`\ndevice: ${gpu.backend} ${gpu.adapter.info?.description ?? ''}; GPU time by ${clock}`);
  const prompt = Int32Array.from({ length: options.maxPrompt! }, (_, i) => (i * 7919) % config.vocab_size);
  const feeds: Record<string, Record<string, TensorData>> = {
    prefill: { prompt, length: Float32Array.of(options.maxPrompt!) },
    decode: { token: Int32Array.of(42), position: Float32Array.of(position) },
  };
  const perDispatchReps = option('--per-dispatch', 0);
  const perKind: string[] = [];
  console.log('| entry | dispatches | GPU µs (median pass) | awaited µs (median of 50) |\n| --- | --- | --- | --- |');
  const session = await loadPlan(plan.bundle, gpu.device);
  for (const entry of ['prefill', 'decode']) {
    const timed = await prepareTimedPlan(plan.bundle, gpu.device, entry, feeds[entry]);
    const { medianUs } = await measureGpuTime(timed, { warmupUs: 200_000, targetPassUs: 50_000, maxReps: 200 });
    if (perDispatchReps > 0) {
      // each dispatch alone, repeated: summed by kernel kind, the costliest first
      const byKind = new Map<string, { count: number; us: number }>();
      for (const d of await timed.perDispatch(perDispatchReps)) {
        const kind = d.kernel.replace(/_\d+$/, '');
        const sum = byKind.get(kind) ?? { count: 0, us: 0 };
        byKind.set(kind, { count: sum.count + 1, us: sum.us + d.us });
      }
      perKind.push(`${entry}, each dispatch alone (${perDispatchReps} repetitions): ${[...byKind].sort((a, b) => b[1].us - a[1].us).map(([k, v]) => `${k} ×${v.count} ${v.us.toFixed(1)} µs`).join('; ')}`);
    }
    timed.destroy();
    const awaited: number[] = [];
    for (let i = 0; i < 60; i++) {
      const t0 = performance.now();
      await session.run(feeds[entry], entry);
      if (i >= 10) awaited.push((performance.now() - t0) * 1000);
    }
    console.log(`| ${entry}${entry === 'decode' ? ` at position ${position}` : ` of ${options.maxPrompt} tokens`} | ${plan.manifest.entryPoints[entry].dispatches.length} | ${medianUs.toFixed(1)} | ${median(awaited).toFixed(1)} |`);
  }
  session.destroy();
  for (const line of perKind) console.log(`\n${line}`);
  await gpu.destroy();
}
