// One matmul problem as a graph, shared by bench/matmul.ts and test/matmul-variants.test.ts:
// A [batch?, M, K] (or stored [K, M] when read transposed) times B [K, N] (or [N, K]), with
// an optional bias + gelu + residual epilogue, as a plain matmul or a fusedMatmul node.
import { Graph, type Tensor } from '../compiler/ir/graph';
import type { Node } from '../compiler/ir/graph';
import { opDef, type MatmulForm } from '../compiler/ir/ops';
import { matmulProblem, type MatmulProblem } from '../compiler/lower/matmul';

export interface MatmulCase {
  m: number;
  k: number;
  n: number;
  transposeA?: boolean;
  transposeB?: boolean;
  /** bias + gelu + residual in the epilogue */
  fused?: boolean;
  batch?: number;
}

export function matmulCaseGraph(c: MatmulCase, name = `mm_${c.m}x${c.k}x${c.n}`): { g: Graph; y: Tensor } {
  const g = new Graph(name);
  const lead = c.batch ? [c.batch] : [];
  const a = g.input('a', [...lead, ...(c.transposeA ? [c.k, c.m] : [c.m, c.k])]);
  const b = g.input('b', c.transposeB ? [c.n, c.k] : [c.k, c.n]);
  const y =
    c.fused || c.transposeA || c.transposeB
      ? g.fusedMatmul(a, b, {
          transposeA: c.transposeA,
          transposeB: c.transposeB,
          ...(c.fused ? { activation: 'gelu' as const, bias: g.input('bias', [c.n]), residual: g.input('r', [...lead, c.m, c.n]) } : {}),
        })
      : g.matmul(a, b);
  g.output('y', y);
  return { g, y };
}

/** The lowering's description of a matmul node, with its fused form read from the op table as lowering does. */
export function problemOfNode(g: Graph, node: Node, name: string): MatmulProblem {
  const operands = node.inputs.map((i) => g.nodes[i].type);
  const lowering = opDef(node.op).lowering as { form?: (i: unknown, a: unknown, o: unknown) => MatmulForm };
  return matmulProblem(node, operands, name, lowering.form?.(operands, node.attrs, node.type));
}
