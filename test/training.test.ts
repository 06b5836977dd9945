// Training plans on the GPU against the CPU reference: the runtime's step() must take the
// same optimizer steps as the float64 interpreter running the same training graph (SGD with
// momentum and weight decay, Adam, AdamW), honour setHyper between steps, keep frozen
// parameters fixed, and move parameters and optimizer state in and out as safetensors.
import { afterAll, describe, expect, test } from 'vitest';
import type { OptimizerSpec } from '../compiler/autodiff/train';
import { compileGraph, type CompiledPlan } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { HYPER_FIELDS } from '../compiler/ir/ops';
import { elementCount } from '../compiler/ir/types';
import { decodeSafetensors, encodeSafetensors } from '../runtime/safetensors';
import { PlanError } from '../runtime/errors';
import { loadPlan } from '../runtime/session';
import { loadTrainingPlan, type TrainingSession } from '../runtime/training';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

const BATCH = 6;

/** A two-layer classifier with a frozen input scale, so frozen parameters are exercised too. */
function classifier(): Graph {
  const g = new Graph('classifier');
  const x = g.input('x', [BATCH, 10]);
  const labels = g.input('labels', [BATCH], 'i32');
  const scale = g.parameter('scale', [10], { init: 'ones', trainable: false });
  const h = g.tanh(g.biasAdd(g.matmul(g.mul(x, scale), g.parameter('w1', [10, 12])), g.parameter('b1', [12], { init: { uniform: [-0.1, 0.1] } })));
  const logits = g.biasAdd(g.matmul(h, g.parameter('w2', [12, 4])), g.parameter('b2', [4]));
  g.output('logits', logits);
  g.output('loss', g.crossEntropy(logits, labels));
  return g;
}

function batch(step: number): { x: Float32Array; labels: Int32Array } {
  const u = uniformStream(100 + step);
  return {
    x: Float32Array.from({ length: BATCH * 10 }, () => 2 * u() - 1),
    labels: Int32Array.from({ length: BATCH }, () => Math.floor(4 * u())),
  };
}

/** The CPU side of a training run: float64 parameters and state stepped by the interpreter. */
class ReferenceTrainer {
  readonly parameters: Map<string, Float64Array>;
  readonly state: Map<string, Float64Array>;
  private t = 0;
  hyper: Record<string, number>;

  constructor(
    private readonly graph: Graph,
    private readonly plan: CompiledPlan,
  ) {
    this.parameters = new Map([...plan.parameters].map(([k, v]) => [k, Float64Array.from(v)]));
    this.state = new Map(graph.nodes.filter((n) => n.op === 'state').map((n) => [n.name, new Float64Array(elementCount(n.type.shape))]));
    this.hyper = { ...plan.training!.hyper.defaults };
  }

  step(inputs: Record<string, ArrayLike<number>>): number {
    this.t++;
    const h: Record<string, number> = {
      ...this.hyper,
      biasCorrection1: 1 - this.hyper.beta1 ** this.t,
      biasCorrection2: 1 - this.hyper.beta2 ** this.t,
      oneMinusBeta1: 1 - this.hyper.beta1,
      oneMinusBeta2: 1 - this.hyper.beta2,
    };
    const vector = HYPER_FIELDS.map((f) => h[f]);
    const out = interpret(this.graph, { ...inputs, 'optimizer.hyper': vector }, this.parameters, {
      state: this.state,
      outputs: ['loss'],
      effects: this.plan.training!.updates,
    });
    return out.loss[0];
  }
}

async function exportedParameters(session: TrainingSession): Promise<Map<string, Float32Array>> {
  const file = decodeSafetensors(await session.exportState({ optimizer: false }));
  return new Map([...file.tensors].map(([k, t]) => [k, new Float32Array(t.data.slice().buffer)]));
}

function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

const optimizers: [string, OptimizerSpec][] = [
  ['sgd with momentum and weight decay', { kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 1e-3 }],
  ['adam', { kind: 'adam', lr: 0.01, weightDecay: 1e-3 }],
  ['adamw', { kind: 'adamw', lr: 0.01, weightDecay: 0.05 }],
];

describe.each(optimizers)('%s: GPU steps equal the CPU reference', (_label, optimizer) => {
  test('12 steps, a learning-rate change after 6, frozen parameters untouched', async () => {
    const g = classifier();
    const plan = await compileGraph(g, { seed: 3, training: { loss: 'loss', optimizer } });
    const reference = new ReferenceTrainer(g, plan);
    const session = await loadTrainingPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const gpuLosses: number[] = [];
      const cpuLosses: number[] = [];
      for (let t = 0; t < 12; t++) {
        if (t === 6) {
          session.setHyper({ lr: optimizer.lr / 2 });
          reference.hyper.lr = optimizer.lr / 2;
        }
        gpuLosses.push(await session.step(batch(t)));
        cpuLosses.push(reference.step(batch(t)));
      }
      expect(session.stepCount).toBe(12);
      // f32 kernels against float64 over 12 steps: a few ulps of drift per step
      expect(maxDifference(gpuLosses, cpuLosses)).toBeLessThan(1e-4);
      expect(gpuLosses[11]).toBeLessThan(gpuLosses[0]);
      const params = await exportedParameters(session);
      for (const [name, cpu] of reference.parameters) expect(maxDifference(params.get(name)!, cpu), name).toBeLessThan(1e-4);
      expect([...params.get('scale')!]).toEqual(new Array(10).fill(1));
      // the inference entry sees the trained weights
      const { x } = batch(0);
      const logits = (await session.run({ x })).logits;
      const cpuLogits = interpret(g, { x }, reference.parameters, { outputs: ['logits'] }).logits;
      expect(maxDifference(logits, cpuLogits)).toBeLessThan(1e-4);
    } finally {
      session.destroy();
    }
  });
});

describe('non-finite steps', () => {
  test('a step whose gradients are not finite changes nothing: it rejects (or is skipped), and later steps match the CPU reference that never saw it', async () => {
    const g = classifier();
    const plan = await compileGraph(g, { seed: 5, training: { loss: 'loss', optimizer: { kind: 'adam', lr: 0.01 } } });
    expect(plan.manifest.training!.check).toBe('optimizer.check');
    expect(plan.manifest.entryPoints.train_step.outputs.map((o) => o.name)).toEqual(['loss', 'optimizer.check']);
    const reference = new ReferenceTrainer(g, plan);
    const session = await loadTrainingPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const gpuLosses: number[] = [];
      const cpuLosses: number[] = [];
      const good = async (t: number) => {
        gpuLosses.push(await session.step(batch(t)));
        cpuLosses.push(reference.step(batch(t)));
      };
      await good(0);
      await good(1);
      const before = await session.exportState();
      // one infinite input: tanh saturates, and its gradient 0 times Infinity is NaN
      const bad = { ...batch(2), x: batch(2).x.map((v, i) => (i === 13 ? Infinity : v)) };
      const error = await session.step(bad).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PlanError);
      expect((error as PlanError).kind).toBe('non-finite');
      expect((error as PlanError).message).toMatch(/^training step 3 of plan "classifier": (the loss is NaN|a gradient is not finite \(the loss is [\d.]+; loss \+ the gradients' sum is NaN\)); the update was not applied \(parameters and optimizer state are unchanged\)$/);
      expect(session.stepCount).toBe(2);
      expect(await session.step(bad, { skipNonFinite: true })).not.toBeUndefined();
      expect(session.skippedSteps).toBe(1);
      expect(session.stepCount).toBe(2);
      // parameters and Adam moments bit for bit as before the two bad steps
      expect(Buffer.from(await session.exportState()).equals(Buffer.from(before))).toBe(true);
      await good(3);
      await good(4);
      expect(session.stepCount).toBe(4);
      expect(maxDifference(gpuLosses, cpuLosses)).toBeLessThan(1e-4);
      const params = await exportedParameters(session);
      for (const [name, cpu] of reference.parameters) expect(maxDifference(params.get(name)!, cpu), name).toBeLessThan(1e-4);
    } finally {
      session.destroy();
    }
  });

  test('the CPU reference skips the same step: its updates leave parameters and state unchanged', async () => {
    const g = classifier();
    const plan = await compileGraph(g, { seed: 5, training: { loss: 'loss', optimizer: { kind: 'sgd', lr: 0.1, momentum: 0.9 } } });
    const reference = new ReferenceTrainer(g, plan);
    reference.step(batch(0));
    const parameters = new Map([...reference.parameters].map(([k, v]) => [k, v.slice()]));
    const state = new Map([...reference.state].map(([k, v]) => [k, v.slice()]));
    reference.step({ ...batch(1), x: batch(1).x.map((v, i) => (i === 4 ? NaN : v)) });
    expect(reference.parameters).toEqual(parameters);
    expect(reference.state).toEqual(state);
  });
});

describe('queued steps', () => {
  test('steps queued without awaiting equal awaited steps, bit for bit', async () => {
    const g = classifier();
    const plan = await compileGraph(g, { seed: 4, training: { loss: 'loss', optimizer: { kind: 'adam', lr: 0.01 } } });
    const device = (await sharedDevice()).device;
    const awaited = await loadTrainingPlan(plan.bundle, device);
    const queued = await loadTrainingPlan(plan.bundle, device);
    try {
      const one: number[] = [];
      for (let t = 0; t < 8; t++) one.push(await awaited.step(batch(t)));
      const all = await Promise.all(Array.from({ length: 8 }, (_, t) => queued.step(batch(t))));
      expect(all).toEqual(one);
      expect(queued.stepCount).toBe(8);
    } finally {
      awaited.destroy();
      queued.destroy();
    }
  });
});

describe('training state as safetensors', () => {
  test('export, step on, import: the same steps repeat exactly', async () => {
    const g = classifier();
    const plan = await compileGraph(g, { seed: 5, training: { loss: 'loss', optimizer: { kind: 'adam', lr: 0.01 } } });
    const session = await loadTrainingPlan(plan.bundle, (await sharedDevice()).device);
    try {
      for (let t = 0; t < 3; t++) await session.step(batch(t));
      const saved = await session.exportState();
      const file = decodeSafetensors(saved);
      expect(file.metadata.step).toBe('3');
      expect([...file.tensors.keys()].sort()).toEqual(
        ['b1', 'b2', 'scale', 'w1', 'w2', ...['b1', 'b2', 'w1', 'w2'].flatMap((p) => [`optimizer.${p}.exp_avg`, `optimizer.${p}.exp_avg_sq`])].sort(),
      );
      const first = [];
      for (let t = 3; t < 6; t++) first.push(await session.step(batch(t)));
      await session.importState(saved, 'saved.safetensors');
      expect(session.stepCount).toBe(3);
      const again = [];
      for (let t = 3; t < 6; t++) again.push(await session.step(batch(t)));
      expect(again).toEqual(first);
    } finally {
      session.destroy();
    }
  });

  test('parameters alone restart the optimizer at step 0 with zero moments', async () => {
    const g = classifier();
    const plan = await compileGraph(g, { seed: 5, training: { loss: 'loss', optimizer: { kind: 'adam', lr: 0.01 } } });
    const device = (await sharedDevice()).device;
    const fresh = await loadTrainingPlan(plan.bundle, device);
    const used = await loadTrainingPlan(plan.bundle, device);
    try {
      const initial = await fresh.exportState({ optimizer: false });
      for (let t = 0; t < 4; t++) await used.step(batch(t));
      await used.importState(initial);
      expect(used.stepCount).toBe(0);
      expect(await used.step(batch(9))).toBe(await fresh.step(batch(9)));
      expect(await used.step(batch(10))).toBe(await fresh.step(batch(10)));
    } finally {
      fresh.destroy();
      used.destroy();
    }
  });

  test('mismatched files are refused with the tensor named', async () => {
    const g = classifier();
    const plan = await compileGraph(g, { training: { loss: 'loss', optimizer: { kind: 'sgd', lr: 0.1 } } });
    const session = await loadTrainingPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const state = decodeSafetensors(await session.exportState());
      const without = new Map(state.tensors);
      without.delete('w2');
      await expect(session.importState(encodeSafetensors(without), 'a.safetensors')).rejects.toThrow(/a\.safetensors: lacks parameters "w2"/);
      const wrongShape = new Map(state.tensors);
      wrongShape.set('b1', { dtype: 'F32', shape: [3], data: new Uint8Array(12) });
      await expect(session.importState(encodeSafetensors(wrongShape), 'b.safetensors')).rejects.toThrow(/"b1" is F32 \[3\]; the plan needs F32 \[12\]/);
      const extra = new Map(state.tensors);
      extra.set('w9', { dtype: 'F32', shape: [1], data: new Uint8Array(4) });
      await expect(session.importState(encodeSafetensors(extra), 'c.safetensors')).rejects.toThrow(/"w9" .*not parameters or optimizer state/);
      const partial = new Map(state.tensors);
      partial.delete('optimizer.w1.momentum_buffer');
      await expect(session.importState(encodeSafetensors(partial), 'd.safetensors')).rejects.toThrow(/lacks "optimizer.w1.momentum_buffer"/);
      await expect(session.importState(new Uint8Array(5), 'e.safetensors')).rejects.toThrow(/e\.safetensors: 5 bytes is too short/);
    } finally {
      session.destroy();
    }
  });
});

describe('training session errors', () => {
  test('hyper-parameters, inputs and plans without training', async () => {
    const g = classifier();
    const plan = await compileGraph(g, { training: { loss: 'loss', optimizer: { kind: 'sgd', lr: 0.1 } } });
    const device = (await sharedDevice()).device;
    const session = await loadTrainingPlan(plan.bundle, device);
    try {
      expect(session.hyper).toEqual({ lr: 0.1, momentum: 0, weightDecay: 0 });
      expect(() => session.setHyper({ beta1: 0.9 })).toThrow(/"beta1" is not a hyper-parameter of this plan's sgd optimizer; it has: lr, momentum, weightDecay/);
      expect(() => session.setHyper({ lr: Number.NaN })).toThrow(/"lr" must be a finite number/);
      await expect(session.step({ x: batch(0).x })).rejects.toThrow(/missing input "labels"/);
      expect(session.stepCount).toBe(0);
      await expect(session.step({ ...batch(0), 'optimizer.hyper': new Float32Array(8) })).rejects.toThrow(/filled by the training session/);
      expect(session.batchInputs.map((b) => b.name)).toEqual(['x', 'labels']);
      // labels feed a 4-class oneHot: the plan records 0..3, and the runtime refuses the rest
      expect(session.batchInputs[1].range).toEqual({ min: 0, max: 3 });
      const outOfRange = await session.step({ ...batch(0), labels: Int32Array.from([0, 1, 2, 4, 0, 0]) }).catch((e: unknown) => e);
      expect(outOfRange).toBeInstanceOf(PlanError);
      expect((outOfRange as PlanError).kind).toBe('bad-input');
      expect((outOfRange as PlanError).message).toBe('input "labels" (i32) holds 4 at element 3; it takes indices from 0 to 3');
      await expect(session.step({ ...batch(0), labels: Float32Array.from([0, 1, 2, 1.5, 0, 0]) })).rejects.toThrow('input "labels" (i32) holds 1.5 at element 3; it takes indices from 0 to 3');
      await expect(session.step({ ...batch(0), labels: Float32Array.from([0, -1, 2, 1, 0, 0]) })).rejects.toThrow('holds -1 at element 1');
      expect(session.stepCount).toBe(0);
    } finally {
      session.destroy();
    }
    const inference = await compileGraph(classifier());
    const error = await loadTrainingPlan(inference.bundle, device).catch((e) => e);
    expect(error).toBeInstanceOf(PlanError);
    expect(error.message).toMatch(/was not compiled for training/);
    // the same bundle still loads as a plain plan with both entries
    const plain = await loadPlan(plan.bundle, device);
    expect(Object.keys(plain.manifest.entryPoints)).toEqual(['run', 'train_step']);
    plain.destroy();
  });
});
