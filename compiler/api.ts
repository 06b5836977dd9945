// The public surface a model file imports as 'mnc': define a model with the graph builder.
//
//   import { model } from 'mnc';
//   export const mlp = model((g) => {
//     const x = g.input('x', [32, 784]);
//     const h = g.relu(g.biasAdd(g.matmul(x, g.parameter('w1', [784, 128])), g.parameter('b1', [128])));
//     return { logits: g.matmul(h, g.parameter('w2', [128, 10])) };
//   });
//
// With `train`, the plan also gets a 'train_step' entry (forward, backward, optimizer update):
//   model((g) => { …; return { logits, loss: g.crossEntropy(logits, labels) }; },
//         { train: { loss: 'loss', optimizer: { kind: 'adam', lr: 1e-3 } } });
import { Graph, type GraphOptions, type Tensor } from './ir/graph';
import { CompileError } from './ir/errors';
import type { TrainingSpec } from './autodiff/train';
import type { WeightStorage } from './ir/weight-storage';

export { Graph, Tensor } from './ir/graph';
export type { Init } from './ir/ops';
export type { Shape, DType } from './ir/types';
export type { OptimizerSpec, TrainingSpec } from './autodiff/train';
export type { WeightStorage } from './ir/weight-storage';

export type ModelOutputs = Record<string, Tensor>;

/** A model definition: a function that records a graph. Export it from a model file. */
export interface ModelDefinition {
  readonly kind: 'mnc.model';
  readonly build: (g: Graph) => ModelOutputs | void;
  readonly description?: string;
  /** compile a training plan too: which output is the loss, and the optimizer */
  readonly train?: TrainingSpec;
  /** entry points by name, each the outputs it returns (default: one entry 'run' returning every output) */
  readonly entries?: EntrySpec;
  /**
   * how weights read only by products and embedding gathers are held: f16 or bf16 halves their
   * bytes (inference plans; `mnc compile --weight-storage` overrides it). Default f32.
   */
  readonly weightStorage?: WeightStorage;
}

/**
 * Named entry points, each returning some of the model's outputs; a language model's
 * { prefill: ['prefill_logits'], decode: ['logits'] } runs one half of its graph per call.
 */
export type EntrySpec = Readonly<Record<string, readonly string[]>>;

export function model(
  build: (g: Graph) => ModelOutputs | void,
  options: { description?: string; train?: TrainingSpec; entries?: EntrySpec; weightStorage?: WeightStorage } = {},
): ModelDefinition {
  return {
    kind: 'mnc.model',
    build,
    description: options.description,
    train: options.train,
    ...(options.entries ? { entries: options.entries } : {}),
    ...(options.weightStorage ? { weightStorage: options.weightStorage } : {}),
  };
}

export function isModelDefinition(v: unknown): v is ModelDefinition {
  return typeof v === 'object' && v !== null && (v as ModelDefinition).kind === 'mnc.model';
}

/** Records a model's graph; returned tensors become outputs in key order. */
export function buildGraph(name: string, definition: ModelDefinition, options: GraphOptions = {}): Graph {
  const g = new Graph(name, options);
  const returned = definition.build(g);
  if (returned !== undefined) {
    if (typeof returned !== 'object' || returned === null) {
      throw new CompileError('model', `model '${name}' must return an object of named output tensors, or nothing`);
    }
    for (const [key, t] of Object.entries(returned)) g.output(key, t);
  }
  if (g.outputs.length === 0) {
    throw new CompileError('model', `model '${name}' has no outputs: return { name: tensor } or call g.output(name, tensor)`);
  }
  return g;
}
