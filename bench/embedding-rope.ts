// GPU time of the embedding gather, its scatter-add gradient and rope at SmolLM2-135M's sizes
// (vocabulary 49152, hidden 576, 128 tokens; q [128, 9, 64], k [128, 3, 64]), against the
// one-hot products they replace; with --model, the 30-layer decoder's forward and AdamW
// training step (examples/smollm2/model.ts, weights not embedded: timing only).
//
//   npx esbuild bench/embedding-rope.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/embedding-rope.mjs
//   node .device/embedding-rope.mjs [--model] [--tokens 128]   # on the GPU machine (needs timestamp-query)
import { compileGraph } from '../compiler/compile';
import { Graph, type Tensor } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { buildDecoder, SMOLLM2_135M } from '../examples/smollm2/model';
import { requestNodeDevice, type TensorData } from '../runtime/index';
import { hyperFeed, measureGpuTime, prepareTimedPlan } from './gpu-time';

const args = process.argv.slice(2);
const tokens = Number(args[args.indexOf('--tokens') + 1] || 128);
const [V, D] = [SMOLLM2_135M.vocab, SMOLLM2_135M.hidden];

const gpu = await requestNodeDevice();
if (!gpu.device.features.has('timestamp-query')) throw new Error(`${gpu.backend}: no timestamp-query, nothing to measure`);
console.log(`device: ${gpu.backend} ${gpu.adapter.info?.description ?? ''}; ${tokens} tokens, table [${V}, ${D}]\n`);

function feedsFor(g: Graph): Record<string, TensorData> {
  const u = uniformStream(5);
  const feeds: Record<string, TensorData> = {};
  for (const n of g.nodes) {
    if (n.op !== 'input') continue;
    const count = n.type.shape.reduce((a, d) => a * d, 1);
    // distinct ids: every gradient row a token names is a row of its own
    feeds[n.name] = n.type.dtype === 'i32' ? Int32Array.from({ length: count }, (_, i) => (i * 7919) % V) : Float32Array.from({ length: count }, () => 2 * u() - 1);
  }
  return feeds;
}

async function time(label: string, build: (g: Graph) => Tensor) {
  const g = new Graph(label.replace(/\W+/g, '_'), { locate: () => undefined });
  g.output('y', build(g));
  const plan = await compileGraph(g, { weights: 'none', targets: [NVIDIA_HOPPER] });
  const timed = await prepareTimedPlan(plan.bundle, gpu.device, 'run', feedsFor(g));
  const { medianUs } = await measureGpuTime(timed, { warmupUs: 100_000 });
  const each = (await timed.perDispatch(200)).map((d) => `${d.kernel} ${d.us.toFixed(1)}`).join(', ');
  console.log(`| ${label} | ${timed.dispatches.length} | ${medianUs.toFixed(1)} | ${each} |`);
  timed.destroy();
}

console.log('| what | dispatches | µs (GPU) | µs per dispatch, alone |\n| --- | --- | --- | --- |');
const table = (g: Graph) => g.parameter('table', [V, D]);
const ids = (g: Graph) => g.input('ids', [tokens], 'i32');
await time('embedding gather', (g) => g.embedding(table(g), ids(g)));
await time('one-hot product (before)', (g) => g.matmul(g.oneHot(ids(g), V), table(g)));
await time('embeddingBackward (scatter-add)', (g) => g.embeddingBackward(g.input('dy', [tokens, D]), ids(g), { rows: V }));
await time("one-hot product's gradient (before)", (g) => g.matmul(g.transpose(g.oneHot(ids(g), V), [1, 0]), g.input('dy', [tokens, D])));
const positions = (g: Graph) => g.constant(Float32Array.from({ length: tokens }, (_, i) => i), [tokens, 1]);
await time('rope q [T, 9, 64]', (g) => g.rope(g.input('q', [tokens, 9, 64]), positions(g), { theta: 100000 }));
await time('rope k [T, 3, 64]', (g) => g.rope(g.input('k', [tokens, 3, 64]), positions(g), { theta: 100000 }));

if (args.includes('--model')) {
  const g = new Graph('smollm2', { locate: () => undefined });
  const { logits, loss } = buildDecoder(g, { ...SMOLLM2_135M, seq: tokens });
  g.output('logits', logits);
  g.output('loss', loss);
  const plan = await compileGraph(g, { weights: 'none', targets: [NVIDIA_HOPPER], training: { loss: 'loss', optimizer: { kind: 'adamw', lr: 3e-4 } } });
  for (const entry of ['run', 'train_step']) {
    const feeds = { ...feedsFor(g), ...(entry === 'train_step' ? hyperFeed(plan.manifest) : {}) };
    const timed = await prepareTimedPlan(plan.bundle, gpu.device, entry, feeds);
    const { medianUs } = await measureGpuTime(timed, { warmupUs: 200_000, targetPassUs: 100_000, maxReps: 50 });
    const mine = (await timed.perDispatch(20)).filter((d) => /^(embedding|rope)/.test(d.kernel));
    const ours = mine.reduce((s, d) => s + d.us, 0);
    console.log(`\nSmolLM2-135M ${entry === 'run' ? 'forward' : 'AdamW training step'}, ${tokens} tokens: ${timed.dispatches.length} dispatches, ${(medianUs / 1000).toFixed(2)} ms GPU; embedding and rope kernels ${mine.length} dispatches, ${(ours / 1000).toFixed(3)} ms alone`);
    timed.destroy();
  }
}
await gpu.destroy();
