// The training stage: Graph + loss name + optimizer → the same graph extended with the
// backward pass and one in-place optimizer update per trainable parameter, so a whole
// training step (forward, backward, update) is one plan entry point.
import { CompileError } from '../ir/errors';
import { attrsOf, type Graph, type GraphOutput } from '../ir/graph';
import { HYPER_FIELDS, type HyperField } from '../ir/ops';
import { elementCount, formatShape } from '../ir/types';
import { differentiate } from './differentiate';

/** Optimizers as PyTorch defines them (torch.optim.SGD, Adam, AdamW), defaults included. */
export type OptimizerSpec =
  | { kind: 'sgd'; lr: number; momentum?: number; weightDecay?: number }
  | { kind: 'adam' | 'adamw'; lr: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number };

export type OptimizerKind = OptimizerSpec['kind'];

export interface TrainingSpec {
  /** the model output to minimise: one f32 value */
  loss: string;
  optimizer: OptimizerSpec;
}

export interface TrainedParameter {
  name: string;
  node: number;
  gradient: number;
  update: number;
  /** optimizer state buffers of this parameter, by PyTorch's state_dict names */
  state: { node: number; name: string; slot: 'momentum_buffer' | 'exp_avg' | 'exp_avg_sq' }[];
}

export interface TrainingGraph {
  graph: Graph;
  loss: GraphOutput;
  optimizer: OptimizerKind;
  /** the f32 vector input the update kernels read, its field order and starting values */
  hyper: { node: number; name: string; fields: readonly HyperField[]; settable: HyperField[]; defaults: Record<HyperField, number> };
  parameters: TrainedParameter[];
  /** trainable parameters the loss does not depend on: they get no update */
  unused: string[];
  /** the update nodes, which a training step runs for their effect */
  updates: number[];
  /**
   * One value, loss + the sum of every gradient: finite exactly when they all are (short of
   * the sum overflowing f32, which only gradients near 1e38 do). Every update reads it and
   * changes nothing when it is not, and the runtime reads it beside the loss.
   */
  check: GraphOutput;
}

export const CHECK_OUTPUT = 'optimizer.check';

export const HYPER_INPUT = 'optimizer.hyper';

const SETTABLE: Record<OptimizerKind, HyperField[]> = {
  sgd: ['lr', 'momentum', 'weightDecay'],
  adam: ['lr', 'beta1', 'beta2', 'eps', 'weightDecay'],
  adamw: ['lr', 'beta1', 'beta2', 'eps', 'weightDecay'],
};

function hyperDefaults(spec: OptimizerSpec): Record<HyperField, number> {
  const base: Record<HyperField, number> = {
    lr: spec.lr,
    beta1: 0,
    beta2: 0,
    eps: 0,
    weightDecay: 0,
    momentum: 0,
    biasCorrection1: 1,
    biasCorrection2: 1,
    oneMinusBeta1: 1,
    oneMinusBeta2: 1,
  };
  if (spec.kind === 'sgd') return { ...base, momentum: spec.momentum ?? 0, weightDecay: spec.weightDecay ?? 0 };
  const [beta1, beta2] = [spec.beta1 ?? 0.9, spec.beta2 ?? 0.999];
  return {
    ...base,
    beta1,
    beta2,
    oneMinusBeta1: 1 - beta1,
    oneMinusBeta2: 1 - beta2,
    eps: spec.eps ?? 1e-8,
    weightDecay: spec.weightDecay ?? (spec.kind === 'adamw' ? 0.01 : 0),
  };
}

function checkSpec(spec: TrainingSpec): void {
  const { optimizer } = spec;
  if (!optimizer || !['sgd', 'adam', 'adamw'].includes(optimizer.kind)) {
    throw new CompileError('model', `optimizer must be one of sgd, adam, adamw; got ${JSON.stringify(optimizer?.kind)}`);
  }
  for (const [key, value] of Object.entries(optimizer)) {
    if (key !== 'kind' && (typeof value !== 'number' || !Number.isFinite(value))) {
      throw new CompileError('model', `optimizer ${optimizer.kind}: '${key}' must be a finite number; got ${JSON.stringify(value)}`);
    }
  }
}

export function appendTraining(graph: Graph, spec: TrainingSpec): TrainingGraph {
  checkSpec(spec);
  const loss = graph.outputs.find((o) => o.name === spec.loss);
  if (!loss) {
    throw new CompileError('model', `the loss '${spec.loss}' is not an output of model '${graph.name}' (outputs: ${graph.outputs.map((o) => o.name).join(', ')})`);
  }
  const lossNode = graph.nodes[loss.node];
  if (elementCount(lossNode.type.shape) !== 1) {
    throw new CompileError(
      'autodiff',
      `the loss output '${loss.name}' must be one value; it has shape ${formatShape(lossNode.type.shape)} (reduce it with g.meanAll or g.sum)`,
      lossNode.loc,
      lossNode.op,
    );
  }
  const trainable = graph.nodes.filter((n) => n.op === 'parameter' && attrsOf(n, 'parameter').trainable);
  if (trainable.length === 0) throw new CompileError('model', `model '${graph.name}' has no trainable parameters`);

  const gradients = differentiate(graph, graph.tensor(loss.node), trainable.map((n) => n.id));
  const defaults = hyperDefaults(spec.optimizer);
  const hyper = graph.input(HYPER_INPUT, [HYPER_FIELDS.length]);
  const parameters: TrainedParameter[] = [];
  const unused: string[] = [];
  // NaN and ±Inf survive a sum (Inf - Inf is NaN), so one reduction per gradient detects them
  let check = graph.reshape(graph.tensor(loss.node), [1]);
  for (const node of trainable) {
    const gradient = gradients.get(node.id);
    if (gradient) check = graph.add(check, graph.sum(graph.reshape(gradient, [-1]), 0));
  }
  // Updates come after every backward node, so each parameter is read before it is written.
  for (const node of trainable) {
    const gradient = gradients.get(node.id);
    if (!gradient) {
      unused.push(node.name);
      continue;
    }
    const p = graph.tensor(node.id);
    const kind = spec.optimizer.kind;
    const update = graph.at(node.loc, () => {
      if (kind === 'sgd') {
        const velocity = graph.state(`optimizer.${node.name}.momentum_buffer`, node.type.shape);
        return { t: graph.sgdUpdate(p, gradient, velocity, hyper, check), state: [{ node: velocity.id, name: velocity.name, slot: 'momentum_buffer' as const }] };
      }
      const m = graph.state(`optimizer.${node.name}.exp_avg`, node.type.shape);
      const v = graph.state(`optimizer.${node.name}.exp_avg_sq`, node.type.shape);
      return {
        t: graph.adamUpdate(p, gradient, m, v, hyper, check, { decoupled: kind === 'adamw' }),
        state: [
          { node: m.id, name: m.name, slot: 'exp_avg' as const },
          { node: v.id, name: v.name, slot: 'exp_avg_sq' as const },
        ],
      };
    });
    parameters.push({ name: node.name, node: node.id, gradient: gradient.id, update: update.t.id, state: update.state });
  }
  return {
    graph,
    loss,
    optimizer: spec.optimizer.kind,
    hyper: { node: hyper.id, name: HYPER_INPUT, fields: HYPER_FIELDS, settable: SETTABLE[spec.optimizer.kind], defaults },
    parameters,
    unused,
    updates: parameters.map((p) => p.update),
    check: { name: CHECK_OUTPUT, node: check.id },
  };
}

/** The same training description for a rebuilt graph, given the old → new node id map. */
export function remapTraining(training: TrainingGraph, graph: Graph, map: (id: number) => number): TrainingGraph {
  const at = (id: number) => {
    const mapped = map(id);
    if (mapped < 0) throw new Error(`remapTraining: node ${id} did not survive the rewrite`);
    return mapped;
  };
  return {
    ...training,
    graph,
    loss: { name: training.loss.name, node: at(training.loss.node) },
    hyper: { ...training.hyper, node: at(training.hyper.node) },
    parameters: training.parameters.map((p) => ({
      ...p,
      node: at(p.node),
      gradient: map(p.gradient),
      update: at(p.update),
      state: p.state.map((s) => ({ ...s, node: at(s.node) })),
    })),
    updates: training.updates.map(at),
    check: { name: training.check.name, node: at(training.check.node) },
  };
}
