// Exported PyTorch models through the ONNX frontend on the GPU machine (issue 18): each model
// bench/onnx_torch_export.py wrote is imported, compiled, run once on the device and compared
// with its references, then timed (median GPU time from timestamp queries, bench/gpu-time.ts)
// beside the PyTorch eager (and torch.compile) times the Python part measured on the same GPU.
// Inference rows (one per model and batch) import with --freeze (batch norms folded) and
// compare the outputs with onnxruntime's. The training row (resnet18_train: the loss is the
// file's output) compiles a training plan (SGD at the manifest's lr; batch-norm running
// statistics frozen, as PyTorch's buffers) and compares the first step's loss with
// onnxruntime's and torch's (float64) and every parameter after the step with torch's.
//
//   python3 bench/onnx_torch_export.py --out .device/onnx-torch --batch 1,4
//   npx esbuild bench/onnx-torch.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/onnx-torch.mjs
//   source .device/bootstrap.sh; node .device/onnx-torch.mjs [.device/onnx-torch] [--models resnet50,resnet18_train]
//       [--batch 1,4] [--targets nvidia-hopper] [--no-freeze] [--passes 7]
//
// Every failure (a missing file, an import or compile error, a device error) is printed with
// the row's name and the run goes on to the next one; the exit code is 1 if any failed.
// With $OUT set, the figures are also written to $OUT/onnx-torch.json.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileGraph } from '../compiler/compile';
import { loadOnnxModel } from '../compiler/frontends/onnx/load';
import { decodeModel } from '../compiler/frontends/onnx/proto';
import { isCompileError } from '../compiler/ir/errors';
import { parseTargets } from '../compiler/target/targets';
import { decodeSafetensors, loadPlan, loadTrainingPlan, requestNodeDevice, type TensorData } from '../runtime/index';
import { hyperFeed, measureGpuTime, prepareTimedPlan, printByKernel } from './gpu-time';

interface TensorFile {
  name: string;
  dtype?: 'float32' | 'int64';
  shape: number[];
  file: string;
}
interface ExportedModel {
  /** <model>.b<batch> */
  name: string;
  /** resnet18, resnet50, mobilenet_v2, gpt2, resnet18_train (older manifests: absent, name is the model) */
  model?: string;
  batch?: number;
  kind?: 'inference' | 'train';
  exporter?: string;
  opset?: number;
  onnx: string;
  inputs?: TensorFile[];
  outputs?: TensorFile[];
  ort_vs_torch_max_abs?: number;
  torch_eager_ms?: { median: number; p10: number; p90: number };
  torch_compile_ms?: { median: number; p10: number; p90: number };
  torch_compile_error?: string;
  /** training: SGD's learning rate, torch's loss before the step (float64) and its parameters after it */
  lr?: number;
  torch_loss?: number;
  updated?: { file: string; tensors: { name: string; shape: number[]; offset: number }[] };
  error?: string;
}
interface Row {
  name: string;
  model: string;
  batch?: number;
  kind: 'inference' | 'train';
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
  /** training: our first step's loss, torch's (float64), and the parameters after the step against torch's */
  loss?: number;
  torchLoss?: number;
  maxWeightError?: number;
  maxTorchUpdate?: number;
  parametersCompared?: number;
}

function usage(message: string): never {
  console.error(`onnx-torch: ${message}\nusage: node .device/onnx-torch.mjs [DIR (default .device/onnx-torch)] [--models a,b] [--batch 1,4] [--targets nvidia-hopper] [--no-freeze] [--passes 7]`);
  process.exit(2);
}

function parseArgs(argv: string[]) {
  const options = { dir: '.device/onnx-torch', models: undefined as string[] | undefined, batches: undefined as number[] | undefined, targets: 'nvidia-hopper', freeze: true, passes: 7 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => argv[++i] ?? usage(`${flag} needs a value`);
    if (flag === '--models') options.models = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (flag === '--batch') options.batches = value().split(',').map(Number);
    else if (flag === '--targets') options.targets = value();
    else if (flag === '--no-freeze') options.freeze = false;
    else if (flag === '--passes') options.passes = Number(value());
    else if (flag.startsWith('--')) usage(`unknown flag ${flag}`);
    else options.dir = flag;
  }
  if (!Number.isInteger(options.passes) || options.passes < 1) usage('--passes must be a positive integer');
  if (options.batches?.some((b) => !Number.isInteger(b) || b < 1)) usage('--batch takes positive integers separated by commas (e.g. 1,4)');
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

/** The largest |got - expected| over the file's outputs, and the largest |expected|. */
function compareOutputs(dir: string, model: ExportedModel, outputs: Record<string, Float32Array>): { maxAbsError: number; maxAbsReference: number } {
  let maxAbsError = 0;
  let maxAbsReference = 0;
  for (const t of model.outputs!) {
    const expected = readReference(dir, t);
    const got = outputs[t.name];
    if (!got) throw new Error(`the plan has no output '${t.name}' (it has: ${Object.keys(outputs).join(', ')})`);
    if (got.length !== expected.length) throw new Error(`output '${t.name}' has ${got.length} elements; onnxruntime's has ${expected.length}`);
    for (let i = 0; i < got.length; i++) {
      const d = Math.abs(got[i] - expected[i]);
      maxAbsError = Number.isNaN(d) ? NaN : Math.max(maxAbsError, d);
      maxAbsReference = Math.max(maxAbsReference, Math.abs(expected[i]));
    }
  }
  return { maxAbsError, maxAbsReference };
}

/** BatchNormalization's running mean and variance where they are initializers: statistics, kept fixed as PyTorch's buffers are. */
function batchNormStatistics(file: string): string[] {
  const graph = decodeModel(readFileSync(file), file).graph!;
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  return (graph.node ?? []).filter((n) => n.opType === 'BatchNormalization').flatMap((n) => (n.input ?? []).slice(3, 5).filter((name) => initializers.has(name)));
}

async function inferenceRow(row: Row, model: ExportedModel, options: ReturnType<typeof parseArgs>, targets: ReturnType<typeof parseTargets>, device: GPUDevice) {
  const file = join(options.dir, model.onnx);
  const started = performance.now();
  const shapes = Object.fromEntries(model.inputs!.map((t) => [t.name, t.shape]));
  const loaded = loadOnnxModel(file, { shapes, freeze: options.freeze });
  const compiled = await compileGraph(loaded.graph, { seed: 0, targets });
  row.compileSeconds = (performance.now() - started) / 1000;
  const feeds = Object.fromEntries(model.inputs!.map((t) => [t.name, readInput(options.dir, t)]));
  const session = await loadPlan(compiled.bundle, device);
  let outputs: Record<string, Float32Array>;
  try {
    row.dispatches = session.manifest.entryPoints.run?.dispatches.length;
    outputs = await session.run(feeds);
  } finally {
    session.destroy();
  }
  Object.assign(row, compareOutputs(options.dir, model, outputs));
  console.log(`${row.name}: compiled in ${row.compileSeconds.toFixed(1)} s, ${row.dispatches} dispatches; max |mnc - onnxruntime| ${row.maxAbsError!.toExponential(2)} (max |onnxruntime| ${row.maxAbsReference!.toFixed(3)})`);
  const timed = await prepareTimedPlan(compiled.bundle, device, 'run', feeds);
  try {
    const time = await measureGpuTime(timed, { passes: options.passes });
    row.oursMs = time.medianUs / 1000;
    row.clock = time.clock;
  } finally {
    timed.destroy();
  }
  console.log(`${row.name}: ours ${row.oursMs.toFixed(3)} ms (median GPU time, ${row.clock}); torch eager ${row.torchEagerMs?.toFixed(3) ?? '-'} ms`);
}

/**
 * One SGD step of the exported loss: the loss against onnxruntime's (maxAbsError) and torch's
 * float64 one, every parameter after the step against torch's (float64, rounded to float32),
 * with the largest update torch made for scale; then the step's GPU time.
 */
async function trainingRow(row: Row, model: ExportedModel, options: ReturnType<typeof parseArgs>, targets: ReturnType<typeof parseTargets>, device: GPUDevice) {
  if (model.lr === undefined || model.torch_loss === undefined || !model.updated) throw new Error('the manifest gives no lr, torch_loss or updated parameters for this training row');
  const file = join(options.dir, model.onnx);
  const started = performance.now();
  const shapes = Object.fromEntries(model.inputs!.map((t) => [t.name, t.shape]));
  const loaded = loadOnnxModel(file, { shapes, frozen: batchNormStatistics(file) });
  const lossName = model.outputs![0].name;
  const compiled = await compileGraph(loaded.graph, { seed: 0, targets, training: { loss: lossName, optimizer: { kind: 'sgd', lr: model.lr } } });
  row.compileSeconds = (performance.now() - started) / 1000;
  const entry = compiled.manifest.training!.entry;
  row.dispatches = compiled.manifest.entryPoints[entry].dispatches.length;
  const feeds = Object.fromEntries(model.inputs!.map((t) => [t.name, readInput(options.dir, t)]));

  const updatedPath = join(options.dir, model.updated.file);
  if (!existsSync(updatedPath)) throw new Error(`${updatedPath} is missing`);
  const updatedBytes = readFileSync(updatedPath);
  const torchUpdated = new Float32Array(updatedBytes.buffer.slice(updatedBytes.byteOffset, updatedBytes.byteOffset + updatedBytes.byteLength));
  const session = await loadTrainingPlan(compiled.bundle, device);
  try {
    row.loss = await session.step(feeds);
    row.torchLoss = model.torch_loss;
    const ortLoss = readReference(options.dir, model.outputs![0])[0];
    row.maxAbsError = Math.abs(row.loss - ortLoss);
    row.maxAbsReference = Math.abs(ortLoss);
    const state = decodeSafetensors(await session.exportState({ optimizer: false })).tensors;
    row.maxWeightError = 0;
    row.maxTorchUpdate = 0;
    row.parametersCompared = 0;
    const missing: string[] = [];
    for (const t of model.updated.tensors) {
      const planName = loaded.parameterNames.get(t.name);
      const ours = planName && state.get(planName);
      const initial = planName && compiled.parameters.get(planName);
      if (!ours || !initial) {
        missing.push(t.name);
        continue;
      }
      const count = t.shape.reduce((a, b) => a * b, 1);
      const got = new Float32Array(ours.data.slice().buffer);
      if (got.length !== count) throw new Error(`parameter '${t.name}' has ${got.length} elements in the plan; torch's has ${count}`);
      const expected = torchUpdated.subarray(t.offset, t.offset + count);
      for (let i = 0; i < count; i++) {
        const d = Math.abs(got[i] - expected[i]);
        row.maxWeightError = Number.isNaN(d) ? NaN : Math.max(row.maxWeightError, d);
        row.maxTorchUpdate = Math.max(row.maxTorchUpdate, Math.abs(expected[i] - initial[i]));
      }
      row.parametersCompared++;
    }
    if (missing.length > 0) throw new Error(`${missing.length} of torch's ${model.updated.tensors.length} trainable parameters are not trainable parameters of the plan: ${missing.slice(0, 8).join(', ')}`);
  } finally {
    session.destroy();
  }
  console.log(
    `${row.name}: compiled in ${row.compileSeconds.toFixed(1)} s, ${row.dispatches} dispatches; loss ${row.loss.toFixed(6)} (torch float64 ${row.torchLoss.toFixed(6)}, |mnc - onnxruntime| ${row.maxAbsError.toExponential(2)}); after one step, max |mnc - torch| over ${row.parametersCompared} parameters ${row.maxWeightError.toExponential(2)} (largest torch update ${row.maxTorchUpdate.toExponential(2)})`,
  );
  const timed = await prepareTimedPlan(compiled.bundle, device, entry, { ...feeds, ...hyperFeed(compiled.manifest) });
  try {
    const time = await measureGpuTime(timed, { passes: options.passes });
    row.oursMs = time.medianUs / 1000;
    row.clock = time.clock;
    // where a step's time goes (the forward's convolutions, their two gradients, the updates)
    await printByKernel(timed, `${row.name} step`, 5, 24);
  } finally {
    timed.destroy();
  }
  console.log(`${row.name}: ours ${row.oursMs.toFixed(3)} ms a step (median GPU time, ${row.clock}); torch eager ${row.torchEagerMs?.toFixed(3) ?? '-'} ms`);
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const manifestPath = join(options.dir, 'manifest.json');
  if (!existsSync(manifestPath)) usage(`${manifestPath} not found: run python3 bench/onnx_torch_export.py --out ${options.dir} first`);
  const exported = JSON.parse(readFileSync(manifestPath, 'utf8')) as { torch?: string; device?: string; models: ExportedModel[] };
  const targets = parseTargets(options.targets);
  const modelOf = (m: ExportedModel) => m.model ?? m.name;
  const models = exported.models.filter((m) => (!options.models || options.models.includes(modelOf(m))) && (!options.batches || m.kind === 'train' || options.batches.includes(m.batch ?? 1)));
  if (models.length === 0) usage(`no row of ${manifestPath} is selected (it has: ${exported.models.map((m) => `${modelOf(m)} batch ${m.batch ?? '?'}`).join(', ')})`);

  const gpu = await requestNodeDevice();
  const adapter = `${gpu.backend}: ${gpu.adapter.info.vendor} ${gpu.adapter.info.architecture} ${gpu.adapter.info.description}`.trim();
  console.log(`ours: ${adapter}; plans for --targets ${options.targets}${options.freeze ? ', inference with --freeze' : ''}; torch ${exported.torch ?? '?'} on ${exported.device ?? '?'}`);
  gpu.device.onuncapturederror = (e) => console.error(`uncaptured WebGPU error: ${e.error.message}`);
  const rows: Row[] = [];
  try {
    for (const model of models) {
      const row: Row = {
        name: model.name,
        model: modelOf(model),
        batch: model.batch,
        kind: model.kind ?? 'inference',
        torchEagerMs: model.torch_eager_ms?.median,
        torchCompileMs: model.torch_compile_ms?.median,
        ortVsTorch: model.ort_vs_torch_max_abs,
      };
      rows.push(row);
      try {
        if (model.error) throw new Error(`the export failed: ${model.error}`);
        if (!model.inputs || !model.outputs) throw new Error('the manifest lists no inputs or outputs for it');
        if (!existsSync(join(options.dir, model.onnx))) throw new Error(`${join(options.dir, model.onnx)} is missing`);
        await (row.kind === 'train' ? trainingRow : inferenceRow)(row, model, options, targets, gpu.device);
      } catch (e) {
        row.error = describeError(e);
        console.error(`${row.name}: FAILED: ${row.error}`);
      }
    }
  } finally {
    await gpu.destroy();
  }

  const fmt = (v: number | undefined, digits = 3) => (v === undefined ? '-' : v.toFixed(digits));
  const exp = (v: number | undefined) => (v === undefined ? '-' : v.toExponential(2));
  const ratio = (r: Row, t: number | undefined) => (t !== undefined && r.oursMs ? (t / r.oursMs).toFixed(2) : '-');
  const failed = (r: Row, columns: number) => `| ${r.model} | ${r.batch ?? '-'} | failed: ${r.error!.replace(/\|/g, '/').replace(/\n/g, ' ').slice(0, 200)} |${' |'.repeat(columns - 3)}`;
  const inference = rows.filter((r) => r.kind === 'inference');
  if (inference.length > 0) {
    console.log('\n| model | batch | max abs err vs onnxruntime | max abs onnxruntime | dispatches | ours ms | torch eager ms | eager / ours | torch.compile ms | compile / ours |');
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    for (const r of inference) {
      if (r.error) console.log(failed(r, 10));
      else console.log(`| ${r.model} | ${r.batch ?? '-'} | ${exp(r.maxAbsError)} | ${fmt(r.maxAbsReference)} | ${r.dispatches ?? '-'} | ${fmt(r.oursMs)} | ${fmt(r.torchEagerMs)} | ${ratio(r, r.torchEagerMs)} | ${fmt(r.torchCompileMs)} | ${ratio(r, r.torchCompileMs)} |`);
    }
  }
  const training = rows.filter((r) => r.kind === 'train');
  if (training.length > 0) {
    console.log('\n| training step | batch | loss (ours) | loss (torch f64) | loss err vs onnxruntime | max abs param err vs torch | largest torch update | dispatches | ours ms | torch eager ms | eager / ours | torch.compile ms | compile / ours |');
    console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of training) {
      if (r.error) console.log(failed(r, 13));
      else
        console.log(
          `| ${r.model} | ${r.batch ?? '-'} | ${fmt(r.loss, 6)} | ${fmt(r.torchLoss, 6)} | ${exp(r.maxAbsError)} | ${exp(r.maxWeightError)} | ${exp(r.maxTorchUpdate)} | ${r.dispatches ?? '-'} | ${fmt(r.oursMs)} | ${fmt(r.torchEagerMs)} | ${ratio(r, r.torchEagerMs)} | ${fmt(r.torchCompileMs)} | ${ratio(r, r.torchCompileMs)} |`,
        );
    }
  }
  if (process.env.OUT) writeFileSync(join(process.env.OUT, 'onnx-torch.json'), JSON.stringify({ adapter, torch: exported.torch, device: exported.device, freeze: options.freeze, targets: options.targets, rows }, null, 2));
  if (rows.some((r) => r.error)) process.exitCode = 1;
}

main().catch((e) => {
  console.error(`onnx-torch: ${describeError(e)}`);
  process.exitCode = 1;
});
