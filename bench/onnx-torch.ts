// Exported PyTorch models through the ONNX frontend on the GPU machine (issue 18): each model
// bench/onnx_torch_export.py wrote is imported (--freeze: inference, batch norms folded),
// compiled, run once on the device and compared with onnxruntime's output (max |Δ|), then
// timed (median GPU time from timestamp queries, bench/gpu-time.ts) beside the PyTorch eager
// (and torch.compile) times the Python part measured on the same GPU.
//
//   python3 bench/onnx_torch_export.py --out .device/onnx-torch
//   npx esbuild bench/onnx-torch.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/onnx-torch.mjs
//   source .device/bootstrap.sh; node .device/onnx-torch.mjs [.device/onnx-torch] [--models resnet18,gpt2]
//       [--targets nvidia-hopper] [--no-freeze] [--passes 7]
//
// Every failure (a missing file, an import or compile error, a device error) is printed with
// the model's name and the run goes on to the next model; the exit code is 1 if any failed.
// With $OUT set, the figures are also written to $OUT/onnx-torch.json.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileGraph } from '../compiler/compile';
import { loadOnnxModel } from '../compiler/frontends/onnx/load';
import { isCompileError } from '../compiler/ir/errors';
import { parseTargets } from '../compiler/target/targets';
import { loadPlan, requestNodeDevice, type TensorData } from '../runtime/index';
import { measureGpuTime, prepareTimedPlan } from './gpu-time';

interface TensorFile {
  name: string;
  dtype?: 'float32' | 'int64';
  shape: number[];
  file: string;
}
interface ExportedModel {
  name: string;
  onnx: string;
  inputs?: TensorFile[];
  outputs?: TensorFile[];
  ort_vs_torch_max_abs?: number;
  torch_eager_ms?: { median: number; p10: number; p90: number };
  torch_compile_ms?: { median: number; p10: number; p90: number };
  torch_compile_error?: string;
  error?: string;
}
interface Row {
  name: string;
  error?: string;
  compileSeconds?: number;
  dispatches?: number;
  maxAbsError?: number;
  maxAbsReference?: number;
  oursMs?: number;
  clock?: string;
  torchEagerMs?: number;
  torchCompileMs?: number;
  ortVsTorch?: number;
}

function usage(message: string): never {
  console.error(`onnx-torch: ${message}\nusage: node .device/onnx-torch.mjs [DIR (default .device/onnx-torch)] [--models a,b] [--targets nvidia-hopper] [--no-freeze] [--passes 7]`);
  process.exit(2);
}

function parseArgs(argv: string[]) {
  const options = { dir: '.device/onnx-torch', models: undefined as string[] | undefined, targets: 'nvidia-hopper', freeze: true, passes: 7 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => argv[++i] ?? usage(`${flag} needs a value`);
    if (flag === '--models') options.models = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (flag === '--targets') options.targets = value();
    else if (flag === '--no-freeze') options.freeze = false;
    else if (flag === '--passes') options.passes = Number(value());
    else if (flag.startsWith('--')) usage(`unknown flag ${flag}`);
    else options.dir = flag;
  }
  if (!Number.isInteger(options.passes) || options.passes < 1) usage('--passes must be a positive integer');
  return options;
}

/** A raw little-endian tensor file as the plan's input: float32 as is, int64 token ids narrowed to int32. */
function readInput(dir: string, t: TensorFile): TensorData {
  const path = join(dir, t.file);
  if (!existsSync(path)) throw new Error(`input file ${path} is missing (run bench/onnx_torch_export.py first)`);
  const bytes = readFileSync(path);
  const count = t.shape.reduce((a, b) => a * b, 1);
  const size = t.dtype === 'int64' ? 8 : 4;
  if (bytes.length !== count * size) throw new Error(`${path} holds ${bytes.length} bytes; ${t.dtype ?? 'float32'} [${t.shape.join(', ')}] needs ${count * size}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (t.dtype === 'int64') {
    return Int32Array.from({ length: count }, (_, i) => {
      const v = Number(view.getBigInt64(i * 8, true));
      if (v < -(2 ** 31) || v >= 2 ** 31) throw new Error(`${path}: id ${v} at ${i} does not fit int32`);
      return v;
    });
  }
  return Float32Array.from({ length: count }, (_, i) => view.getFloat32(i * 4, true));
}

function readReference(dir: string, t: TensorFile): Float32Array {
  const path = join(dir, t.file);
  if (!existsSync(path)) throw new Error(`reference file ${path} is missing`);
  const bytes = readFileSync(path);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

const describeError = (e: unknown) => (isCompileError(e) ? `compile error: ${e.message}` : e instanceof Error ? `${e.name}: ${e.message}` : String(e));

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const manifestPath = join(options.dir, 'manifest.json');
  if (!existsSync(manifestPath)) usage(`${manifestPath} not found: run python3 bench/onnx_torch_export.py --out ${options.dir} first`);
  const exported = JSON.parse(readFileSync(manifestPath, 'utf8')) as { torch?: string; device?: string; models: ExportedModel[] };
  const targets = parseTargets(options.targets);
  const models = exported.models.filter((m) => !options.models || options.models.includes(m.name));
  if (models.length === 0) usage(`no model of ${manifestPath} is selected (it has: ${exported.models.map((m) => m.name).join(', ')})`);

  const gpu = await requestNodeDevice();
  const adapter = `${gpu.backend}: ${gpu.adapter.info.vendor} ${gpu.adapter.info.architecture} ${gpu.adapter.info.description}`.trim();
  console.log(`ours: ${adapter}; plans for --targets ${options.targets}${options.freeze ? ', --freeze' : ''}; torch ${exported.torch ?? '?'} on ${exported.device ?? '?'}`);
  gpu.device.onuncapturederror = (e) => console.error(`uncaptured WebGPU error: ${e.error.message}`);
  const rows: Row[] = [];
  try {
    for (const model of models) {
      const row: Row = { name: model.name, torchEagerMs: model.torch_eager_ms?.median, torchCompileMs: model.torch_compile_ms?.median, ortVsTorch: model.ort_vs_torch_max_abs };
      rows.push(row);
      try {
        if (model.error) throw new Error(`the export failed: ${model.error}`);
        if (!model.inputs || !model.outputs) throw new Error('the manifest lists no inputs or outputs for it');
        const file = join(options.dir, model.onnx);
        if (!existsSync(file)) throw new Error(`${file} is missing`);
        const started = performance.now();
        const shapes = Object.fromEntries(model.inputs.map((t) => [t.name, t.shape]));
        const loaded = loadOnnxModel(file, { shapes, freeze: options.freeze });
        const compiled = await compileGraph(loaded.graph, { seed: 0, targets });
        row.compileSeconds = (performance.now() - started) / 1000;
        const feeds = Object.fromEntries(model.inputs.map((t) => [t.name, readInput(options.dir, t)]));
        const session = await loadPlan(compiled.bundle, gpu.device);
        let outputs: Record<string, Float32Array>;
        try {
          row.dispatches = session.manifest.entryPoints.run?.dispatches.length;
          outputs = await session.run(feeds);
        } finally {
          session.destroy();
        }
        row.maxAbsError = 0;
        row.maxAbsReference = 0;
        for (const t of model.outputs) {
          const expected = readReference(options.dir, t);
          const got = outputs[t.name];
          if (!got) throw new Error(`the plan has no output '${t.name}' (it has: ${Object.keys(outputs).join(', ')})`);
          if (got.length !== expected.length) throw new Error(`output '${t.name}' has ${got.length} elements; onnxruntime's has ${expected.length}`);
          for (let i = 0; i < got.length; i++) {
            const d = Math.abs(got[i] - expected[i]);
            row.maxAbsError = Number.isNaN(d) ? NaN : Math.max(row.maxAbsError, d);
            row.maxAbsReference = Math.max(row.maxAbsReference, Math.abs(expected[i]));
          }
        }
        console.log(`${model.name}: compiled in ${row.compileSeconds.toFixed(1)} s, ${row.dispatches} dispatches; max |mnc - onnxruntime| ${row.maxAbsError.toExponential(2)} (max |onnxruntime| ${row.maxAbsReference.toFixed(3)})`);
        const timed = await prepareTimedPlan(compiled.bundle, gpu.device, 'run', feeds);
        try {
          const time = await measureGpuTime(timed, { passes: options.passes });
          row.oursMs = time.medianUs / 1000;
          row.clock = time.clock;
        } finally {
          timed.destroy();
        }
        console.log(`${model.name}: ours ${row.oursMs.toFixed(3)} ms (median GPU time, ${row.clock}); torch eager ${row.torchEagerMs?.toFixed(3) ?? '-'} ms`);
      } catch (e) {
        row.error = describeError(e);
        console.error(`${model.name}: FAILED: ${row.error}`);
      }
    }
  } finally {
    await gpu.destroy();
  }

  const fmt = (v: number | undefined, digits = 3) => (v === undefined ? '-' : v.toFixed(digits));
  console.log('\n| model | max abs err vs onnxruntime | max abs onnxruntime | dispatches | ours ms | torch eager ms | eager / ours | torch.compile ms | compile / ours |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    if (r.error) {
      console.log(`| ${r.name} | failed: ${r.error.replace(/\|/g, '/').slice(0, 200)} | | | | | | | |`);
      continue;
    }
    const ratio = (t: number | undefined) => (t !== undefined && r.oursMs ? (t / r.oursMs).toFixed(2) : '-');
    console.log(
      `| ${r.name} | ${r.maxAbsError?.toExponential(2)} | ${fmt(r.maxAbsReference)} | ${r.dispatches ?? '-'} | ${fmt(r.oursMs)} | ${fmt(r.torchEagerMs)} | ${ratio(r.torchEagerMs)} | ${fmt(r.torchCompileMs)} | ${ratio(r.torchCompileMs)} |`,
    );
  }
  if (process.env.OUT) writeFileSync(join(process.env.OUT, 'onnx-torch.json'), JSON.stringify({ adapter, torch: exported.torch, device: exported.device, freeze: options.freeze, targets: options.targets, rows }, null, 2));
  if (rows.some((r) => r.error)) process.exitCode = 1;
}

main().catch((e) => {
  console.error(`onnx-torch: ${describeError(e)}`);
  process.exitCode = 1;
});
