// The pipeline as one function: Graph → lowered kernels → naga-validated shaders with
// their SPIR-V/MSL/HLSL translations → buffer and dispatch plan → .mnplan bytes.
// Each stage is its own module; this file only threads values from one to the next.
import type { Graph } from './ir/graph';
import type { Manifest } from '../schemas/manifest';

export interface CompileOptions {
  /** seed for parameter initial values (default 0) */
  seed?: number;
  /** where the model came from, recorded in the manifest (e.g. 'examples/mlp.ts#mlp') */
  source?: string;
}

export interface CompiledPlan {
  bundle: Uint8Array;
  manifest: Manifest;
}

export async function compileGraph(graph: Graph, options: CompileOptions = {}): Promise<CompiledPlan> {
  void graph;
  void options;
  throw new Error('compileGraph: being written');
}
