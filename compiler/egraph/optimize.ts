// The optimization stage: Graph (after autodiff, with its roots) → an equivalent Graph with
// fewer, larger kernels. Today: pointwise fusion; the e-graph rules run before it.
import type { Graph } from '../ir/graph';
import { fusePointwise } from './fuse-pointwise';

export interface OptimizeReport {
  nodesBefore: number;
  nodesAfter: number;
  /** fused kernels and the ops each replaced */
  fused: { node: string; ops: string[] }[];
  milliseconds: number;
}

export interface OptimizedGraph {
  graph: Graph;
  /** old node id → new node id (-1: folded away) */
  map: (id: number) => number;
  report: OptimizeReport;
}

/** `roots`: nodes run for their effect besides the outputs (optimizer updates). */
export function optimizeGraph(graph: Graph, roots: readonly number[] = []): OptimizedGraph {
  const started = performance.now();
  const fused = fusePointwise(graph, roots);
  return {
    graph: fused.graph,
    map: fused.map,
    report: { nodesBefore: graph.nodes.length, nodesAfter: fused.graph.nodes.length, fused: fused.groups, milliseconds: performance.now() - started },
  };
}
