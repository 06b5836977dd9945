// models/llama.ts's training step at SmolLM2-135M's config against PyTorch (issue 19, item 8):
// the causal-LM loss over one sequence of --seq tokens (logits at 0 .. T-2 against tokens
// 1 .. T-1) and AdamW (lr 3e-4, PyTorch's other defaults), compiled for nvidia-hopper. With a
// directory written by bench/llama_train_torch.py it loads that checkpoint by name and trains
// on its token batches, comparing each step's loss with eager PyTorch's from the same weights;
// without one it trains the plan's own seeded initial weights on seeded random tokens. Then it
// times train_step: awaited (session.step, the loss read back), queued (--queue steps issued
// before awaiting them: wall / queue) and, with timestamp queries, GPU time (steps back to back
// in one pass, gpu-time.ts), beside torch.json's eager and torch.compile figures.
//
//   python3 bench/llama_train_torch.py /tmp/lt --time
//   npx esbuild bench/llama-train.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/llama-train.mjs
//   node .device/llama-train.mjs /tmp/lt [--seq 128] [--queue 20] [--rounds 5] [--awaited 20]
//   npx tsx bench/llama-train.ts --small          # a 2-layer toy, no PyTorch: checks the program here
//
// Writes llama-train.json to $OUT when set.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { DEFAULT_OPTIMIZER, llama, llamaEntries, llamaShape, type HfLlamaConfig, type LlamaOptions } from '../models/llama';
import { decodeSafetensors, loadTrainingPlan, requestNodeDevice, tensorAsF32, type SafetensorsFile } from '../runtime/index';
import { hyperFeed, measureGpuTime, median, prepareTimedPlan } from './gpu-time';
import { SMOLLM2_135M_CONFIG } from './models/smollm2-135m-config';

/** HuggingFaceTB/SmolLM2-135M's config.json (llama_train_torch.py's SMOLLM2_135M) */
const SMOLLM2_135M: HfLlamaConfig = SMOLLM2_135M_CONFIG;
/** the same family at toy size (llama_train_torch.py's SMOL_TOY) */
const SMOL_TOY: HfLlamaConfig = { ...SMOLLM2_135M, vocab_size: 256, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 };

interface Options {
  dir?: string;
  small: boolean;
  seq: number;
  steps: number;
  queue: number;
  rounds: number;
  awaited: number;
  warmup: number;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { small: false, seq: 128, steps: 8, queue: 20, rounds: 5, awaited: 20, warmup: 5 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--small') options.small = true;
    else if (flag.startsWith('--') && flag.slice(2) in options && flag !== '--dir') {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 1) throw new Error(`${flag} needs a positive integer; got ${argv[i]}`);
      (options as unknown as Record<string, number>)[flag.slice(2)] = value;
    } else if (!flag.startsWith('--') && options.dir === undefined) options.dir = flag;
    else throw new Error(`unknown argument "${flag}" (usage: llama-train [DIR] [--small] [--seq N] [--steps N] [--queue N] [--rounds N] [--awaited N] [--warmup N])`);
  }
  return options;
}

/** An I64 tensor of the reference file as i32 rows [rows, seq]. */
function tokenRows(file: SafetensorsFile, where: string): Int32Array[] {
  const t = file.tensors.get('tokens');
  if (!t || t.dtype !== 'I64' || t.shape.length !== 2) throw new Error(`${where}: tokens must be an I64 tensor [steps, seq]`);
  const v = new BigInt64Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
  const [rows, seq] = t.shape;
  return Array.from({ length: rows }, (_, r) => Int32Array.from(v.subarray(r * seq, (r + 1) * seq), Number));
}

function losses(file: SafetensorsFile, where: string): Float32Array {
  const t = file.tensors.get('losses');
  if (!t) throw new Error(`${where}: no tensor losses`);
  const bytes = tensorAsF32(t, `${where}: losses`);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

const options = parseOptions(process.argv.slice(2));
const config: HfLlamaConfig = options.dir ? JSON.parse(readFileSync(join(options.dir, 'config.json'), 'utf8')) : options.small ? SMOL_TOY : SMOLLM2_135M;
const reference = options.dir ? decodeSafetensors(new Uint8Array(readFileSync(join(options.dir, 'reference.safetensors'))), join(options.dir, 'reference.safetensors')) : undefined;
const torch = options.dir ? (JSON.parse(readFileSync(join(options.dir, 'torch.json'), 'utf8')) as { timings?: Record<string, Record<string, number | string>>; [k: string]: unknown }) : undefined;
const s = llamaShape(config);
const batches = reference
  ? tokenRows(reference, options.dir!)
  : (() => {
      const u = uniformStream(1);
      return Array.from({ length: options.steps }, () => Int32Array.from({ length: options.seq }, () => Math.floor(u() * s.vocab)));
    })();
const seq = batches[0].length;
const torchLosses = reference ? losses(reference, options.dir!) : undefined;

const llamaOptions: LlamaOptions = { forward: seq, train: true };
const g = new Graph(options.dir ? options.dir.split('/').pop()! : options.small ? 'smollm2_toy_train' : 'smollm2_135m_train');
for (const [name, t] of Object.entries(llama(g, config, llamaOptions))) g.output(name, t);
const compileStarted = performance.now();
// with a checkpoint the weights stay outside the plan (loaded by name); without one the plan holds its seeded initial values
const plan = await compileGraph(g, {
  seed: 1,
  ...(options.dir ? { weights: 'none' as const } : {}),
  entries: llamaEntries(llamaOptions),
  training: { loss: 'loss', optimizer: DEFAULT_OPTIMIZER },
  targets: [NVIDIA_HOPPER],
});
const compileS = (performance.now() - compileStarted) / 1000;
const entry = plan.manifest.training!.entry;
const dispatches = plan.manifest.entryPoints[entry].dispatches.length;

const gpu = await requestNodeDevice();
const description = `${gpu.backend} ${gpu.adapter.info?.description ?? ''}`.trim();
console.log(`device: ${description}`);
console.log(
  `model: ${s.layers} layers, hidden ${s.hidden}, ${s.heads} heads over ${s.kvHeads}, FFN ${s.ffn}, vocab ${s.vocab}; one sequence of ${seq} tokens a step, AdamW lr ${DEFAULT_OPTIMIZER.lr}; ` +
    `${entry}: ${dispatches} dispatches, compiled in ${compileS.toFixed(1)} s`,
);
const session = await loadTrainingPlan(plan.bundle, gpu.device);
let report: Record<string, unknown> = {};
try {
  if (options.dir) {
    const loaded = session.loadWeights(new Uint8Array(readFileSync(join(options.dir, 'model.safetensors'))));
    console.log(`weights: ${loaded.loaded.length} tensors loaded from ${join(options.dir, 'model.safetensors')}`);
  }
  // agreement: the first steps' losses, each before its update, against eager PyTorch's from the same weights
  const ours: number[] = [];
  for (const tokens of batches) ours.push(await session.step({ tokens }));
  const errors = torchLosses ? ours.map((l, i) => Math.abs(l - torchLosses[i])) : [];
  console.log(`losses, ours:  ${ours.map((l) => l.toFixed(4)).join(' ')}`);
  if (torchLosses) {
    console.log(`losses, torch: ${Array.from(torchLosses, (l) => l.toFixed(4)).join(' ')}`);
    console.log(`max |Δloss| over ${ours.length} steps: ${Math.max(...errors).toExponential(2)}`);
  }

  let k = 0;
  const next = () => ({ tokens: batches[k++ % batches.length] });
  for (let i = 0; i < options.warmup; i++) await session.step(next());
  const awaited: number[] = [];
  for (let i = 0; i < options.awaited; i++) {
    const t0 = performance.now();
    await session.step(next());
    awaited.push(performance.now() - t0);
  }
  const queued: number[] = [];
  for (let r = 0; r < options.rounds; r++) {
    const t0 = performance.now();
    await Promise.all(Array.from({ length: options.queue }, () => session.step(next())));
    queued.push((performance.now() - t0) / options.queue);
  }
  let gpuMs: number | undefined;
  if (gpu.device.features.has('timestamp-query')) {
    const timed = await prepareTimedPlan(plan.bundle, gpu.device, entry, { tokens: batches[0], ...hyperFeed(plan.manifest) });
    try {
      gpuMs = (await measureGpuTime(timed)).medianUs / 1000;
    } finally {
      timed.destroy();
    }
  }
  const figures = { awaited_ms: median(awaited), queued_ms: median(queued), ...(gpuMs !== undefined ? { gpu_ms: gpuMs } : {}) };

  const rows: [string, Record<string, number | string>][] = [[`ours (${gpu.backend})`, figures], ...Object.entries(torch?.timings ?? {}).map(([mode, t]) => [`torch ${mode}`, t] as [string, Record<string, number | string>])];
  const ms = (v: number | string | undefined) => (typeof v === 'number' ? v.toFixed(2) : '–').padStart(10);
  console.log(`\n${'ms per train step'.padEnd(34)} ${'awaited'.padStart(10)} ${'queued'.padStart(10)} ${'GPU'.padStart(10)}   ours / this, queued (above 1: ours slower)`);
  for (const [name, t] of rows) {
    if (typeof t.error === 'string') {
      console.log(`${name.padEnd(34)} failed: ${t.error}`);
      continue;
    }
    const ratio = typeof t.queued_ms === 'number' ? `${(figures.queued_ms / t.queued_ms).toFixed(2)}x` : '';
    console.log(`${name.padEnd(34)} ${ms(t.awaited_ms)} ${ms(t.queued_ms)} ${ms(t.gpu_ms)}   ${ratio}${typeof t.first_call_s === 'number' ? `  (first call ${t.first_call_s.toFixed(1)} s)` : ''}`);
  }
  report = { date: new Date().toISOString(), device: description, layers: s.layers, seq, dispatches, compileS, losses: ours, torchLosses: torchLosses && Array.from(torchLosses), maxLossError: errors.length ? Math.max(...errors) : undefined, ours: figures, torch };
} finally {
  session.destroy();
  await gpu.destroy();
}
if (process.env.OUT) {
  const path = join(process.env.OUT, 'llama-train.json');
  writeFileSync(path, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${path}`);
}
