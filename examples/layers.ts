// Reusable layer helpers for the example models: plain functions over the graph builder.
import type { Graph, Tensor } from 'mnc';

/** x @ w + b with a fresh [inFeatures, outFeatures] weight and [outFeatures] bias. */
export function dense(g: Graph, x: Tensor, inFeatures: number, outFeatures: number, name: string): Tensor {
  const w = g.parameter(`${name}.w`, [inFeatures, outFeatures]);
  const b = g.parameter(`${name}.b`, [outFeatures], { init: { uniform: [-0.1, 0.1] } });
  return g.biasAdd(g.matmul(x, w), b);
}
