// Time to the first result in Node (Dawn), with the first run going ahead as pipelines arrive
// (`nowait`, loadPlan's behaviour) against the first run after every pipeline exists (`wait`:
// await session.ready first, as loadPlan did before), each round on a fresh device so no
// pipeline is cached. The model: the ONNX Llama decoder of bench/startup.ts (`llama-onnx`: 2
// layers, hidden 64, a 32000-token vocabulary; 8 prompt ids → logits), or any plan whose
// 'run' inputs are all given by --feeds (a JSON file of name → numbers).
//
//   npx tsx bench/first-result.ts [--plan file.mnplan --feeds feeds.json] [--targets generic] [--rounds 5]
//
// Whether the two differ says whether this host's createComputePipelineAsync compiles beside
// the queue: on Dawn's OpenGL backend (llvmpipe) every pipeline exists when loadPlan returns.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { compileGraph } from '../compiler/compile';
import { importOnnxModel } from '../compiler/frontends/onnx/load';
import { decodeModel } from '../compiler/frontends/onnx/proto';
import { parseTargets } from '../compiler/target/targets';
import { llamaModel } from '../fixtures/onnx/architectures';
import { encodeModel } from '../fixtures/onnx/models';
import { loadPlan, requestNodeDevice, type TensorData } from '../runtime/index';

const { values: args } = parseArgs({
  options: { plan: { type: 'string' }, feeds: { type: 'string' }, targets: { type: 'string', default: 'generic' }, rounds: { type: 'string', default: '5' } },
});

async function planAndFeeds(): Promise<{ plan: Uint8Array; feeds: Record<string, TensorData> }> {
  if (args.plan) {
    if (!args.feeds) throw new Error('--plan needs --feeds (a JSON file of input name → numbers)');
    const json = JSON.parse(readFileSync(args.feeds, 'utf8')) as Record<string, number[]>;
    return { plan: readFileSync(args.plan), feeds: Object.fromEntries(Object.entries(json).map(([k, v]) => [k, Float32Array.from(v)])) };
  }
  const onnx = encodeModel(llamaModel(14, { d: 64, heads: 4, kvHeads: 2, vocab: 32000, ffn: 128 }));
  const graph = importOnnxModel(decodeModel(onnx, 'llama-onnx.onnx'), 'llama-onnx.onnx', { freeze: true, shapes: { input_ids: [1, 8] } }).graph;
  const plan = (await compileGraph(graph, { seed: 0, targets: parseTargets(args.targets!) })).bundle;
  return { plan, feeds: { input_ids: Int32Array.from([1, 415, 2936, 9060, 285, 1142, 461, 10575]) } };
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1];

const { plan, feeds } = await planAndFeeds();
const times: Record<'wait' | 'nowait', { load: number; ready: number; first: number }[]> = { wait: [], nowait: [] };
let adapter = '';
for (let round = 0; round < Number(args.rounds); round++) {
  for (const mode of ['nowait', 'wait'] as const) {
    const gpu = await requestNodeDevice();
    try {
      const start = performance.now();
      const session = await loadPlan(plan, gpu.device);
      const load = performance.now() - start;
      let ready = NaN;
      const built = session.ready.then(() => (ready = performance.now() - start));
      if (mode === 'wait') await built;
      await session.run(feeds);
      const first = performance.now() - start;
      await built;
      adapter = `${gpu.backend}: ${JSON.stringify(session.adapter)}, target ${session.target.name}`;
      times[mode].push({ load, ready, first });
      console.error(`round ${round + 1} ${mode}: loadPlan ${load.toFixed(0)} ms, every pipeline at ${ready.toFixed(0)} ms, first result at ${first.toFixed(0)} ms`);
      session.destroy();
    } finally {
      await gpu.destroy();
    }
  }
}
console.log(`${adapter}; plan ${plan.length} bytes; medians of ${args.rounds} fresh devices`);
console.log('');
console.log('| first run | loadPlan (ms) | every pipeline (ms) | first result (ms) |');
console.log('| --- | ---: | ---: | ---: |');
for (const mode of ['wait', 'nowait'] as const) {
  const t = times[mode];
  console.log(`| ${mode === 'wait' ? 'after every pipeline' : 'as pipelines arrive'} | ${median(t.map((x) => x.load)).toFixed(0)} | ${median(t.map((x) => x.ready)).toFixed(0)} | ${median(t.map((x) => x.first)).toFixed(0)} |`);
}
