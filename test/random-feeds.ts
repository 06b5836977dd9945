// Seeded uniform values for every f32 input of a graph, for suites that compare a graph with
// its rewritten or compiled form on the same data.
import type { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { elementCount } from '../compiler/ir/types';

/** Uniform [-1, 1) values, all inputs from one stream. */
export function randomFeeds(g: Graph, seed: number): Record<string, Float32Array> {
  const u = uniformStream(seed);
  const feeds: Record<string, Float32Array> = {};
  for (const node of g.nodes) {
    if (node.op === 'input') feeds[node.name] = Float32Array.from({ length: elementCount(node.type.shape) }, () => 2 * u() - 1);
  }
  return feeds;
}

/**
 * Uniform values in `ranges[name]` (else `range`) for every input, each input from its own
 * stream (seed + 101·k for the k-th input), so adding an input leaves the others' values alone.
 */
export function inputFeeds(g: Graph, seed: number, ranges: Record<string, [number, number]> = {}, range: [number, number] = [-2, 2]): Record<string, Float32Array> {
  const feeds: Record<string, Float32Array> = {};
  for (const [k, node] of g.nodes.filter((n) => n.op === 'input').entries()) {
    const u = uniformStream(seed + 101 * k);
    const [lo, hi] = ranges[node.name] ?? range;
    feeds[node.name] = Float32Array.from({ length: elementCount(node.type.shape) }, () => lo + (hi - lo) * u());
  }
  return feeds;
}
