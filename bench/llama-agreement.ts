// Our Llama-family plans against transformers (issue 19, items 6 and 8). For each directory that
// bench/llama_torch.py wrote (config.json, model.safetensors, reference.safetensors, torch.json):
// builds models/llama.ts from the config, compiles prefill + decode (the prompt's length as
// maxPrompt, room for a 256-token generation after it), loads the checkpoint by name, and
// compares: the prefill's logits at the prompt's last position, then each greedy decode step
// fed transformers' token (logits error per step, and whether our argmax is its next token).
// For a model of more than two layers, with timestamp queries (the GPU machine), also the GPU time per run of prefill and decode, the
// awaited latency of session.run, and a 256-token greedy generation, beside torch.json's timings.
//
//   python3 bench/llama_torch.py /tmp/llm --time
//   npx esbuild bench/llama-agreement.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/llama-agreement.mjs
//   node .device/llama-agreement.mjs /tmp/llm/smollm2-135m /tmp/llm/qwen2-2layers
//
// Writes llama-agreement.json to $OUT when set.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { llama, llamaEntries, llamaShape, type HfLlamaConfig, type LlamaOptions } from '../models/llama';
import { decodeSafetensors, loadPlan, requestNodeDevice, tensorAsF32, type SafetensorsFile } from '../runtime/index';
import { measureGpuTime, median, prepareTimedPlan, printByKernel } from './gpu-time';

const GENERATE = 256;

function f32(file: SafetensorsFile, name: string, where: string): Float32Array {
  const t = file.tensors.get(name);
  if (!t) throw new Error(`${where}: no tensor ${name}`);
  const bytes = tensorAsF32(t, `${where}: ${name}`);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

function ids(file: SafetensorsFile, name: string, where: string): Int32Array {
  const t = file.tensors.get(name);
  if (!t || t.dtype !== 'I64') throw new Error(`${where}: ${name} must be an I64 tensor`);
  const v = new BigInt64Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
  return Int32Array.from(v, Number);
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} and ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const dirs = process.argv.slice(2);
if (dirs.length === 0) {
  console.error('usage: llama-agreement DIR [DIR…]   (directories written by bench/llama_torch.py)');
  process.exit(2);
}
const gpu = await requestNodeDevice();
const timing = gpu.device.features.has('timestamp-query');
console.log(`device: ${gpu.backend} ${gpu.adapter.info?.description ?? ''}\n`);
const results: unknown[] = [];
try {
  for (const dir of dirs) {
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as HfLlamaConfig;
    const reference = decodeSafetensors(new Uint8Array(readFileSync(join(dir, 'reference.safetensors'))), join(dir, 'reference.safetensors'));
    const torch = JSON.parse(readFileSync(join(dir, 'torch.json'), 'utf8')) as { timings?: Record<string, unknown>; [k: string]: unknown };
    const prompt = ids(reference, 'prompt', dir);
    const tokens = ids(reference, 'tokens', dir);
    const prefillRef = f32(reference, 'prefill_logits', dir);
    const decodeRef = f32(reference, 'decode_logits', dir);
    const s = llamaShape(config);
    const P = prompt.length;
    const steps = tokens.length - 1;
    const options: LlamaOptions = { maxPrompt: P, maxSequence: P + Math.max(steps, GENERATE) };

    const g = new Graph(dir.split('/').pop()!);
    for (const [name, t] of Object.entries(llama(g, config, options))) g.output(name, t);
    const compileStarted = performance.now();
    const plan = await compileGraph(g, { weights: 'none', entries: llamaEntries(options), targets: [NVIDIA_HOPPER] });
    const compileS = (performance.now() - compileStarted) / 1000;
    const dispatches = Object.fromEntries(Object.entries(plan.manifest.entryPoints).map(([k, e]) => [k, e.dispatches.length]));
    const session = await loadPlan(plan.bundle, gpu.device);
    try {
      const loaded = session.loadWeights(new Uint8Array(readFileSync(join(dir, 'model.safetensors'))));
      const padded = new Int32Array(P);
      padded.set(prompt);
      const prefill = await session.run({ prompt: padded, length: Float32Array.of(P) }, 'prefill');
      const lastRef = prefillRef.subarray((P - 1) * s.vocab, P * s.vocab);
      const prefillError = maxAbsDiff(prefill.prefill_logits, lastRef);
      let agree = argmax(prefill.prefill_logits) === tokens[0] ? 1 : 0;
      const stepErrors: number[] = [];
      for (let i = 0; i < steps; i++) {
        const out = await session.run({ token: tokens.subarray(i, i + 1), position: Float32Array.of(P + i) }, 'decode');
        stepErrors.push(maxAbsDiff(out.logits, decodeRef.subarray(i * s.vocab, (i + 1) * s.vocab)));
        if (argmax(out.logits) === tokens[i + 1]) agree++;
      }
      const refScale = lastRef.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      const row = {
        model: dir,
        layers: s.layers,
        vocab: s.vocab,
        weightsLoaded: loaded.loaded.length,
        compileS,
        dispatches,
        prefillMaxAbs: prefillError,
        logitsScale: refScale,
        decodeMaxAbs: stepErrors.reduce((m, x) => Math.max(m, x), 0),
        decodeMedianAbs: median(stepErrors),
        tokensAgree: `${agree}/${steps + 1}`,
        torch,
        ours: {} as Record<string, unknown>,
      };
      console.log(`${dir}: ${s.layers} layers, vocab ${s.vocab}, ${loaded.loaded.length} tensors loaded, compiled in ${compileS.toFixed(1)} s; dispatches ${JSON.stringify(dispatches)}`);
      console.log(`  prefill of ${P}: max |Δlogit| ${prefillError.toExponential(2)} (logits up to ${refScale.toFixed(2)})`);
      console.log(`  ${steps} decode steps: max |Δlogit| ${row.decodeMaxAbs.toExponential(2)}, median ${row.decodeMedianAbs.toExponential(2)}; greedy tokens agree ${row.tokensAgree}`);

      if (timing && s.layers > 2) {
        // GPU time per run, from timestamps around passes of back-to-back runs
        const prefillTimed = await prepareTimedPlan(plan.bundle, gpu.device, 'prefill', { prompt: padded, length: Float32Array.of(P) });
        const decodeTimed = await prepareTimedPlan(plan.bundle, gpu.device, 'decode', { token: tokens.subarray(0, 1), position: Float32Array.of(P) });
        const prefillGpu = await measureGpuTime(prefillTimed);
        const decodeGpu = await measureGpuTime(decodeTimed);
        // where a step's time goes: each dispatch timed alone, summed per kernel
        const heaviest = await printByKernel(decodeTimed, 'decode', 100);
        const prefillHeaviest = await printByKernel(prefillTimed, 'prefill', 20);
        prefillTimed.destroy();
        decodeTimed.destroy();
        // awaited: session.run from call to results on the host
        const awaited = async (fn: () => Promise<unknown>, reps: number) => {
          for (let i = 0; i < 3; i++) await fn();
          const t: number[] = [];
          for (let i = 0; i < reps; i++) {
            const t0 = performance.now();
            await fn();
            t.push(performance.now() - t0);
          }
          return median(t);
        };
        const prefillAwaited = await awaited(() => session.run({ prompt: padded, length: Float32Array.of(P) }, 'prefill'), 20);
        const decodeAwaited = await awaited(() => session.run({ token: tokens.subarray(0, 1), position: Float32Array.of(P) }, 'decode'), 50);
        // a greedy generation of GENERATE tokens after the prompt, argmax on the host
        const generate = async () => {
          let next = argmax((await session.run({ prompt: padded, length: Float32Array.of(P) }, 'prefill')).prefill_logits);
          for (let i = 0; i < GENERATE; i++) {
            next = argmax((await session.run({ token: Int32Array.of(next), position: Float32Array.of(P + i) }, 'decode')).logits);
          }
        };
        const generateMs = await awaited(generate, 3);
        row.ours = {
          decodeKernels: heaviest.map(([kernel, k]) => ({ kernel, ...k })),
          prefillKernels: prefillHeaviest.map(([kernel, k]) => ({ kernel, ...k })),
          prefill: { gpu_ms: prefillGpu.medianUs / 1000, awaited_ms: prefillAwaited },
          decode: { gpu_ms: decodeGpu.medianUs / 1000, awaited_ms: decodeAwaited },
          generate: { awaited_ms: generateMs, tokens: GENERATE, tokens_per_s: GENERATE / (generateMs / 1000) },
        };
        console.log(`  ours: prefill ${(prefillGpu.medianUs / 1000).toFixed(3)} ms GPU, ${prefillAwaited.toFixed(3)} ms awaited; decode ${(decodeGpu.medianUs / 1000).toFixed(3)} ms GPU, ${decodeAwaited.toFixed(3)} ms awaited; ${GENERATE}-token generation ${(GENERATE / (generateMs / 1000)).toFixed(0)} tokens/s`);
        if (torch.timings) console.log(`  torch: ${JSON.stringify(torch.timings)}`);
      }
      results.push(row);
    } finally {
      session.destroy();
    }
  }
} finally {
  await gpu.destroy();
}
if (process.env.OUT) writeFileSync(join(process.env.OUT, 'llama-agreement.json'), JSON.stringify(results, null, 2));
