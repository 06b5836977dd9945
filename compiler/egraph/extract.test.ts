import { describe, expect, it } from 'vitest';
import { EGraph } from './egraph';
import { type Term, dagCostOf, extract, formatTerm, termOf } from './extract';
import { parseEgg } from './parse';
import { EggProgram } from './program';

function program(text: string): EggProgram {
  const prog = new EggProgram(new EGraph());
  prog.run(parseEgg(text, 'x.egg'));
  return prog;
}

describe('extract', () => {
  it('picks the cheapest e-node per class by tree cost', () => {
    const prog = program(`
      (datatype Math (Num i64) (Var String) (Add Math Math) (Mul Math Math) (Shl Math i64 :cost 2))
      (let e (Mul (Var "x") (Num 2)))
      (union e (Add (Var "x") (Var "x")))
      (union e (Shl (Var "x") 1))`);
    const eg = prog.eg;
    const e = prog.global('e') as number;
    const ex = extract(eg, [e]);
    expect(ex.mode).toBe('tree');
    expect(ex.cost).toBe(3); // Mul 1 + Var 1 + Num 1, Add 1 + 1 + 1 (tie), Shl 2 + 1
    expect(['(Mul (Var "x") (Num 2))', '(Add (Var "x") (Var "x"))']).toContain(formatTerm(eg, ex, e));
    // a cost function can change the answer: multiplication is dear
    const dear = extract(eg, [e], { cost: (n) => (n.head === 'Mul' ? 10 : n.head === 'Shl' ? 1 : 1) });
    expect(formatTerm(eg, dear, e)).toBe('(Shl (Var "x") 1)');
    expect(dear.cost).toBe(2);
    expect(dear.choices.get(eg.find(e))).toEqual({ head: 'Shl', args: [eg.add('Var', ['x']), 1] });
  });

  it('does not hide a product the rest of the graph needs inside a fused e-node (whole-DAG moves)', () => {
    // a = (Act m) or (Fused x y); m = (Mul x y) costs 10, Fused 10.5, Act 1. Priced on its own,
    // a takes Fused (10.5 + 2 < 1 + 10 + 2); but the root also needs m, so Act(m) shares it:
    // Pair(Act m, m) = 1 + 1 + 10 + 2 = 14 against Pair(Fused x y, m) = 1 + 10.5 + 10 + 2 = 23.5.
    const prog = program(`
      (datatype E (X) (Y) (Mul E E :cost 10) (Fused E E) (Act E) (Pair E E))
      (let m (Mul (X) (Y)))
      (let a (Act m))
      (union a (Fused (X) (Y)))
      (let r (Pair a m))`);
    const eg = prog.eg;
    const cost = (n: { head: string }) => (n.head === 'Fused' ? 10.5 : n.head === 'Mul' ? 10 : 1);
    const r = prog.global('r') as number;
    const alone = extract(eg, [prog.global('a') as number], { mode: 'dag', cost });
    expect(formatTerm(eg, alone, prog.global('a') as number)).toBe('(Fused (X) (Y))');
    const ex = extract(eg, [r], { mode: 'dag', cost });
    expect(formatTerm(eg, ex, r)).toBe('(Pair (Act (Mul (X) (Y))) (Mul (X) (Y)))');
    expect(ex.cost).toBe(14);
  });

  it('counts shared subterms once in DAG mode, where tree cost would not pick them', () => {
    // x = (Two (P s) (Q s)) with s costing 10, or (Alt) costing 20.
    // tree: Two = 1 + (1+10) + (1+10) = 23 > Alt 20.  DAG: Two = 1+1+1+10 = 13 < 20.
    const prog = program(`
      (datatype E (Shared :cost 10) (P E) (Q E) (Two E E) (Alt :cost 20) (Root E E))
      (let s (Shared))
      (let x (Two (P s) (Q s)))
      (union x (Alt))
      (let r (Root x s))`);
    const eg = prog.eg;
    const x = prog.global('x') as number;
    const tree = extract(eg, [x], { mode: 'tree' });
    const dag = extract(eg, [x], { mode: 'dag' });
    expect(formatTerm(eg, tree, x)).toBe('(Alt)');
    expect(tree.cost).toBe(20);
    expect(formatTerm(eg, dag, x)).toBe('(Two (P (Shared)) (Q (Shared)))');
    expect(dag.cost).toBe(13);
    expect(dagCostOf(eg, tree)).toBe(20);
    expect(dagCostOf(eg, dag)).toBe(13);
    // the shared class is one Term object, reached twice
    const t = termOf(eg, dag, x);
    const [p, q] = t.args as readonly Term[];
    expect(p!.args[0]).toBe(q!.args[0]);
    // several roots: what they share is counted once
    const r = prog.global('r') as number;
    const both = extract(eg, [r, x], { mode: 'dag' });
    expect(both.cost).toBe(1 + 13);
    expect(extract(eg, [r, x], { mode: 'tree' }).cost).toBe(1 + 20 + 10 + 20);
  });

  it('is never worse in DAG mode than the tree choice, on random e-graphs', () => {
    for (let seed = 1; seed <= 5; seed++) {
      const prog = program(`
        (datatype M (L i64) (U M) (B M M))
        (rewrite (B a b) (B b a))
        (rewrite (U (U a)) (B a a))
        (rewrite (B a a) (U (U a)))`);
      const eg = prog.eg;
      let s = seed;
      const rnd = (): number => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
      const nodes: number[] = [];
      for (let i = 0; i < 200; i++) {
        const k = rnd();
        if (nodes.length < 5 || k < 0.2) nodes.push(eg.add('L', [Math.floor(rnd() * 10)]));
        else if (k < 0.5) nodes.push(eg.add('U', [nodes[Math.floor(rnd() * nodes.length)]!]));
        else nodes.push(eg.add('B', [nodes[Math.floor(rnd() * nodes.length)]!, nodes[Math.floor(rnd() * nodes.length)]!]));
      }
      for (let i = 0; i < 10; i++) eg.union(nodes[Math.floor(rnd() * nodes.length)]!, nodes[Math.floor(rnd() * nodes.length)]!);
      prog.runRules({ iterationLimit: 4 });
      const roots = nodes.slice(-20);
      const tree = extract(eg, roots, { mode: 'tree' });
      const dag = extract(eg, roots, { mode: 'dag' });
      expect(dag.cost).toBe(dagCostOf(eg, dag));
      expect(dag.cost).toBeLessThanOrEqual(dagCostOf(eg, tree));
      for (const r of roots) formatTerm(eg, dag, r); // acyclic and complete
    }
  });

  it('skips cyclic e-nodes and refuses classes with no finite term', () => {
    const prog = program(`
      (datatype M (L) (F M))
      (let a (L))
      (let fa (F a))
      (union a fa)`);
    const eg = prog.eg;
    const a = prog.global('a') as number;
    const ex = extract(eg, [a], { mode: 'dag' });
    expect(formatTerm(eg, ex, a)).toBe('(L)');
    const loop = program('(datatype M (F M))');
    // a class whose only e-node is F of itself: build it by hand
    const e2 = loop.eg;
    e2.declareFunction({ name: 'Leaf', kind: 'constructor', args: [], output: 'M' });
    const leaf = e2.add('Leaf', []);
    const f = e2.add('F', [leaf]);
    const ff = e2.add('F', [f]);
    e2.union(f, ff); // {F(leaf), F(F(leaf))}: F(f) is a cycle, F(leaf) is not
    expect(formatTerm(e2, extract(e2, [f]), f)).toBe('(F (Leaf))');
    e2.delete('F', [leaf]);
    expect(() => extract(e2, [f])).toThrow(/has no finite term/);
  });

  it('builds and prints deep terms without exhausting the stack', () => {
    const prog = program('(datatype M (L) (F M))');
    const eg = prog.eg;
    let t = eg.add('L', []);
    for (let i = 0; i < 50_000; i++) t = eg.add('F', [t]);
    for (const mode of ['tree', 'dag'] as const) {
      const ex = extract(eg, [t], { mode, dagClassLimit: 1000 });
      expect(ex.cost).toBe(50_001);
      const text = formatTerm(eg, ex, t);
      expect(text.length).toBe(50_000 * 3 + 3 + 50_000);
    }
  });
});
