// Profiles the MNIST MLP's training step (examples/mnist/model.ts) with the runtime's tracer:
// compiles the plan, takes untraced warm-up steps, then traces some steps (each dispatch in a
// compute pass of its own, timed by GPU timestamps) and prints the per-kernel time table
// that `mnc train --trace` prints, plus per-step GPU time and a check that timestamps are
// not quantized (Dawn rounds them to 65.536 µs unless the Node host turns that off).
//
//   npx esbuild bench/trace-mnist.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/trace-mnist.mjs
//   node .device/trace-mnist.mjs [--warmup 50] [--steps 20] [--seed 1]
//
// With $OUT set, the trace is written to $OUT/trace-mnist.json and the figures to
// $OUT/trace-mnist-summary.json.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeTrace } from '../compiler/cli/profile';
import { buildGraph } from '../compiler/api';
import { compileGraph } from '../compiler/compile';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { uniformStream } from '../compiler/ir/init';
import { BATCH, mnist } from '../examples/mnist/model';
import { kernelSummary, loadTrainingPlan, requestNodeDevice, type TraceRecord } from '../runtime/index';

function parseOptions(argv: string[]) {
  const options = { warmup: 50, steps: 20, seed: 1 };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].slice(2);
    const value = Number(argv[++i]);
    if (!(key in options) || !Number.isInteger(value) || value < 0) throw new Error(`usage: trace-mnist [--warmup N] [--steps N] [--seed N]; got ${argv[i - 1]}`);
    (options as Record<string, number>)[key] = value;
  }
  return options;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Per traced run: summed dispatch time and first-start-to-last-end span, µs. */
function perRun(records: TraceRecord[]) {
  const runs = new Map<number, { busy: number; start: number; end: number }>();
  for (const r of records) {
    const run = runs.get(r.run) ?? { busy: 0, start: Infinity, end: -Infinity };
    run.busy += (r.endNs - r.startNs) / 1000;
    run.start = Math.min(run.start, r.startNs);
    run.end = Math.max(run.end, r.endNs);
    runs.set(r.run, run);
  }
  return [...runs.values()].map((r) => ({ busyUs: r.busy, spanUs: (r.end - r.start) / 1000 }));
}

async function main() {
  const options = parseOptions(process.argv.slice(2));
  const compiled = await compileGraph(buildGraph('mnist', mnist), { seed: options.seed, training: mnist.train, targets: [NVIDIA_HOPPER] });
  const entry = compiled.manifest.training!.entry;
  const dispatches = compiled.manifest.entryPoints[entry].dispatches.length;

  const gpu = await requestNodeDevice();
  const { vendor, architecture, description } = gpu.adapter.info;
  console.log(`adapter: ${gpu.backend}: ${[vendor, architecture, description].filter((s) => s).join(' ')}; timestamp-query: ${gpu.device.features.has('timestamp-query')}`);
  console.log(`plan: ${compiled.manifest.kernels.length} kernels, ${dispatches} dispatches in ${entry}`);
  const session = await loadTrainingPlan(compiled.bundle, gpu.device);
  try {
    const next = uniformStream(options.seed);
    const batches = Array.from({ length: 8 }, () => ({
      x: Float32Array.from({ length: BATCH * 784 }, next),
      labels: Int32Array.from({ length: BATCH }, () => Math.floor(next() * 10)),
    }));
    let k = 0;
    const step = () => session.step(batches[k++ % batches.length]);

    const untraced: number[] = [];
    for (let i = 0; i < options.warmup; i++) {
      const start = performance.now();
      await step();
      untraced.push((performance.now() - start) * 1000);
    }
    session.tracing = true;
    const traced: number[] = [];
    let loss = NaN;
    for (let i = 0; i < options.steps; i++) {
      const start = performance.now();
      loss = await step();
      traced.push((performance.now() - start) * 1000);
    }
    session.tracing = false;
    const records = session.takeTrace();

    const out = process.env.OUT;
    writeTrace(out ? join(out, 'trace-mnist.json') : 'trace-mnist.json', records);

    const runs = perRun(records);
    const stamps = records.flatMap((r) => [r.startNs, r.endNs]);
    const quantized = stamps.filter((t) => t % 65536 === 0).length;
    const figures = {
      dispatchesPerStep: dispatches,
      tracedSteps: runs.length,
      lastLoss: loss,
      untracedStepWallMedianUs: median(untraced.slice(Math.floor(untraced.length / 2))),
      tracedStepWallMedianUs: median(traced),
      gpuBusyPerStepMedianUs: median(runs.map((r) => r.busyUs)),
      gpuSpanPerStepMedianUs: median(runs.map((r) => r.spanUs)),
      timestampsOnMultiplesOf65536ns: `${quantized} of ${stamps.length}`,
      zeroLengthDispatches: records.filter((r) => r.endNs <= r.startNs).length,
      kernels: kernelSummary(records),
    };
    const { kernels, ...headline } = figures;
    console.log(JSON.stringify(headline, null, 2));
    if (out) writeFileSync(join(out, 'trace-mnist-summary.json'), JSON.stringify(figures, null, 2));
    void kernels;
  } finally {
    session.destroy();
    await gpu.destroy();
  }
}

await main();
