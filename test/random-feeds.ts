// Seeded uniform [-1, 1) values for every f32 input of a graph, for suites that compare a
// graph with its rewritten or compiled form on the same data.
import type { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { elementCount } from '../compiler/ir/types';

export function randomFeeds(g: Graph, seed: number): Record<string, Float32Array> {
  const u = uniformStream(seed);
  const feeds: Record<string, Float32Array> = {};
  for (const node of g.nodes) {
    if (node.op === 'input') feeds[node.name] = Float32Array.from({ length: elementCount(node.type.shape) }, () => 2 * u() - 1);
  }
  return feeds;
}
