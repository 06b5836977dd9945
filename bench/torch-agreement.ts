// Training agreement with PyTorch on a real GPU: trains each fixture run's plan (Vulkan on the
// GPU machine) and the CPU reference from the run's initial weights over its batches, and
// prints how far each is from what torch_reference.py produced (per-step losses, final parameters).
//   node .device/torch-agreement.mjs RUN.inputs.safetensors RUN.torch.safetensors [...more pairs]
// Writes torch-agreement.json to $OUT when set. Figures only; the pass/fail bounds live in
// test/torch-agreement.test.ts.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compareTraces, decodeRunInputs, decodeTorchResult, trainOnCpu, trainOnDevice, type Agreement } from '../fixtures/training/agreement';
import { requestNodeDevice } from '../runtime/index';

const paths = process.argv.slice(2);
if (paths.length === 0 || paths.length % 2 !== 0) {
  console.error('usage: torch-agreement RUN.inputs.safetensors RUN.torch.safetensors [...more pairs]');
  process.exitCode = 2;
} else {
  const gpu = await requestNodeDevice();
  const adapter = `${gpu.backend}: ${gpu.adapter.info.vendor} ${gpu.adapter.info.architecture} ${gpu.adapter.info.description}`.trim();
  console.log(`adapter ${adapter}`);
  const results: { run: string; torch: Record<string, string>; gpu: Agreement; cpu: Agreement; seconds: number }[] = [];
  const line = (label: string, a: Agreement) =>
    `  ${label.padEnd(14)} max |Δloss| ${a.maxLossAbs.toExponential(2)} (rel ${a.maxLossRel.toExponential(2)})  max |Δparam| ${a.maxParamAbs.toExponential(2)} (rel ${a.maxParamRel.toExponential(2)})`;
  try {
    for (let k = 0; k < paths.length; k += 2) {
      const inputs = decodeRunInputs(new Uint8Array(readFileSync(paths[k])), paths[k]);
      const torch = decodeTorchResult(new Uint8Array(readFileSync(paths[k + 1])), paths[k + 1]);
      const started = performance.now();
      const ours = await trainOnDevice(inputs, gpu.device);
      const seconds = (performance.now() - started) / 1000;
      const onGpu = compareTraces(ours, torch);
      const onCpu = compareTraces(trainOnCpu(inputs), torch);
      console.log(`${inputs.run.name} (${inputs.run.model}, ${inputs.run.optimizer.kind}): ${onGpu.steps} steps against torch ${torch.metadata.torch} on ${torch.metadata.device}`);
      console.log(`  loss ${torch.losses[0].toFixed(6)} -> ${torch.losses[onGpu.steps - 1].toFixed(6)} (torch); compile + ${onGpu.steps} steps ${seconds.toFixed(2)} s`);
      console.log(line('gpu vs torch', onGpu));
      console.log(line('cpu vs torch', onCpu));
      results.push({ run: inputs.run.name, torch: torch.metadata, gpu: onGpu, cpu: onCpu, seconds });
    }
  } finally {
    await gpu.destroy();
  }
  if (process.env.OUT) writeFileSync(join(process.env.OUT, 'torch-agreement.json'), JSON.stringify({ adapter, results }, null, 2));
}
