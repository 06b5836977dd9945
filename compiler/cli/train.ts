// `mnc train`: trains a plan compiled for training on datasets from files. Checks the plan
// and every dataset against the training step's inputs before a device is opened, then runs
// epochs of shuffled batches through TrainingSession.step, showing progress as it goes.
import { Presets, SingleBar } from 'cli-progress';
import { isPlanError, loadTrainingPlan, PlanError, readBundle, readWeightsFiles, requestNodeDevice, type NodeBackend, type NodeGPU, type TensorData, type TrainingSession } from '../../runtime';
import type { TensorBinding } from '../../schemas/manifest';
import { CompileError } from '../ir/errors';
import { uniformStream } from '../ir/init';
import { batchBuffer, checkDatasets, datasetFor, fillBatch, readTensorData, shuffledOrder, type Dataset } from './datasets';
import { formatBytes } from './inspect';
import { aboutPlan, memoryBudget, PlanFileError, readPlanBytes } from './plan-file';
import { writeTrace } from './profile';
import { readFileOrFail, writeFileOrFail } from './tensors';

export interface TrainOptions {
  /** a safetensors checkpoint to start from (parameters only, matched by name) */
  weights?: string;
  /** `name=file` pairs: a dataset per training-step input */
  data?: string[];
  /** `name=factor` pairs: multiply a dataset's values by factor (`1/255` allowed) */
  scale?: string[];
  epochs?: string;
  steps?: string;
  lr?: string;
  shuffleSeed: string;
  load?: string;
  save?: string;
  /** skip steps whose loss or a gradient is not finite instead of stopping */
  skipNonFinite?: boolean;
  backend?: NodeBackend;
  logEvery: string;
  /** write a Chrome/Perfetto trace of the first `traceSteps` steps here */
  trace?: string;
  traceSteps: string;
  /** train on this target of the plan instead of the one chosen from the device */
  target?: string;
  /** GiB of GPU buffers the plan may create (default: the runtime's 4 GiB) */
  memoryBudget?: string;
}

const describe = (t: TensorBinding) => `'${t.name}' ${t.dtype}[${t.shape.join(', ')}]`;

function positiveInteger(flag: string, text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || !Number.isSafeInteger(n)) throw new CompileError('input', `${flag} expects a positive integer; got '${text}'`);
  return n;
}

function seedOf(flag: string, text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > 0xffffffff) throw new CompileError('input', `${flag} expects an integer from 0 to 4294967295; got '${text}'`);
  return n;
}

/** `name=value` → [name, value]; `what` describes the value in the error. */
function splitPair(flag: string, text: string, what: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0 || eq === text.length - 1) throw new CompileError('input', `${flag} expects NAME=${what}; got '${text}'`);
  return [text.slice(0, eq), text.slice(eq + 1)];
}

/** A number, or a fraction of two numbers such as `1/255`. */
function parseFactor(text: string): number {
  const parts = text.split('/').map((p) => p.trim());
  const numbers = parts.map((p) => (p === '' ? NaN : Number(p)));
  if (parts.length > 2 || numbers.some((n) => !Number.isFinite(n))) return NaN;
  return numbers.length === 2 ? numbers[0] / numbers[1] : numbers[0];
}

/** The datasets of --data and --scale, each checked against the input it names. */
export function loadDatasets(inputs: readonly TensorBinding[], dataPairs: readonly string[], scalePairs: readonly string[]): Dataset[] {
  const byName = new Map(inputs.map((i) => [i.name, i]));
  const lookup = (name: string, given: string): TensorBinding => {
    const input = byName.get(name);
    if (!input) throw new CompileError('input', `the training step has no input '${name}' (given by ${given}); its inputs are ${inputs.map(describe).join(', ')}`);
    return input;
  };
  const scales = new Map<string, number>();
  for (const pair of scalePairs) {
    const [name, text] = splitPair('--scale', pair, 'FACTOR');
    lookup(name, `--scale ${pair}`);
    const factor = parseFactor(text);
    if (!Number.isFinite(factor)) throw new CompileError('input', `--scale ${pair}: '${text}' is not a number or a fraction such as 1/255`);
    scales.set(name, factor);
  }
  const datasets = new Map<string, Dataset>();
  for (const pair of dataPairs) {
    const [name, file] = splitPair('--data', pair, 'FILE');
    const input = lookup(name, `--data ${pair}`);
    if (datasets.has(name)) throw new CompileError('input', `--data gives '${name}' twice (${datasets.get(name)!.source} and ${file})`);
    datasets.set(name, datasetFor(input, readTensorData(file, name), file, scales.get(name)));
  }
  for (const name of scales.keys()) {
    if (!datasets.has(name)) throw new CompileError('input', `--scale ${name}=… names an input without --data`);
  }
  return [...datasets.values()];
}

// --- progress -------------------------------------------------------------------------------

interface StepReport {
  epoch: number;
  /** steps taken in this epoch, and the epoch's length */
  step: number;
  steps: number;
  /** mean loss of this epoch's steps so far, skipped ones left out */
  meanLoss: number;
  /** steps of this epoch skipped so far (--skip-non-finite) */
  skipped: number;
  samplesPerSecond: number;
}

interface EpochReport extends StepReport {
  seconds: number;
}

interface Progress {
  startEpoch(epoch: number, steps: number): void;
  step(report: StepReport): void;
  endEpoch(report: EpochReport): void;
  /** clears a bar left on screen (an error stopped training) */
  abort(): void;
}

// NaN only when every step so far was skipped
const lossText = (loss: number) => (Number.isNaN(loss) ? '-' : loss.toFixed(4));
const seconds = (s: number) => `${s.toFixed(s < 10 ? 2 : 1)} s`;
const rateText = (rate: number) => rate.toFixed(0);

function epochLine(epochs: number, r: EpochReport): string {
  return `epoch ${r.epoch}/${epochs}: loss ${lossText(r.meanLoss)} (mean of ${r.step - r.skipped} steps${r.skipped ? `, ${r.skipped} skipped` : ''}), ${rateText(r.samplesPerSecond)} samples/s, ${seconds(r.seconds)}`;
}

/** A cli-progress bar per epoch, replaced by the epoch's line when it ends; for terminals. */
function barProgress(epochs: number, out: NodeJS.WriteStream): Progress {
  let bar: SingleBar | undefined;
  return {
    startEpoch(epoch, steps) {
      bar = new SingleBar(
        {
          format: `epoch {epoch}/${epochs} {bar} {value}/{total} steps | loss {loss} | {rate} samples/s | eta {eta_formatted}`,
          stream: out,
          clearOnComplete: true,
          hideCursor: false,
          etaBuffer: 50,
        },
        Presets.shades_classic,
      );
      bar.start(steps, 0, { epoch, loss: '-', rate: '-' });
    },
    step(r) {
      bar?.update(r.step, { loss: lossText(r.meanLoss), rate: rateText(r.samplesPerSecond) });
    },
    endEpoch(r) {
      bar?.stop();
      bar = undefined;
      out.write(epochLine(epochs, r) + '\n');
    },
    abort() {
      bar?.stop();
    },
  };
}

/** A plain line every `every` steps and one per epoch; for logs and pipes. */
function lineProgress(epochs: number, every: number, print: (line: string) => void): Progress {
  return {
    startEpoch() {},
    step(r) {
      if (r.step % every !== 0 || r.step === r.steps) return;
      print(`epoch ${r.epoch}/${epochs} step ${r.step}/${r.steps}: loss ${lossText(r.meanLoss)} (running mean), ${rateText(r.samplesPerSecond)} samples/s`);
    },
    endEpoch(r) {
      print(epochLine(epochs, r));
    },
    abort() {},
  };
}

// --- the command ----------------------------------------------------------------------------

export async function trainCommand(file: string, options: TrainOptions): Promise<void> {
  const budget = memoryBudget(options.memoryBudget);
  const bytes = readPlanBytes(file);
  const { manifest } = await aboutPlan(file, () => readBundle(bytes));
  const training = manifest.training;
  if (!training) {
    const why = `plan '${manifest.model.name}' was not compiled for training (it has no train_step entry); compile it with a loss: mnc compile --loss OUTPUT, or a model \`train\` option`;
    throw new PlanFileError(file, new PlanError('bad-input', why));
  }
  const inputs = manifest.entryPoints[training.entry].inputs.filter((i) => i.name !== training.hyper.input);

  // everything the command line says is checked before a device is opened
  const steps = options.steps === undefined ? undefined : positiveInteger('--steps', options.steps);
  const lr = options.lr === undefined ? undefined : Number(options.lr);
  if (lr !== undefined && !(Number.isFinite(lr) && lr > 0)) throw new CompileError('input', `--lr expects a positive number; got '${options.lr}'`);
  const seed = seedOf('--shuffle-seed', options.shuffleSeed);
  const logEvery = positiveInteger('--log-every', options.logEvery);
  const traceSteps = options.trace === undefined ? undefined : positiveInteger('--trace-steps', options.traceSteps);
  const epochsGiven = options.epochs === undefined ? undefined : positiveInteger('--epochs', options.epochs);
  const datasets = loadDatasets(inputs, options.data ?? [], options.scale ?? []);
  const { batch, samples } = checkDatasets(inputs, datasets);
  const perEpoch = Math.floor(samples / batch);
  const epochs = epochsGiven ?? (steps !== undefined ? Math.ceil(steps / perEpoch) : 1);
  const totalSteps = Math.min(steps ?? Infinity, epochs * perEpoch);
  const epochsToRun = Math.ceil(totalSteps / perEpoch);
  const state = options.load ? readFileOrFail(options.load, 'state file') : undefined;

  const gpu = await requestNodeDevice({ backend: options.backend });
  let session: TrainingSession | undefined;
  try {
    session = await aboutPlan(file, () => loadTrainingPlan(bytes, gpu.device, { ...(traceSteps !== undefined ? { trace: true } : {}), ...(options.target ? { target: options.target } : {}), ...budget }));
    if (options.weights) {
      if (state) throw new PlanError('bad-input', 'give --weights or --load, not both (--load restores parameters and optimizer state saved by --save)');
      const report = session.loadWeights(readWeightsFiles(options.weights));
      console.log(`${options.weights}: loaded ${report.loaded.length} parameter(s)`);
    }
    if (state) await session.importState(new Uint8Array(state.buffer, state.byteOffset, state.byteLength), options.load);
    if (lr !== undefined) session.setHyper({ lr });

    const dropped = samples - perEpoch * batch;
    console.log(
      `${file}: training '${manifest.model.name}' (target ${session.target.name}) on ${gpu.backend} (${adapterName(gpu)}), ${training.optimizer} lr ${session.hyper.lr}: ` +
        `${samples} samples, batch ${batch}, ${perEpoch} steps per epoch` +
        (dropped > 0 ? ` (the last ${dropped} samples of each shuffled epoch dropped)` : ''),
    );
    if (state) console.log(`loaded ${options.load}${session.stepCount > 0 ? ` (optimizer state at step ${session.stepCount})` : ' (parameters only)'}`);
    if (traceSteps !== undefined) console.log(`tracing the first ${Math.min(traceSteps, totalSteps)} steps (one compute pass per dispatch: slower steps)`);

    const progress = process.stdout.isTTY ? barProgress(epochsToRun, process.stdout) : lineProgress(epochsToRun, logEvery, (line) => console.log(line));
    const result = await runEpochs(session, datasets, { batch, perEpoch, totalSteps, seed, traceSteps, skipNonFinite: options.skipNonFinite ?? false }, progress);
    if (session.skippedSteps > 0) console.log(`skipped ${session.skippedSteps} step${session.skippedSteps > 1 ? 's' : ''} whose loss or gradients were not finite (no update applied)`);
    console.log(
      `trained ${result.steps} steps of ${batch} samples in ${result.epochs} epoch${result.epochs > 1 ? 's' : ''}: ` +
        `final loss ${lossText(result.lastEpochLoss)} (mean over the last epoch), ${seconds(result.seconds)}, ${rateText((result.steps * batch) / result.seconds)} samples/s`,
    );

    if (options.save) {
      const bytesOut = await session.exportState();
      writeFileOrFail(options.save, bytesOut);
      const tensors = training.parameters.reduce((n, p) => n + 1 + p.state.length, 0);
      console.log(`wrote ${options.save} (${tensors} tensors, ${formatBytes(bytesOut.length)})`);
    }
    if (options.trace) writeTrace(options.trace, session.takeTrace());
  } finally {
    session?.destroy();
    await gpu.destroy();
  }
}

function adapterName(gpu: NodeGPU): string {
  const info = gpu.adapter.info;
  return info?.description || info?.device || info?.vendor || 'unknown adapter';
}

interface Schedule {
  batch: number;
  perEpoch: number;
  totalSteps: number;
  seed: number;
  /** tracing is turned off after this many steps */
  traceSteps?: number;
  skipNonFinite: boolean;
}

/** The training loop: shuffled epochs of full batches, stopping after `totalSteps`. */
async function runEpochs(session: TrainingSession, datasets: Dataset[], schedule: Schedule, progress: Progress) {
  const random = uniformStream(schedule.seed);
  const buffers = datasets.map((d) => batchBuffer(d.input));
  const samples = datasets[0].samples;
  let taken = 0;
  let lastEpochLoss = NaN;
  let epoch = 0;
  const started = performance.now();
  try {
    while (taken < schedule.totalSteps) {
      epoch++;
      const order = shuffledOrder(samples, random);
      const steps = Math.min(schedule.perEpoch, schedule.totalSteps - taken);
      const epochStart = performance.now();
      let sum = 0;
      let counted = 0;
      progress.startEpoch(epoch, steps);
      for (let step = 1; step <= steps; step++) {
        const batch: Record<string, TensorData> = {};
        datasets.forEach((d, i) => {
          fillBatch(d, order, (step - 1) * schedule.batch, buffers[i]);
          batch[d.input.name] = buffers[i];
        });
        const skippedBefore = session.skippedSteps;
        let loss: number;
        try {
          loss = await session.step(batch, { skipNonFinite: schedule.skipNonFinite });
        } catch (error) {
          if (!(isPlanError(error) && error.kind === 'non-finite')) throw error;
          throw new CompileError('input', `step ${taken + 1} (epoch ${epoch}): ${error.message}; training stopped: try a smaller --lr, check the data (--scale), or pass --skip-non-finite`);
        }
        taken++;
        if (taken === schedule.traceSteps) session.tracing = false;
        if (session.skippedSteps === skippedBefore) {
          // a plan without a step check (compiled before it existed) applied this update regardless
          if (!Number.isFinite(loss)) {
            throw new CompileError('input', `the loss became ${loss} at step ${taken} (epoch ${epoch}); training stopped: try a smaller --lr or check the data (--scale)`);
          }
          sum += loss;
          counted++;
        }
        const seconds = (performance.now() - epochStart) / 1000;
        progress.step({ epoch, step, steps, meanLoss: sum / counted, skipped: step - counted, samplesPerSecond: (step * schedule.batch) / seconds });
      }
      const seconds = (performance.now() - epochStart) / 1000;
      lastEpochLoss = sum / counted;
      progress.endEpoch({ epoch, step: steps, steps, meanLoss: lastEpochLoss, skipped: steps - counted, samplesPerSecond: (steps * schedule.batch) / seconds, seconds });
    }
  } catch (error) {
    progress.abort();
    throw error;
  }
  return { steps: taken, epochs: epoch, lastEpochLoss, seconds: (performance.now() - started) / 1000 };
}
