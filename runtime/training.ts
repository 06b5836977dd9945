// Training sessions: a plan compiled with a loss and an optimizer has a 'train_step' entry
// that runs forward, backward and the update on the GPU. This wrapper keeps the step count
// and hyper-parameters, fills the plan's hyper vector each step, and moves parameters and
// optimizer state in and out as safetensors. Parameters never leave the GPU between steps.
import type { AdapterDescription } from './adapter';
import type { Manifest, TensorBinding, TrainingDesc } from '../schemas/manifest';
import { PlanError } from './errors';
import { decodeSafetensors, encodeSafetensors, type SafeTensor } from './safetensors';
import { openPlan, type LoadOptions, type PlanSession, type RunOptions, type TensorData, type WeightsInput } from './session';
import type { WeightsOptions, WeightsReport } from './weights';
import type { ChosenTarget } from './targets';
import type { TraceRecord } from './trace';

export interface TrainingSession {
  readonly manifest: Manifest;
  /** the plan's target this device runs, and why (Session.target) */
  readonly target: ChosenTarget;
  /** the adapter the device came from, and whether it is a software fallback (Session.adapter) */
  readonly adapter: AdapterDescription;
  /** what step() takes: the training entry's inputs other than the hyper vector */
  readonly batchInputs: TensorBinding[];
  /** optimizer steps taken so far (restored by importState) */
  readonly stepCount: number;
  /** current hyper-parameter values (settable ones and the plan's fixed ones) */
  readonly hyper: Readonly<Record<string, number>>;
  /** steps skipped so far because their loss or a gradient was not finite (step's `skipNonFinite`) */
  readonly skippedSteps: number;
  /**
   * One optimizer step on a batch; resolves to the loss before the update. When the loss or
   * a gradient is NaN or infinite the plan applies no update (parameters and optimizer state
   * stay as they were, the step is not counted) and step() rejects with PlanError
   * 'non-finite', or with `skipNonFinite` resolves to the loss and counts a skipped step.
   * `timeoutMs` as for Session.run.
   */
  step(batch: Record<string, TensorData>, options?: { skipNonFinite?: boolean; timeoutMs?: number }): Promise<number>;
  /** Changes hyper-parameters (learning rate, ...) for the following steps; no recompiling. */
  setHyper(values: Record<string, number>): void;
  /** Runs another entry (e.g. 'run' for inference) with the current parameters. */
  run(inputs: Record<string, TensorData>, entry?: string | RunOptions): Promise<Record<string, Float32Array>>;
  /** Parameters (and, unless `optimizer: false`, optimizer state and step count) as safetensors bytes. */
  exportState(options?: { optimizer?: boolean }): Promise<Uint8Array>;
  /** Session.loadWeights: parameters from checkpoint files by name; optimizer state and step count are left as they are. */
  loadWeights(files: WeightsInput | readonly WeightsInput[], options?: WeightsOptions): WeightsReport;
  /** Loads parameters, and optimizer state when the file has it (else state restarts at zero). */
  importState(bytes: Uint8Array, source?: string): Promise<void>;
  /** Whether steps and runs started from now on are traced (Session.tracing). */
  tracing: boolean;
  /** The records of the traced steps and runs finished so far (Session.takeTrace). */
  takeTrace(): TraceRecord[];
  destroy(): void;
}

export async function loadTrainingPlan(bytes: Uint8Array, device: GPUDevice, options: LoadOptions = {}): Promise<TrainingSession> {
  const session = await openPlan(bytes, device, options);
  if (!session.manifest.training) {
    session.destroy();
    throw new PlanError('bad-input', `plan "${session.manifest.model.name}" was not compiled for training (compile it with a loss and an optimizer)`);
  }
  return new Trainer(session, session.manifest.training);
}

const METADATA_FORMAT = 'mnplan-training-state';

class Trainer implements TrainingSession {
  readonly batchInputs: TensorBinding[];
  private steps = 0;
  private skipped = 0;
  private values: Record<string, number>;

  constructor(
    private readonly session: PlanSession,
    private readonly training: TrainingDesc,
  ) {
    const entry = session.manifest.entryPoints[training.entry];
    this.batchInputs = entry.inputs.filter((i) => i.name !== training.hyper.input);
    this.values = { ...training.hyper.defaults };
  }

  get manifest(): Manifest {
    return this.session.manifest;
  }
  get target(): ChosenTarget {
    return this.session.target;
  }
  get adapter(): AdapterDescription {
    return this.session.adapter;
  }
  get stepCount(): number {
    return this.steps;
  }
  get skippedSteps(): number {
    return this.skipped;
  }
  get hyper(): Readonly<Record<string, number>> {
    const { settable } = this.training.hyper;
    return Object.fromEntries(Object.entries(this.values).filter(([k]) => settable.includes(k)));
  }

  setHyper(values: Record<string, number>): void {
    const { settable } = this.training.hyper;
    for (const [key, value] of Object.entries(values)) {
      if (!settable.includes(key)) {
        throw new PlanError('bad-input', `"${key}" is not a hyper-parameter of this plan's ${this.training.optimizer} optimizer; it has: ${settable.join(', ')}`);
      }
      if (typeof value !== 'number' || !Number.isFinite(value)) throw new PlanError('bad-input', `hyper-parameter "${key}" must be a finite number; got ${String(value)}`);
    }
    Object.assign(this.values, values);
  }

  async step(batch: Record<string, TensorData>, options: { skipNonFinite?: boolean; timeoutMs?: number } = {}): Promise<number> {
    const { hyper } = this.training;
    if (typeof batch !== 'object' || batch === null) throw new PlanError('bad-input', `step() expects an object mapping ${this.batchInputs.map((i) => i.name).join(', ')} to typed arrays`);
    if (hyper.input in batch) throw new PlanError('bad-input', `"${hyper.input}" is filled by the training session; set hyper-parameters with setHyper()`);
    const t = this.steps + 1;
    // bias corrections for step t, as torch.optim.Adam computes them, and 1 - beta in
    // float64 (the kernels would lose 1e-5 of 1 - beta2 computing it from an f32 beta2)
    const [beta1, beta2] = [this.values.beta1 ?? 0, this.values.beta2 ?? 0];
    const derived: Record<string, number> = {
      biasCorrection1: 1 - beta1 ** t,
      biasCorrection2: 1 - beta2 ** t,
      oneMinusBeta1: 1 - beta1,
      oneMinusBeta2: 1 - beta2,
    };
    const vector = Float32Array.from(hyper.fields, (f) => derived[f] ?? this.values[f] ?? 0);
    const result = this.session.start({ ...batch, [hyper.input]: vector }, this.training.entry, { timeoutMs: options.timeoutMs }); // throws on bad input
    this.steps = t; // counted once queued, so overlapping step() calls get consecutive t
    const outputs = await result;
    const loss = outputs[this.training.loss][0];
    const check = this.training.check === undefined ? 0 : outputs[this.training.check][0];
    if (Number.isFinite(check)) return loss;
    // the update kernels saw the same check and wrote nothing: the step did not happen
    // (steps queued behind this one already took their bias corrections for t + 1)
    this.steps--;
    if (options.skipNonFinite) {
      this.skipped++;
      return loss;
    }
    const what = Number.isFinite(loss) ? `a gradient is not finite (the loss is ${loss}; loss + the gradients' sum is ${check})` : `the loss is ${loss}`;
    throw new PlanError('non-finite', `training step ${t} of plan "${this.manifest.model.name}": ${what}; the update was not applied (parameters and optimizer state are unchanged)`);
  }

  run(inputs: Record<string, TensorData>, entry: string | RunOptions = 'run'): Promise<Record<string, Float32Array>> {
    return this.session.run(inputs, entry);
  }

  loadWeights(files: WeightsInput | readonly WeightsInput[], options?: WeightsOptions): WeightsReport {
    return this.session.loadWeights(files, options);
  }

  async exportState(options: { optimizer?: boolean } = {}): Promise<Uint8Array> {
    const withOptimizer = options.optimizer ?? true;
    const named = this.namedBuffers(withOptimizer);
    const contents = await this.session.readBuffers(named.map((n) => n.buffer));
    const tensors = new Map<string, SafeTensor>(named.map((n) => [n.name, { dtype: 'F32', shape: n.shape, data: contents.get(n.buffer)! }]));
    const metadata: Record<string, string> = { format: METADATA_FORMAT, model: this.manifest.model.name };
    if (withOptimizer) {
      metadata.optimizer = this.training.optimizer;
      metadata.step = String(this.steps);
      metadata.hyper = JSON.stringify(this.hyper);
    }
    return encodeSafetensors(tensors, metadata);
  }

  async importState(bytes: Uint8Array, source = 'state file'): Promise<void> {
    const file = decodeSafetensors(bytes, source);
    const all = this.namedBuffers(true);
    const known = new Map(all.map((n) => [n.name, n]));
    const unknown = [...file.tensors.keys()].filter((name) => !known.has(name));
    if (unknown.length > 0) throw new PlanError('bad-input', `${source}: tensors ${unknown.map((n) => `"${n}"`).join(', ')} are not parameters or optimizer state of plan "${this.manifest.model.name}"`);
    const parameters = all.filter((n) => !n.state);
    const missing = parameters.filter((n) => !file.tensors.has(n.name));
    if (missing.length > 0) throw new PlanError('bad-input', `${source}: lacks parameters ${missing.map((n) => `"${n.name}"`).join(', ')}`);
    const state = all.filter((n) => n.state);
    const stateGiven = state.filter((n) => file.tensors.has(n.name));
    if (stateGiven.length > 0 && stateGiven.length < state.length) {
      const lacking = state.filter((n) => !file.tensors.has(n.name)).map((n) => `"${n.name}"`);
      throw new PlanError('bad-input', `${source}: has some optimizer state but lacks ${lacking.join(', ')}`);
    }
    for (const [name, t] of file.tensors) {
      const want = known.get(name)!;
      if (t.dtype !== 'F32' || t.shape.join() !== want.shape.join()) {
        throw new PlanError('bad-input', `${source}: "${name}" is ${t.dtype} [${t.shape.join(', ')}]; the plan needs F32 [${want.shape.join(', ')}]`);
      }
    }
    for (const n of all) {
      const t = file.tensors.get(n.name);
      this.session.writeBuffer(n.buffer, t ? t.data : new Uint8Array(n.byteLength));
    }
    const step = Number(file.metadata.step);
    this.steps = stateGiven.length > 0 && Number.isInteger(step) && step >= 0 ? step : 0;
  }

  get tracing(): boolean {
    return this.session.tracing;
  }
  set tracing(on: boolean) {
    this.session.tracing = on;
  }
  takeTrace(): TraceRecord[] {
    return this.session.takeTrace();
  }

  destroy(): void {
    this.session.destroy();
  }

  private namedBuffers(withOptimizer: boolean) {
    const byId = new Map(this.manifest.buffers.map((b) => [b.id, b]));
    const out: { name: string; buffer: number; shape: number[]; byteLength: number; state: boolean }[] = [];
    for (const p of this.training.parameters) {
      const b = byId.get(p.buffer)!;
      // packed weights (GGUF's blocks) are frozen: they stay as the plan or their file holds them
      if (b.dtype !== 'f32') continue;
      out.push({ name: p.name, buffer: p.buffer, shape: b.shape, byteLength: b.byteLength, state: false });
      if (!withOptimizer) continue;
      for (const s of p.state) out.push({ name: s.name, buffer: s.buffer, shape: b.shape, byteLength: b.byteLength, state: true });
    }
    return out;
  }
}
