// Training agrees with PyTorch: each run of fixtures/training (an MLP under SGD+momentum and
// under Adam, a transformer block under AdamW) trained from the fixture's initial weights over
// its 25 batches gives PyTorch's per-step losses and final parameters, on the GPU and on the
// CPU reference. The PyTorch side was produced on an H200 by fixtures/training/torch_reference.py.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { compareTraces, decodeRunInputs, decodeTorchResult, trainOnCpu, trainOnDevice, type Agreement, type Tolerance, type TrainingTrace } from '../fixtures/training/agreement';
import { RUNS } from '../fixtures/training/models';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

/**
 * |ours - torch| ≤ atol + rtol·|torch|, for every step's loss and every final parameter.
 *
 * Both sides compute in f32 (the CPU reference in f64) with different summation orders and
 * exp/log/sqrt implementations, so each step's gradient differs by a few ulps and 25
 * optimizer steps carry that forward (Adam's m/√v amplifies it where a gradient is small).
 * Measured against the H200 fixtures (fixtures/training/README.md), worst over the 3 runs:
 *   our plan on llvmpipe   losses 2.4e-7, parameters 2.4e-7
 *   our plan on the H200   losses 2.4e-7, parameters 3.0e-7 (bench/torch-agreement.ts)
 *   CPU reference (f64)    losses 2.6e-7, parameters 5.2e-7
 *   torch CPU vs CUDA      losses 2.4e-7, parameters 2.4e-7 (torch's own spread)
 * The bounds give 8–10× headroom over those (losses are near 1, parameters up to 0.5). A
 * wrong formula lands far outside: an off-by-one Adam bias correction gives 6e-2 in the
 * loss and 5e-2 in the parameters; 1 - beta2 rounded from an f32 beta2 (fixed) gave 2.7e-6.
 */
const TOLERANCE: Tolerance = {
  loss: { atol: 1e-6, rtol: 1e-6 },
  param: { atol: 2e-6, rtol: 1e-5 },
};

const fixture = (file: string) => new Uint8Array(readFileSync(new URL(`../fixtures/training/${file}`, import.meta.url)));

function report(label: string, a: Agreement): string {
  return `${label}: ${a.steps} steps, max |Δloss| ${a.maxLossAbs.toExponential(2)} (rel ${a.maxLossRel.toExponential(2)}), max |Δparam| ${a.maxParamAbs.toExponential(2)} (rel ${a.maxParamRel.toExponential(2)}); worst ${a.worstParam}`;
}

function expectAgreement(label: string, ours: TrainingTrace, torch: TrainingTrace): void {
  const a = compareTraces(ours, torch, TOLERANCE);
  console.log(report(label, a));
  expect(a.lossUse, `${label}: a loss is outside the tolerance\n${report(label, a)}`).toBeLessThanOrEqual(1);
  expect(a.paramUse, `${label}: a parameter is outside the tolerance\n${report(label, a)}`).toBeLessThanOrEqual(1);
}

describe.each(RUNS.map((run) => [run.name, run] as const))('%s', (name) => {
  const inputsBytes = fixture(`${name}.inputs.safetensors`);
  const inputs = decodeRunInputs(inputsBytes, `${name}.inputs.safetensors`);
  const torch = decodeTorchResult(fixture(`${name}.torch.safetensors`), `${name}.torch.safetensors`);

  it('has a PyTorch reference made from this inputs file, on a GPU, in which training moved the parameters', () => {
    expect(torch.metadata.inputs_sha256).toBe(createHash('sha256').update(inputsBytes).digest('hex'));
    expect(torch.metadata.device).not.toBe('cpu');
    expect(torch.losses.length).toBe(inputs.run.steps);
    expect(inputs.run.steps).toBeGreaterThanOrEqual(20);
    // the tolerance is only meaningful if training moved parameters far beyond it
    let moved = 0;
    for (const [p, start] of inputs.parameters) {
      const end = torch.parameters.get(p)!;
      for (let i = 0; i < start.length; i++) moved = Math.max(moved, Math.abs(end[i] - start[i]));
    }
    expect(moved).toBeGreaterThan(100 * TOLERANCE.param.atol);
    expect(torch.losses[inputs.run.steps - 1]).toBeLessThan(torch.losses[0]);
  });

  it('trains on the GPU to PyTorch’s losses and parameters', async () => {
    const { device } = await sharedDevice();
    expectAgreement(`${name} gpu`, await trainOnDevice(inputs, device), torch);
  });

  it('trains on the CPU reference to PyTorch’s losses and parameters', () => {
    expectAgreement(`${name} cpu reference`, trainOnCpu(inputs), torch);
  });
});
