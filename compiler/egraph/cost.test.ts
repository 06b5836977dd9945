// The cost model counts each op's FLOPs as its op table entry states them (`flops`), one
// per output element where it states none.
import { describe, expect, it } from 'vitest';
import { Graph } from '../ir/graph';
import { opDef } from '../ir/ops';
import { classTypes, DEVICE_COST, kernelCost } from './cost';
import { EGraph } from './egraph';
import { parseEgg } from './parse';
import { EggProgram } from './program';
import { graphToEGraph, termDeclarations, TermReader } from './terms';

/** The cost model's figure for each node of `g`, by name. */
function costs(g: Graph): Map<string, number> {
  const eg = new EGraph();
  new EggProgram(eg).run(parseEgg(termDeclarations(), 'terms.egg'));
  const classOf = graphToEGraph(g, eg);
  eg.rebuild();
  const reader = new TermReader(eg);
  const types = classTypes(eg, reader, new Map(g.nodes.map((n) => [classOf[n.id], n.type])));
  const cost = kernelCost(eg, reader, types);
  return new Map(
    g.nodes.map((n) => {
      const cls = eg.find(classOf[n.id]);
      const node = eg.nodesByClass().get(cls)!.find((e) => reader.decode(e)?.op === n.op)!;
      return [n.name, cost(node, cls)];
    }),
  );
}

const bytes = (...counts: number[]) => (4 * counts.reduce((a, b) => a + b, 0)) / DEVICE_COST.bytesPerMicro;
const micros = (flops: number, ...elements: number[]) => DEVICE_COST.dispatchMicros + bytes(...elements) + flops / DEVICE_COST.flopsPerMicro;

describe('FLOPs from the op table', () => {
  it('a product costs 2·M·N·K, a pointwise op one per element, a reduction one per element reduced', () => {
    const g = new Graph('costs');
    const a = g.input('a', [64, 32]);
    const p = g.matmul(a, g.input('b', [32, 16]));
    const r = g.relu(p);
    const s = g.sum(r, -1);
    const t = g.fusedMatmul(a, g.input('c', [64, 16]), { transposeA: true });
    for (const [name, out] of [['p', p], ['r', r], ['s', s], ['t', t]] as const) g.output(name, out);
    const c = costs(g);
    expect(c.get(p.name)).toBeCloseTo(micros(2 * 64 * 16 * 32, 64 * 32, 32 * 16, 64 * 16), 9);
    expect(c.get(r.name)).toBeCloseTo(micros(64 * 16, 64 * 16, 64 * 16), 9);
    expect(c.get(s.name)).toBeCloseTo(micros(64 * 16, 64 * 16, 64), 9);
    // Aᵀ·C: K is A's first axis
    expect(c.get(t.name)).toBeCloseTo(micros(2 * 32 * 16 * 64, 64 * 32, 64 * 16, 32 * 16), 9);
  });

  it('attention counts its two products over the query-key pairs it scores', () => {
    const [q, k, out] = [{ shape: [2, 8, 16], dtype: 'f32' as const }, { shape: [2, 12, 16], dtype: 'f32' as const }, { shape: [2, 8, 4], dtype: 'f32' as const }];
    const flops = opDef('attention').flops!;
    expect(flops([q, k], { scale: 1 }, out)).toBe(2 * 2 * 8 * 12 * (16 + 4));
    // causal: query i sees keys 0 .. i + 4, 5 + 6 + ... + 12 = 68 of them in all
    expect(flops([q, k], { scale: 1, causal: true }, out)).toBe(2 * 2 * 68 * (16 + 4));
  });
});
