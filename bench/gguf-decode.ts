// SmolLM2-135M-shaped GGUF models, one per tensor type, through `mnc compile model.gguf`'s path
// (compiler/frontends/gguf/load.ts, models/llama.ts): prefill of a full prompt and decode at a
// given context, as GPU time (timestamp queries around back-to-back runs, bench/gpu-time.ts)
// and awaited latency (a session's run: inputs written, dispatches submitted, logits read
// back), with the weight bytes a decoded token reads (issue 20 item 5). The files are written
// here with the test tooling's GGUF writer and quantizers (random weights, seeded; 64 distinct
// rows per matrix repeated down it, which the timings do not see): no download.
//
// As llama.cpp's quantizer does, a K-quant tensor whose rows are not a whole number of 256-value
// super-blocks falls back (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0): at hidden 576 that is every
// projection but ffn_down (rows of 1536). The token embedding is written in the file's type
// and dequantized to f32 at compile time (F16 and BF16 stay so: gathered in-kernel); tied, as
// SmolLM2's, it is also the head, a product of 49152 × 576.
//
//   npx tsx bench/gguf-decode.ts --small                       # tiny shapes, on this machine (llvmpipe: wall clock)
//   npx esbuild bench/gguf-decode.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/gguf-decode.mjs
//   node .device/gguf-decode.mjs [--types F32,Q8_0,Q4_K] [--position 128] [--prompt 128]   # on the GPU machine
import { compileGraph } from '../compiler/compile';
import { quantize } from '../compiler/frontends/gguf/quantize';
import { ggufModel } from '../compiler/frontends/gguf/load';
import { uniformStream } from '../compiler/ir/init';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { ggmlType, type SupportedTypeName } from '../runtime/ggml-types';
import { ggufTensorName } from '../runtime/gguf-llama';
import { loadPlan, requestNodeDevice, type TensorData } from '../runtime/index';
import { encodeGguf, meta, type GgufWriterTensor } from '../test/gguf-writer';
import { measureGpuTime, median, prepareTimedPlan } from './gpu-time';

const args = process.argv.slice(2);
const flag = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const small = args.includes('--small');

/** SmolLM2-135M's config.json shape; --small: a toy whose ffn rows still hold 256-value super-blocks. */
const shape = small
  ? { vocab: 512, hidden: 128, layers: 2, heads: 4, kvHeads: 2, ffn: 256 }
  : { vocab: 49152, hidden: 576, layers: 30, heads: 9, kvHeads: 3, ffn: 1536 };
const promptTokens = Number(flag('--prompt') ?? (small ? 16 : 128));
const position = Number(flag('--position') ?? promptTokens);
const maxSequence = Math.max(2 * promptTokens, position + 1);
const TYPES: SupportedTypeName[] = (flag('--types')?.split(',') ?? ['F32', 'F16', 'Q8_0', 'Q4_0', 'Q4_K', 'Q5_K', 'Q6_K']) as SupportedTypeName[];
const K_FALLBACK: Partial<Record<SupportedTypeName, SupportedTypeName>> = { Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0' };

/** The type a [rows, cols] tensor is written in for a file of `type`. */
function typeFor(type: SupportedTypeName, cols: number): SupportedTypeName {
  return cols % ggmlType(type).blockElements === 0 ? type : K_FALLBACK[type] ?? 'Q8_0';
}

/** The file's tensors: HF names and [rows, cols] shapes, as the builder asks for them. */
function tensorShapes(): [string, number[]][] {
  const { vocab, hidden, heads, kvHeads, ffn } = shape;
  const d = hidden / heads;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [vocab, hidden]]];
  for (let l = 0; l < shape.layers; l++) {
    const p = `model.layers.${l}.`;
    out.push(
      [`${p}input_layernorm.weight`, [hidden]],
      [`${p}self_attn.q_proj.weight`, [heads * d, hidden]],
      [`${p}self_attn.k_proj.weight`, [kvHeads * d, hidden]],
      [`${p}self_attn.v_proj.weight`, [kvHeads * d, hidden]],
      [`${p}self_attn.o_proj.weight`, [hidden, heads * d]],
      [`${p}post_attention_layernorm.weight`, [hidden]],
      [`${p}mlp.gate_proj.weight`, [ffn, hidden]],
      [`${p}mlp.up_proj.weight`, [ffn, hidden]],
      [`${p}mlp.down_proj.weight`, [hidden, ffn]],
    );
  }
  out.push(['model.norm.weight', [hidden]]);
  return out;
}

/** Distinct random rows per matrix, repeated down it: the quantizers run in JS, and timings do not depend on the values. */
const DISTINCT_ROWS = 64;

/** A GGUF file of the shape with seeded random weights: matrices in `type` (or its fallback), norms F32. */
function ggufOf(type: SupportedTypeName): { bytes: Uint8Array; types: Map<string, number> } {
  const u = uniformStream(7);
  const tensors: GgufWriterTensor[] = [];
  const types = new Map<string, number>();
  for (const [hf, dims] of tensorShapes()) {
    const norm = dims.length === 1;
    const [rows, cols] = norm ? [1, dims[0]] : dims;
    const distinct = Math.min(rows, DISTINCT_ROWS);
    const values = new Float32Array(distinct * cols);
    const spread = norm ? 0.2 : 1 / Math.sqrt(cols);
    for (let i = 0; i < values.length; i++) values[i] = (norm ? 1 : 0) + spread * (2 * u() - 1);
    const t = norm ? 'F32' : typeFor(type, cols);
    types.set(t, (types.get(t) ?? 0) + rows * cols);
    const some = quantize(t, values);
    const rowBytes = some.length / distinct;
    const data = new Uint8Array(rows * rowBytes);
    for (let r = 0; r < rows; r += distinct) data.set(some.subarray(0, Math.min(distinct, rows - r) * rowBytes), r * rowBytes);
    tensors.push({ name: ggufTensorName(hf)!, type: t, ne: [...dims].reverse(), data });
  }
  const a = 'llama';
  const metadata: [string, ReturnType<typeof meta.u32>][] = [
    ['general.architecture', meta.str(a)],
    ['general.name', meta.str(`smollm2-135m-shaped-${type}`)],
    [`${a}.context_length`, meta.u32(8192)],
    [`${a}.embedding_length`, meta.u32(shape.hidden)],
    [`${a}.block_count`, meta.u32(shape.layers)],
    [`${a}.feed_forward_length`, meta.u32(shape.ffn)],
    [`${a}.attention.head_count`, meta.u32(shape.heads)],
    [`${a}.attention.head_count_kv`, meta.u32(shape.kvHeads)],
    [`${a}.attention.layer_norm_rms_epsilon`, meta.f32(1e-5)],
    [`${a}.rope.freq_base`, meta.f32(100000)],
    [`${a}.vocab_size`, meta.u32(shape.vocab)],
  ];
  return { bytes: encodeGguf({ metadata, tensors }), types };
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const gpu = await requestNodeDevice();
const timestamps = gpu.device.features.has('timestamp-query');
console.log(
  `${small ? 'toy' : 'SmolLM2-135M'} shape (vocab ${shape.vocab}, hidden ${shape.hidden}, ${shape.layers} layers, ${shape.heads} heads over ${shape.kvHeads}, ffn ${shape.ffn}, tied), ` +
    `prefill of ${promptTokens} tokens, decode at position ${position}, cache ${maxSequence} rows; compiled for nvidia-hopper`,
);
console.log(`device: ${gpu.backend} ${gpu.adapter.info?.description ?? ''}; GPU time by ${timestamps ? 'timestamps' : 'wall clock (no timestamp-query: a check of this program, not a figure)'}`);
const rows: string[] = [];
for (const type of TYPES) {
  const written = performance.now();
  const { bytes, types } = ggufOf(type);
  const made = performance.now();
  const model = ggufModel(bytes, `smollm2-${type}.gguf`, { maxSequence, maxPrompt: promptTokens });
  const plan = await compileGraph(model.graph, { entries: model.entries, targets: [NVIDIA_HOPPER] });
  const compiled = performance.now();
  // every parameter is read once per decoded token (the tied embedding as the head)
  const parameters = plan.manifest.buffers.filter((b) => b.role === 'parameter');
  const weightBytes = parameters.reduce((n, b) => n + b.byteLength, 0);
  const f32Bytes = parameters.filter((b) => b.dtype === 'f32').reduce((n, b) => n + b.byteLength, 0);
  const mix = [...types].map(([t, n]) => `${t} ${((100 * n) / [...types.values()].reduce((a, b) => a + b, 0)).toFixed(1)}%`).join(', ');
  const prompt = Int32Array.from({ length: promptTokens }, (_, i) => (i * 7919) % shape.vocab);
  const feeds: Record<string, Record<string, TensorData>> = {
    prefill: { prompt, length: Float32Array.of(promptTokens) },
    decode: { token: Int32Array.of(42), position: Float32Array.of(position) },
  };
  const figures: Record<string, { gpuUs: number; awaitedUs: number; dispatches: number }> = {};
  const session = await loadPlan(plan.bundle, gpu.device);
  for (const entry of ['prefill', 'decode']) {
    const timed = await prepareTimedPlan(plan.bundle, gpu.device, entry, feeds[entry]);
    const { medianUs } = await measureGpuTime(timed, { warmupUs: small ? 0 : 200_000, targetPassUs: small ? 1_000 : 50_000, maxReps: small ? 4 : 200, passes: small ? 3 : 7 });
    timed.destroy();
    const awaited: number[] = [];
    const runs = small ? 6 : 60;
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await session.run(feeds[entry], entry);
      if (i >= runs / 6) awaited.push((performance.now() - t0) * 1000);
    }
    figures[entry] = { gpuUs: medianUs, awaitedUs: median(awaited), dispatches: plan.manifest.entryPoints[entry].dispatches.length };
  }
  session.destroy();
  const { prefill, decode } = figures;
  console.log(`\n### ${type} (${mix} of the weights' values; file ${mb(bytes.length)}, written in ${((made - written) / 1000).toFixed(1)} s, compiled in ${((compiled - made) / 1000).toFixed(1)} s)`);
  console.log('| entry | dispatches | GPU ms | awaited ms | per second |\n| --- | ---: | ---: | ---: | ---: |');
  console.log(`| prefill of ${promptTokens} tokens | ${prefill.dispatches} | ${(prefill.gpuUs / 1000).toFixed(3)} | ${(prefill.awaitedUs / 1000).toFixed(3)} | ${((promptTokens * 1e6) / prefill.awaitedUs).toFixed(0)} tokens (awaited) |`);
  console.log(`| decode at ${position} | ${decode.dispatches} | ${(decode.gpuUs / 1000).toFixed(3)} | ${(decode.awaitedUs / 1000).toFixed(3)} | ${(1e6 / decode.gpuUs).toFixed(0)} tokens (GPU), ${(1e6 / decode.awaitedUs).toFixed(0)} (awaited) |`);
  console.log(`weight bytes per decoded token: ${mb(weightBytes)} (${mb(f32Bytes)} of it f32: the embedding as the head, the norms); at the decode's GPU time, ${(weightBytes / decode.gpuUs / 1e3).toFixed(1)} GB/s`);
  rows.push(`| ${type} | ${mb(weightBytes)} | ${(prefill.gpuUs / 1000).toFixed(2)} | ${(prefill.awaitedUs / 1000).toFixed(2)} | ${(decode.gpuUs / 1000).toFixed(3)} | ${(decode.awaitedUs / 1000).toFixed(3)} | ${(1e6 / decode.awaitedUs).toFixed(0)} | ${decode.dispatches} |`);
}
console.log('\n| type | weight bytes per token | prefill GPU ms | prefill awaited ms | decode GPU ms | decode awaited ms | decode tokens/s (awaited) | decode dispatches |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const row of rows) console.log(row);
await gpu.destroy();
