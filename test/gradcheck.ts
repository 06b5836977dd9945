// Gradient checking for test/gradients.test.ts: builds a case with its differentiable
// operands as parameters behind a pre-op, the op under test mid-graph, a post-op and a fixed
// random weighting down to a scalar loss; then compares autodiff's gradients with central
// finite differences of the float64 CPU reference and with the same gradients on the GPU.
import { expect } from 'vitest';
import { differentiate } from '../compiler/autodiff/differentiate';
import { compileGraph } from '../compiler/compile';
import { Graph, liveNodes, type Tensor } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret, materializeParameters } from '../compiler/ir/interpret';
import { opDef, type OpName } from '../compiler/ir/ops';
import { elementCount, type Shape, type WeightDType } from '../compiler/ir/types';
import { loadPlan } from '../runtime/session';
import { sharedDevice } from './gpu';

/** Values an operand takes where the op under test reads it (after the pre-op). */
export interface OperandSpec {
  /** uniform range (default [-2, 2]) */
  range?: [number, number];
  /** keep values out of (-gap, gap): away from the kinks of relu and |z| */
  gap?: number;
}

export interface CaseBuilder {
  g: Graph;
  /**
   * A differentiable operand: parameter `name` fed through the pre-op p·c + d (c, d random
   * constants), its initial values chosen so the op under test sees values in `spec`.
   */
  p(name: string, shape: Shape, spec?: OperandSpec): Tensor;
  /** An i32 input with fixed values (class labels). */
  labels(name: string, shape: Shape, values: number[]): Tensor;
  /** A frozen packed weight (Graph.packedParameter): no gradient, not perturbed by the finite differences. */
  packed(name: string, shape: Shape, dtype: WeightDType, bytes: Uint8Array): Tensor;
}

export interface GradCase {
  label: string;
  /** the op whose gradient rule the case checks; it must lie between a parameter and the loss */
  op: OpName;
  /** records the op under test (and whatever it needs); the result gets the post-op */
  build: (b: CaseBuilder) => Tensor;
  /** GPU tolerance |gpu - cpu| ≤ gpuAtol + GPU_RTOL·|cpu|; see the defaults in gradients.test.ts */
  gpuAtol?: number;
  /** parameters the loss does not depend on differentiably (through equal only): gradient absent, FD zero */
  noGradient?: string[];
}

export interface PreparedCase {
  graph: Graph;
  /** every parameter's name → its gradient's output name (absent: autodiff found no gradient) */
  gradients: Map<string, string | undefined>;
  /** f64 copies of the parameters' f32 initial values, perturbed in place by the FD check */
  parameters: Map<string, Float64Array>;
  /** frozen packed parameters' dequantized values, which the CPU reference reads but nothing perturbs */
  frozen: Map<string, Float32Array>;
  feeds: Record<string, Int32Array>;
  /** ops (with a grad rule) lying on a path from a parameter to the loss */
  differentiatedOps: Set<OpName>;
}

export const LOSS = 'loss';

/** FNV-1a of the label, so each case draws its own reproducible values. */
function seedOf(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Builds the case's graph, its loss and its backward pass (gradients as graph outputs). */
export function prepareCase(c: GradCase): PreparedCase {
  const g = new Graph(c.label.replace(/[^A-Za-z0-9_]+/g, '_'));
  const u = uniformStream(seedOf(c.label));
  const uniform = (n: number, lo: number, hi: number) => Float32Array.from({ length: n }, () => lo + (hi - lo) * u());
  const initial = new Map<string, Float32Array>();
  const feeds: Record<string, Int32Array> = {};
  const parameterIds: number[] = [];

  const builder: CaseBuilder = {
    g,
    p(name, shape, spec = {}) {
      const n = elementCount(shape);
      const [lo, hi] = spec.range ?? [-2, 2];
      const gap = spec.gap ?? 0;
      const seen = Float32Array.from({ length: n }, () => {
        let v = lo + (hi - lo) * u();
        // fold (-gap, gap) outwards; the range must reach past the gap on the side used
        if (Math.abs(v) < gap) v = v < 0 ? v - gap : v + gap;
        return v;
      });
      const scale = uniform(n, 0.5, 1.5);
      const shift = uniform(n, -0.5, 0.5);
      const init = seen.map((v, i) => (v - shift[i]) / scale[i]);
      const param = g.parameter(name, shape, { init });
      initial.set(name, init);
      parameterIds.push(param.id);
      return g.add(g.mul(param, g.constant(scale, shape)), g.constant(shift, shape));
    },
    labels(name, shape, values) {
      feeds[name] = Int32Array.from(values);
      return g.input(name, shape, 'i32');
    },
    packed(name, shape, dtype, bytes) {
      return g.packedParameter(name, shape, dtype, bytes);
    },
  };

  const y = c.build(builder);
  // post-op y + y²/4 (so dL/dy depends on y), then a fixed random weighting: dL/dy is not all ones
  const post = g.add(y, g.mul(g.mul(y, y), 0.25));
  const weights = uniform(elementCount(y.shape), 0.5, 1.5).map((w) => (u() < 0.5 ? -w : w));
  const loss = g.sum(g.reshape(g.mul(post, g.constant(weights, y.shape)), [-1]), 0);
  g.output(LOSS, loss);

  const grads = differentiate(g, loss, parameterIds);
  const gradients = new Map<string, string | undefined>();
  for (const id of parameterIds) {
    const name = g.nodes[id].name;
    const grad = grads.get(id);
    if (grad) g.output(`grad_${name}`, grad);
    gradients.set(name, grad ? `grad_${name}` : undefined);
  }

  // forward ops between a parameter and the loss: the rules differentiate had to call
  const fromParameters = new Set(parameterIds);
  for (const node of g.nodes.slice(0, loss.id + 1)) {
    if (node.inputs.some((i) => fromParameters.has(i))) fromParameters.add(node.id);
  }
  const toLoss = liveNodes(g, [loss.id]);
  const differentiatedOps = new Set<OpName>();
  for (const id of fromParameters) {
    const op = g.nodes[id].op;
    if (toLoss.has(id) && opDef(op).grad) differentiatedOps.add(op);
  }

  const parameters = new Map([...initial].map(([name, v]) => [name, Float64Array.from(v)]));
  const frozen = new Map([...materializeParameters(g, 0)].filter(([name]) => !initial.has(name)));
  return { graph: g, gradients, parameters, frozen, feeds, differentiatedOps };
}

/** Up to `max` element indices spread evenly over n, first and last included. */
export function sampleIndices(n: number, max = 64): number[] {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  return [...new Set(Array.from({ length: max }, (_, k) => Math.round((k * (n - 1)) / (max - 1))))];
}

/** What the CPU reference reads: the perturbable parameters (the same arrays) and the frozen ones. */
const allParameters = (prepared: PreparedCase) => new Map<string, ArrayLike<number>>([...prepared.parameters, ...prepared.frozen]);

/** The autodiff gradients on the CPU reference: parameter name → dL/dp (zeros where absent). */
export function cpuGradients(prepared: PreparedCase): Map<string, Float64Array> {
  const out = interpret(prepared.graph, prepared.feeds, allParameters(prepared));
  return new Map(
    [...prepared.gradients].map(([name, output]) => [
      name,
      output ? out[output] : new Float64Array(prepared.parameters.get(name)!.length),
    ]),
  );
}

/** The finite-difference check's step and tolerances (chosen and justified in gradients.test.ts). */
export interface FdOptions {
  /** h = step·max(1, |p|) */
  step: number;
  atol: number;
  rtol: number;
}

export interface FdResult {
  /** elements compared */
  checked: number;
  /** largest |ad - fd| seen, for the report */
  worst: number;
  /** largest |fd| seen per parameter, so a vacuous all-zero check shows */
  largest: Map<string, number>;
}

/**
 * Central differences of the loss on the CPU reference, element by element (a sample for
 * large parameters), against autodiff's gradients; fails with the first element outside
 * |ad - fd| ≤ atol + rtol·|fd|.
 */
export function checkFiniteDifferences(prepared: PreparedCase, ad: Map<string, Float64Array>, options: FdOptions): FdResult {
  const all = allParameters(prepared);
  const lossAt = () => interpret(prepared.graph, prepared.feeds, all, { outputs: [LOSS] })[LOSS][0];
  const result: FdResult = { checked: 0, worst: 0, largest: new Map() };
  for (const [name, values] of prepared.parameters) {
    const grad = ad.get(name)!;
    let largest = 0;
    for (const i of sampleIndices(values.length)) {
      const v = values[i];
      const h = options.step * Math.max(1, Math.abs(v));
      values[i] = v + h;
      const up = lossAt();
      values[i] = v - h;
      const down = lossAt();
      values[i] = v;
      const fd = (up - down) / (2 * h);
      const error = Math.abs(grad[i] - fd);
      result.worst = Math.max(result.worst, error);
      largest = Math.max(largest, Math.abs(fd));
      result.checked++;
      if (!(error <= options.atol + options.rtol * Math.abs(fd))) {
        expect.fail(`dL/d${name}[${i}]: autodiff ${grad[i]} vs central difference ${fd} (|diff| ${error.toExponential(2)} > ${options.atol} + ${options.rtol}·|fd|)`);
      }
    }
    result.largest.set(name, largest);
  }
  return result;
}

/**
 * Compiles the graph (loss and gradient outputs), runs it once on the shared GPU device and
 * compares every gradient with the CPU's: |gpu - cpu| ≤ atol + rtol·|cpu|. Returns the worst
 * |gpu - cpu|.
 */
export async function checkOnGpu(prepared: PreparedCase, cpu: Map<string, Float64Array>, atol: number, rtol: number): Promise<number> {
  const plan = await compileGraph(prepared.graph, { seed: 0 });
  const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
  try {
    const out = await session.run(prepared.feeds);
    let worst = 0;
    for (const [name, output] of prepared.gradients) {
      if (!output) continue;
      const actual = out[output];
      const expected = cpu.get(name)!;
      expect(actual?.length, `GPU output ${output}`).toBe(expected.length);
      for (let i = 0; i < expected.length; i++) {
        const error = Math.abs(actual[i] - expected[i]);
        worst = Math.max(worst, error);
        if (!(error <= atol + rtol * Math.abs(expected[i]))) {
          expect.fail(`dL/d${name}[${i}]: gpu ${actual[i]} vs cpu ${expected[i]} (|diff| ${error.toExponential(2)} > ${atol} + ${rtol}·|cpu|)`);
        }
      }
    }
    return worst;
  } finally {
    session.destroy();
  }
}
