// The `mnc` command line: compile a model file to a .mnplan, inspect a plan, run a plan on
// a WebGPU device, train a training plan on datasets (train.ts), serve a language model over
// the OpenAI HTTP API (serve.ts). The only place that prints diagnostics and sets the exit code: every
// stage below returns values or throws CompileError/PlanError, which are printed here as
// `file:line:col: error: message`; anything else is an internal error.
import { Command, Option } from 'commander';
import { rmSync } from 'node:fs';
import { basename, isAbsolute, relative, resolve } from 'node:path';
import { isPlanError, loadPlan, readBundle, readWeightsFiles, requestNodeDevice, type NodeBackend, type PlanBundle, type Session } from '../../runtime';
import type { EntryPoint, Manifest } from '../../schemas/manifest';
import type { OptimizerKind, OptimizerSpec, TrainingSpec } from '../autodiff/train';
import { compileGraphToFile } from '../compile';
import { formatReport } from '../egraph/run';
import { loadGgufModel } from '../frontends/gguf/load';
import { isNnefPath, loadNnefModel, nnefPaths } from '../frontends/nnef/load';
import { loadOnnxModel } from '../frontends/onnx/load';
import { loadTypeScriptModel } from '../frontends/typescript';
import { CompileError, CompileErrors } from '../ir/errors';
import { WEIGHT_STORAGES, type WeightStorage } from '../ir/weight-storage';
import { GENERATOR } from '../plan/plan';
import { BUILTIN_TARGETS, DEFAULT_TARGETS, parseTargets } from '../target/targets';
import { describePlan, formatBytes, kernelSources } from './inspect';
import { aboutPlan, memoryBudget, PlanFileError, readPlanBytes } from './plan-file';
import { writeTrace } from './profile';
import { gatherInputs, makeDirectoryFor, nonFiniteWarnings, previewTensor, renameOrFail, writeOutputs } from './tensors';
import { runWithDawnFiltered, wantsDawnFilter } from './dawn-output';
import { generateCommand } from './generate';
import { serveCommand } from './serve';
import { trainCommand } from './train';

function parseSeed(text: string): number {
  const seed = Number(text);
  if (!/^\d+$/.test(text) || seed > 0xffffffff) throw new CompileError('input', `--seed expects an integer from 0 to 4294967295; got '${text}'`);
  return seed;
}

/** Paths recorded in plans and printed: relative to the working directory when inside it, with '/'. */
function displayPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return (rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file).replaceAll('\\', '/');
}

/** The entry point `mnc run` runs: 'run', else the first (a language model's prefill), with its name. */
function defaultEntry(manifest: Manifest): { name: string; entry: EntryPoint } | undefined {
  const name = manifest.entryPoints.run ? 'run' : Object.keys(manifest.entryPoints)[0];
  return name === undefined ? undefined : { name, entry: manifest.entryPoints[name] };
}

// --- commands -------------------------------------------------------------------------------

interface CompileOptions {
  output?: string;
  model?: string;
  seed: string;
  inference?: boolean;
  /** commander's --no-weights sets this to false */
  weights: boolean;
  /** commander's --no-optimize sets this to false */
  optimize: boolean;
  /** print the e-graph runner's report per optimizer phase */
  report?: boolean;
  loss?: string;
  optimizer?: OptimizerKind;
  lr?: string;
  target: string;
  validationThreads?: string;
  /** ONNX and NNEF: static shapes of inputs, `name=1x3x224x224` */
  shape: string[];
  /** ONNX and NNEF: parameters are not trainable */
  freeze?: boolean;
  /** GGUF: the KV cache's rows */
  maxSequence?: string;
  decodeBatch?: string;
  /** how products' and embeddings' weights are held (default: the model's, else f32) */
  weightStorage?: WeightStorage;
}

function parseCount(flag: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1) throw new CompileError('input', `${flag} expects a whole number from 1; got '${text}'`);
  return value;
}

function parsePositive(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new CompileError('input', `${flag} expects a positive number; got '${text}'`);
  return value;
}

/** The model's `train` option, overridden or supplied by --loss/--optimizer/--lr; none with --inference. */
function trainingFrom(options: CompileOptions, fromModel: TrainingSpec | undefined): TrainingSpec | undefined {
  if (options.inference) return undefined;
  const given = options.loss !== undefined || options.optimizer !== undefined || options.lr !== undefined;
  if (!fromModel && !given) return undefined;
  const loss = options.loss ?? fromModel?.loss;
  if (!loss) throw new CompileError('input', 'training needs a loss: pass --loss <output name> or give the model a `train` option');
  const base = fromModel?.optimizer;
  const kind = options.optimizer ?? base?.kind ?? 'adam';
  const lr = options.lr !== undefined ? parsePositive('--lr', options.lr) : base?.lr ?? (kind === 'sgd' ? 0.01 : 1e-3);
  // a different optimizer on the command line starts from its own defaults
  const optimizer = base && base.kind === kind ? { ...base, lr } : ({ kind, lr } as OptimizerSpec);
  return { loss, optimizer };
}

/** --shape name=1x3x224x224 options, by input name. */
function parseShapes(options: CompileOptions): Record<string, number[]> {
  const shapes: Record<string, number[]> = {};
  for (const text of options.shape) {
    const m = /^([^=]+)=(\d+(?:x\d+)*)$/.exec(text);
    const dims = m ? m[2].split('x').map(Number) : [];
    if (!m || dims.some((d) => d < 1)) throw new CompileError('input', `--shape expects name=DIMxDIM… with positive dimensions (e.g. x=1x3x224x224); got '${text}'`);
    shapes[m[1]] = dims;
  }
  return shapes;
}

/** An ONNX model as the compile command takes a model: no type check, no training option of its own. */
function onnxModel(file: string, options: CompileOptions) {
  const loaded = loadOnnxModel(file, { shapes: parseShapes(options), freeze: options.freeze });
  return { graph: loaded.graph, name: loaded.name, training: undefined, entries: undefined, weightStorage: undefined, typeChecked: Promise.resolve() };
}

/** An NNEF model (a directory holding graph.nnef and its .dat files, or that graph.nnef), as onnxModel. */
function nnefModel(path: string, options: CompileOptions) {
  const loaded = loadNnefModel(path, { shapes: parseShapes(options), freeze: options.freeze });
  return { graph: loaded.graph, name: loaded.name, training: undefined, entries: undefined, weightStorage: undefined, typeChecked: Promise.resolve() };
}

/** A GGUF model (llama, qwen2): the Llama builder's prefill and decode over the file's weights, kept packed. */
function ggufModel(file: string, options: CompileOptions) {
  const maxSequence = options.maxSequence === undefined ? undefined : parseCount('--max-sequence', options.maxSequence);
  const decodeBatch = options.decodeBatch === undefined ? undefined : parseCount('--decode-batch', options.decodeBatch);
  const loaded = loadGgufModel(file, { ...(maxSequence ? { maxSequence } : {}), ...(decodeBatch ? { decodeBatch } : {}) });
  return { graph: loaded.graph, name: loaded.name, training: undefined, entries: loaded.entries, weightStorage: undefined, typeChecked: Promise.resolve() };
}

/** The default plan name for a model path: model.ts → model, model.nnef/ (or its graph.nnef) → model. */
function planName(modelFile: string, nnef: boolean): string {
  const base = nnef ? basename(resolve(nnefPaths(modelFile).directory)) : basename(modelFile);
  return base.replace(/\.[^.]*$/, '');
}

async function compileCommand(modelFile: string, options: CompileOptions): Promise<void> {
  const started = performance.now();
  const seed = parseSeed(options.seed);
  const validationThreads = options.validationThreads === undefined ? undefined : parseCount('--validation-threads', options.validationThreads);
  // the type check runs on its own thread while this one compiles; its errors win over any later one
  const isOnnx = /\.onnx$/i.test(modelFile);
  const isGguf = /\.gguf$/i.test(modelFile);
  const isNnef = !isOnnx && !isGguf && isNnefPath(modelFile);
  if (!isGguf && options.maxSequence !== undefined) throw new CompileError('input', '--max-sequence applies to GGUF (.gguf) models');
  if (!isGguf && options.decodeBatch !== undefined) throw new CompileError('input', "--decode-batch applies to GGUF (.gguf) models; a model file sets llamaModel's decodeBatch option");
  if (!isOnnx && !isNnef && (options.shape.length > 0 || options.freeze)) {
    throw new CompileError('input', '--shape and --freeze apply to ONNX (.onnx) and NNEF (model.nnef/) models; a TypeScript model declares its shapes and trainable parameters itself');
  }
  const { graph, name, training, typeChecked, entries, weightStorage } = isOnnx
    ? onnxModel(modelFile, options)
    : isGguf
      ? ggufModel(modelFile, options)
      : isNnef
        ? nnefModel(modelFile, options)
        : await loadTypeScriptModel(modelFile, { model: options.model, deferTypeCheck: true });
  const frontend = performance.now() - started;
  const out = options.output ?? `${options.model ?? planName(modelFile, isNnef)}.mnplan`;
  // written beside `out` as it is made, renamed once the type check passed: a failed compile leaves no plan behind
  const partial = `${out}.partial-${process.pid}`;
  makeDirectoryFor(out);
  let compiled: Awaited<ReturnType<typeof compileGraphToFile>>;
  try {
    compiled = await compileGraphToFile(graph, partial, {
      seed,
      weights: options.weights ? 'embedded' : 'none',
      optimize: options.optimize,
      source: `${displayPath(modelFile)}#${name}`,
      training: trainingFrom(options, training),
      ...(entries ? { entries } : {}),
      targets: parseTargets(options.target),
      validationThreads,
      weightStorage: options.weightStorage ?? weightStorage,
    });
  } catch (error) {
    rmSync(partial, { force: true });
    await typeChecked;
    throw error;
  }
  const waited = performance.now();
  try {
    await typeChecked;
  } catch (error) {
    rmSync(partial, { force: true });
    throw error;
  }
  const typeCheckWait = performance.now() - waited;
  const { byteLength, manifest, optimization, timings, storedWeights } = compiled;
  renameOrFail(partial, out);
  const dispatches = Object.values(manifest.entryPoints).reduce((n, e) => n + e.dispatches.length, 0);
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  const trains = manifest.training ? `, trains with ${manifest.training.optimizer}` : '';
  const targets = [manifest.target.name, ...(manifest.otherTargets ?? []).map((t) => t.name)];
  console.log(
    `${out}: model '${name}' for ${targets.length > 1 ? `targets ${targets.join(', ')}` : `target ${targets[0]}`}, ${manifest.kernels.length} kernels, ` +
      `${dispatches} dispatches${targets.length > 1 ? ` (${manifest.target.name})` : ''}${trains}, ${formatBytes(byteLength)}, compiled in ${seconds} s`,
  );
  if (storedWeights) {
    const { stored, f32Bytes, storedBytes } = storedWeights;
    const storage = options.weightStorage ?? weightStorage;
    console.log(
      stored.length > 0
        ? `weights held as ${storage}: ${stored.length} parameter(s), ${formatBytes(f32Bytes)} in f32 → ${formatBytes(storedBytes)}; the others (norms, biases, …) stay f32`
        : `weights held as ${storage}: no parameter qualifies (a matrix read only as a product's right operand or an embedding table); all stay f32`,
    );
  }
  if (options.report) {
    // the type check ran beside the stages: 'typecheck' is what was left of it after them
    const stages = Object.entries({ frontend, ...timings, typecheck: typeCheckWait }).map(([stage, ms]) => `${stage} ${ms.toFixed(0)}`);
    console.log(`stages (ms): ${stages.join(', ')}`);
    for (const phase of optimization ? [optimization.forward, optimization.kernels] : []) {
      console.log(`\noptimizer phase '${phase.phase}': ${phase.nodesBefore} → ${phase.nodesAfter} nodes, estimated ${phase.costBefore.toFixed(1)} → ${phase.costAfter.toFixed(1)} µs`);
      console.log(formatReport(phase.run));
    }
  }
}

async function inspectCommand(file: string, options: { wgsl?: boolean; json?: boolean; target?: string }): Promise<void> {
  const bytes = readPlanBytes(file);
  const bundle: PlanBundle = await aboutPlan(file, () => readBundle(bytes));
  if (options.json) {
    console.log(JSON.stringify(bundle.manifest, null, 2));
  } else if (options.wgsl) {
    console.log(await aboutPlan(file, async () => kernelSources(bundle)));
  } else {
    const names = [bundle.manifest.target.name, ...(bundle.manifest.otherTargets ?? []).map((t) => t.name)];
    if (options.target !== undefined && !names.includes(options.target)) throw new CompileError('input', `${file} has no target '${options.target}' (it has: ${names.join(', ')})`);
    console.log(describePlan(file, bytes.length, bundle.manifest, options.target));
  }
}

interface RunOptions {
  input: string[];
  inputs?: string;
  random?: boolean;
  seed: string;
  out?: string;
  backend?: NodeBackend;
  /** write a Chrome/Perfetto trace of the run here and print per-kernel GPU times */
  trace?: string;
  /** run this target of the plan instead of the one chosen from the device */
  target?: string;
  /** GiB of GPU buffers the plan may create (default: the runtime's 4 GiB) */
  memoryBudget?: string;
  /** a safetensors checkpoint (file, directory or shard index) for the plan's parameters */
  weights?: string;
}

async function runCommand(file: string, options: RunOptions): Promise<void> {
  const budget = memoryBudget(options.memoryBudget);
  const bytes = readPlanBytes(file);
  const { manifest } = await aboutPlan(file, () => readBundle(bytes));
  const chosen = defaultEntry(manifest);
  const inputs = gatherInputs(chosen?.entry.inputs ?? [], {
    files: options.input,
    json: options.inputs,
    random: options.random ?? false,
    seed: parseSeed(options.seed),
  });

  const gpu = await requestNodeDevice({ backend: options.backend });
  let session: Session | undefined;
  try {
    const loadStart = performance.now();
    session = await aboutPlan(file, () => loadPlan(bytes, gpu.device, { ...(options.trace ? { trace: true } : {}), ...(options.target ? { target: options.target } : {}), ...budget }));
    if (options.weights) {
      const report = session.loadWeights(readWeightsFiles(options.weights));
      console.log(`${options.weights}: loaded ${report.loaded.length} parameter(s)`);
    }
    const runStart = performance.now();
    // the entry whose inputs were gathered (a plan without 'run' runs its first)
    const outputs = await aboutPlan(file, () => session!.run(inputs, chosen?.name ?? 'run'));
    const runEnd = performance.now();

    const info = gpu.adapter.info;
    const adapter = info?.description || info?.device || info?.vendor || 'unknown adapter';
    console.log(
      `${file}: ran '${manifest.model.name}' (target ${session.target.name}, ${session.target.reason}) on ${gpu.backend} (${adapter}): ` +
        `load ${(runStart - loadStart).toFixed(1)} ms, run ${(runEnd - runStart).toFixed(1)} ms` +
        (options.trace ? ' (traced)' : ''),
    );
    const bindings = session.outputs;
    if (options.out) {
      for (const written of writeOutputs(options.out, outputs, bindings)) console.log(`wrote ${written}`);
    } else {
      const width = Math.max(...Object.keys(outputs).map((n) => n.length));
      for (const [name, data] of Object.entries(outputs)) {
        console.log(previewTensor(name, bindings.find((b) => b.name === name), data, width));
      }
    }
    for (const warning of nonFiniteWarnings(outputs)) console.error(warning);
    if (options.trace) writeTrace(options.trace, session.takeTrace());
  } finally {
    session?.destroy();
    await gpu.destroy();
  }
}

// --- program --------------------------------------------------------------------------------

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function program(): Command {
  const mnc = new Command('mnc')
    .description('Ahead-of-time neural-network compiler: model.ts → .mnplan, and a runner for plans')
    .version(GENERATOR.version)
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ sortOptions: false });

  mnc
    .command('compile')
    .description('compile a TypeScript model file, an ONNX model, an NNEF model or a GGUF language model to a .mnplan bundle')
    .argument('<model.ts|model.onnx|model.nnef/|model.gguf>', 'model file exporting model((g) => …) definitions, an ONNX model, an NNEF model directory (graph.nnef and its .dat files), or a GGUF file (llama, qwen2; quantized weights stay packed)')
    .option('-o, --output <file>', 'output plan (default: <model file name>.mnplan, or <NAME>.mnplan with --model)')
    .option('--model <name>', 'which exported model to compile (required when the file exports several)')
    .option('--seed <n>', 'seed for parameter initial values', '0')
    .option('--loss <output>', "compile a training plan minimising this output (default: the model's train option)")
    .addOption(new Option('--optimizer <kind>', 'optimizer of the training plan (default: the model\'s, else adam)').choices(['sgd', 'adam', 'adamw']))
    .option('--lr <rate>', 'initial learning rate (changeable at run time)')
    .option('--inference', "compile the inference plan only, ignoring the model's train option")
    .option('--report', "print each stage's time and the e-graph optimizer's report (iterations, nodes, classes, rules fired)")
    .option('--no-optimize', 'skip the e-graph optimizer and fusion: one kernel per op (for comparisons)')
    .option('--no-weights', 'leave initial parameter values out of the plan (they start at zero; load them with --weights or mnc train --load)')
    .option(
      '--target <names>',
      `GPU classes to compile for, comma-separated; the plan carries each one's kernels and schedules and the runtime picks one at load (${BUILTIN_TARGETS.map((t) => t.name).join(', ')})`,
      DEFAULT_TARGETS.map((t) => t.name).join(','),
    )
    .option('--validation-threads <n>', "threads running naga's validation and translations, this one included (default: from the cores and the work; 1 starts none)")
    .option('--shape <name=dims>', 'ONNX, NNEF: the static shape of an input, e.g. x=1x3x224x224 (binds dynamic dimensions; replaces an NNEF external\'s shape); repeatable', collect, [])
    .option('--freeze', "ONNX, NNEF: the model's initializers (NNEF: variables) are fixed weights, not trainable parameters")
    .option('--max-sequence <n>', "GGUF: the KV cache's rows, prompt and generated tokens together (default: the file's context length, at most 2048)")
    .option('--decode-batch <n>', 'GGUF: sequences the KV cache holds, decoded together by a decode_batch entry (mnc serve batches requests over it); default one sequence, a decode entry')
    .addOption(
      new Option('--weight-storage <type>', "hold the weights that only products and embedding gathers read as f16 or bf16 (half the bytes, read in-kernel; --weights and loadWeights round checkpoints into it); inference plans only (default: the model's weightStorage, else f32)").choices([
        ...WEIGHT_STORAGES,
      ]),
    )
    .action(compileCommand);

  mnc
    .command('inspect')
    .description("print a plan's model, inputs, outputs, kernels, dispatches and buffers")
    .argument('<plan.mnplan>', 'plan file')
    .option('--wgsl', "print each kernel's WGSL instead")
    .option('--json', 'print the manifest as JSON instead')
    .option('--target <name>', "describe this target's kernels, dispatches and buffers (default: the first target)")
    .action(inspectCommand);

  mnc
    .command('run')
    .description('run a plan once on a WebGPU device (Dawn) and print or write its outputs')
    .argument('<plan.mnplan>', 'plan file')
    .option('--input <name=file>', 'an input from a .npy (any numeric dtype, C order) or .json file (nested or flat array); integer inputs take integers only; repeatable', collect, [])
    .option('--inputs <file.json>', 'a JSON object mapping input names to nested or flat arrays')
    .option('--random', "fill inputs given nowhere else with uniform [-1, 1) values; integer inputs with integers in the plan's index range, else -128..127 (i8) or 0..9")
    .option('--seed <n>', 'seed for --random', '0')
    .option('--out <file.json|dir>', 'write outputs to a .json file (NaN and ±Infinity as the strings "NaN", "Infinity", "-Infinity"), or one .npy per output into a directory')
    .addOption(new Option('--backend <name>', 'WebGPU backend (default: $MNRT_BACKEND, else the native one, then opengl)').choices(['auto', 'vulkan', 'opengl', 'metal', 'd3d12']))
    .option('--trace <trace.json>', "write a Chrome/Perfetto trace of the run (GPU time of each dispatch; needs the device's timestamp-query) and print per-kernel times")
    .option('--target <name>', "run this target of the plan instead of the one chosen from the device's adapter")
    .option('--verbose', "show Dawn's own diagnostics on stderr (adapter limits, backends it could not load); also MNC_DAWN_VERBOSE=1")
    .option('--memory-budget <GiB>', 'GiB of GPU buffers the plan may create (default 4); a plan needing more is refused before anything is allocated')
    .option('--weights <path>', "the plan's parameters from a safetensors checkpoint (a file, a directory with model.safetensors or a sharded index, or the index) or a GGUF file (tensors renamed to HF's names, dequantized to f32); matched by name, shapes checked")
    .action(runCommand);

  mnc
    .command('train')
    .description('train a plan compiled for training on datasets from files, on a WebGPU device (Dawn)')
    .argument('<plan.mnplan>', 'plan compiled with a loss and an optimizer')
    .option(
      '--data <name=file>',
      "a dataset for one input of the training step: .npy, IDX (MNIST's *-ubyte files) or .safetensors (the tensor named after the input), optionally gzipped; first axis = samples; repeatable",
      collect,
    )
    .option('--scale <name=factor>', "multiply a dataset's values by factor, e.g. x=1/255 for u8 pixels; repeatable", collect)
    .option('--epochs <n>', 'passes over the data (default: 1, or as many as --steps needs); the last partial batch of each epoch is dropped')
    .option('--steps <n>', 'stop after n optimizer steps')
    .option('--lr <rate>', "learning rate (default: the plan's)")
    .option('--shuffle-seed <n>', 'seed of the per-epoch shuffle', '0')
    .option('--load <state.safetensors>', 'start from parameters (and optimizer state) saved by --save')
    .option('--weights <path>', "start from a safetensors checkpoint's parameters (file, directory or shard index; matched by name, shapes checked; F16/BF16 widened) or a GGUF file's (renamed, dequantized)")
    .option('--save <state.safetensors>', 'write parameters and optimizer state after training')
    .option('--skip-non-finite', 'skip steps whose loss or a gradient is NaN or infinite (the plan applies no update) instead of stopping')
    .addOption(new Option('--backend <name>', 'WebGPU backend (default: $MNRT_BACKEND, else the native one, then opengl)').choices(['auto', 'vulkan', 'opengl', 'metal', 'd3d12']))
    .option('--log-every <n>', 'when stdout is not a terminal, print progress every n steps (a terminal gets a progress bar)', '100')
    .option('--trace <trace.json>', "write a Chrome/Perfetto trace of the first steps (GPU time of each dispatch; needs the device's timestamp-query) and print per-kernel times")
    .option('--trace-steps <n>', 'how many steps --trace traces, from the first', '10')
    .option('--target <name>', "train on this target of the plan instead of the one chosen from the device's adapter")
    .option('--verbose', "show Dawn's own diagnostics on stderr (adapter limits, backends it could not load); also MNC_DAWN_VERBOSE=1")
    .option('--memory-budget <GiB>', 'GiB of GPU buffers the plan may create (default 4); a plan needing more is refused before anything is allocated')
    .action(trainCommand);

  mnc
    .command('generate')
    .description('generate text from a language-model plan (prefill and decode entry points, e.g. models/llama.ts) or a GGUF model, streaming tokens with tokens/s')
    .argument('<plan.mnplan|model.gguf>', 'a language-model plan, or a GGUF model (llama, qwen2: compiled on the spot, its tokenizer from its metadata)')
    .option('--weights <path>', "the plan's parameters from a safetensors checkpoint (file, directory with model.safetensors or a sharded index) or a GGUF file (renamed, dequantized to f32)")
    .option('--tokenizer <dir>', "directory with tokenizer.json (and tokenizer_config.json for --chat, generation_config.json for defaults); default for a .gguf model: the file's own tokenizer")
    .option('--max-sequence <n>', "GGUF: the KV cache's rows (default: the file's context length, at most 2048)")
    .option('--target <names>', 'GGUF: the GPU classes to compile for, comma-separated (default: generic)')
    .option('--prompt <text>', 'the prompt')
    .option('--chat', "render the prompt as one user message through the tokenizer's chat template, with the generation prompt")
    .option('--max-new-tokens <n>', 'stop after n tokens (default: generation_config.json, else 256; never past the plan\'s sequence)')
    .option('--sample', 'sample (default: greedy unless generation_config.json says do_sample); implied by the options below')
    .option('--temperature <t>', 'divide the logits by t before sampling')
    .option('--top-k <k>', 'keep the k most likely tokens (0 disables)')
    .option('--top-p <p>', 'keep the most likely tokens whose mass reaches p')
    .option('--min-p <p>', 'keep tokens at least p times as likely as the most likely one')
    .option('--repetition-penalty <r>', 'penalise tokens already in the sequence (1 disables)')
    .option('--seed <n>', 'seed of the sampler (reproducible output)')
    .addOption(new Option('--backend <name>', 'WebGPU backend (default: $MNRT_BACKEND, else the native one, then opengl)').choices(['auto', 'vulkan', 'opengl', 'metal', 'd3d12']))
    .action(generateCommand);

  mnc
    .command('serve')
    .description('serve a language model over the OpenAI HTTP API (chat and text completions, streaming), batching concurrent requests')
    .argument('[plan.mnplan|model.gguf]', 'a language-model plan (e.g. from models/llama.ts), or a GGUF model (compiled on the spot): one with decode_batch (decodeBatch: B, --decode-batch for GGUF) decodes up to B requests per step; one with a single-sequence decode serves one request at a time')
    .option('--tokenizer <dir>', "directory with tokenizer.json, tokenizer_config.json (chat template) and generation_config.json (sampling defaults); default for a .gguf model: the file's own tokenizer")
    .option('--weights <file|dir>', "the plan's weights (safetensors or GGUF), when they are not in the plan")
    .option('--max-sequence <n>', "GGUF: the KV cache's rows (default: the file's context length, at most 2048)")
    .option('--decode-batch <n>', 'GGUF: sequences decoded together (a decode_batch entry with n cache slots; default: one sequence)')
    .option('--target <names>', 'GGUF: the GPU classes to compile for, comma-separated (default: generic)')
    .addOption(new Option('--fake-model <kind>', 'serve a TEST model instead of a plan: a seeded bigram table over the tokenizer\'s words (for trying the server and its clients; says nothing useful)').choices(['bigram']))
    .option('--model-name <name>', "the model name clients ask for (default: 'bigram-test' for the test model)")
    .option('--host <address>', 'address to listen on; the default answers this machine only', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free one, printed)', '8080')
    .addOption(new Option('--api-key <key>', 'require this key as Authorization: Bearer <key> on /v1/ (repeatable)').env('MNC_API_KEY').argParser(collect))
    .option('--api-keys-file <file>', 'require one of the keys in this file (one a line, # comments)')
    .option('--rate-limit <n>', 'requests per minute per key (per client address without keys); beyond it 429 with Retry-After')
    .option('--rate-burst <n>', 'requests a key may make at once before --rate-limit paces it (default: the per-minute figure)')
    .option('--max-batch <n>', 'most sequences decoded together per step (default: what the model holds)')
    .option('--kv-cache-tokens <n>', 'KV-cache tokens the running requests may reserve together, each at prompt + max_tokens (default: max batch × max sequence length)')
    .option('--max-queue <n>', 'requests that may wait for a slot; beyond them 503 with Retry-After', '64')
    .option('--max-body-bytes <n>', 'largest request body; beyond it 413', '1048576')
    .option('--max-prompt-tokens <n>', "longest prompt in tokens (default: the model's sequence length)")
    .option('--max-tokens-default <n>', 'max_tokens of a request that gives none (capped by the room left in the sequence)', '512')
    .option('--cors <origin>', 'let browser pages from this origin (or *) call the server; default: no CORS headers')
    .option('--grace <seconds>', 'on SIGTERM, how long in-flight requests may run before they are cancelled', '30')
    .option('--fake-step-ms <ms>', 'test model: simulated time of a decode step', '2')
    .option('--fake-max-sequence <n>', 'test model: its maximum sequence length', '2048')
    .action(serveCommand);

  return mnc;
}

/** Prints a failure the way compilers do; returns the exit code. */
function report(error: unknown): number {
  if (error instanceof CompileErrors) {
    for (const e of error.errors) console.error(e.format());
  } else if (error instanceof CompileError) {
    console.error(error.format());
  } else if (error instanceof PlanFileError) {
    console.error(`${error.file}: error: ${error.message}`);
  } else if (isPlanError(error)) {
    console.error(`error: ${error.message}`);
  } else {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`mnc: internal error: ${message.split('\n')[0]}`);
    if (process.env.MNC_DEBUG === '1' && error instanceof Error && error.stack) console.error(error.stack);
  }
  return 1;
}

export async function main(argv: string[]): Promise<number> {
  if (wantsDawnFilter(argv)) return runWithDawnFiltered(argv);
  try {
    await program().parseAsync(argv);
    return 0;
  } catch (error) {
    return report(error);
  }
}

process.exitCode = await main(process.argv);
