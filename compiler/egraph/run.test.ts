import { describe, expect, it } from 'vitest';
import { EGraph } from './egraph';
import { parseEgg } from './parse';
import { EggProgram } from './program';
import { type RunReport, formatReport } from './run';

function program(text: string): EggProgram {
  const prog = new EggProgram(new EGraph());
  prog.run(parseEgg(text, 'run.egg'));
  return prog;
}

// A rule that never saturates: every new number makes the next one.
const COUNTER = `
(datatype N (Num i64))
(rule ((Num n)) ((Num (+ n 1))) :name "succ")
(Num 0)`;

describe('runRules: limits and stop reasons', () => {
  it('stops at the iteration limit', () => {
    const prog = program(COUNTER);
    const r = prog.runRules({ iterationLimit: 3 });
    expect(r.stopReason).toBe('iteration-limit');
    expect(r.iterations.length).toBe(3);
    expect(prog.eg.nodeCount).toBe(4);
    expect(r.iterations.map((i) => i.rulesFired)).toEqual([{ succ: 1 }, { succ: 1 }, { succ: 1 }]); // semi-naive
  });

  it('stops at the node limit', () => {
    const prog = program(COUNTER);
    const r = prog.runRules({ iterationLimit: 1000, nodeLimit: 20 });
    expect(r.stopReason).toBe('node-limit');
    expect(prog.eg.nodeCount).toBe(21);
    expect(r.iterations.length).toBe(20);
  });

  it('stops at the node limit inside an iteration that blows up', () => {
    const prog = program(`
      (datatype N (Num i64) (Pair N N))
      (rule ((= a (Num x)) (= b (Num y))) ((Pair a b)))
      ${Array.from({ length: 200 }, (_, i) => `(Num ${i})`).join(' ')}`);
    const r = prog.runRules({ nodeLimit: 1000 });
    expect(r.stopReason).toBe('node-limit');
    expect(r.iterations.length).toBe(1);
    // checked every 256 matches: the limit is overshot by at most that
    expect(prog.eg.nodeCount).toBeGreaterThan(1000);
    expect(prog.eg.nodeCount).toBeLessThan(1000 + 257);
    // the interrupted rule keeps its cursor: running again finishes its matches
    const again = prog.runRules({ nodeLimit: 1e9 });
    expect(again.stopReason).toBe('saturated');
    expect(prog.eg.nodeCount).toBe(200 + 200 * 200);
  });

  it('stops at the time limit', () => {
    const prog = program(COUNTER);
    const r = prog.runRules({ iterationLimit: 1e9, nodeLimit: 1e9, timeLimitMs: 30 });
    expect(r.stopReason).toBe('time-limit');
    expect(r.iterations.length).toBeGreaterThan(1);
    expect(r.totalMs).toBeGreaterThanOrEqual(30);
  });

  it('reports saturation, and rules fired per iteration', () => {
    const prog = program(`
      (datatype Math (Num i64) (Add Math Math))
      (rewrite (Add a b) (Add b a) :name "comm")
      (rewrite (Add (Num a) (Num b)) (Num (+ a b)) :name "fold")
      (Add (Num 1) (Add (Num 2) (Num 3)))`);
    const r = prog.runRules({ iterationLimit: 50 });
    expect(r.stopReason).toBe('saturated');
    const last = r.iterations[r.iterations.length - 1]!;
    expect(last.rulesFired).toEqual({});
    expect(r.iterations[0]!.rulesFired).toEqual({ comm: 2, fold: 1 });
    expect(last.nodes).toBe(prog.eg.nodeCount);
    expect(last.classes).toBe(prog.eg.classCount);
    for (const it of r.iterations) {
      for (const t of [it.searchMs, it.applyMs, it.rebuildMs]) expect(t).toBeGreaterThanOrEqual(0);
    }
  });

  it('formats a readable report', () => {
    const report: RunReport = {
      stopReason: 'saturated',
      totalMs: 12.34,
      iterations: [
        { rulesFired: { comm: 2, fold: 1 }, nodes: 7, classes: 4, searchMs: 1.25, applyMs: 0.5, rebuildMs: 0.25 },
        { rulesFired: {}, nodes: 7, classes: 4, searchMs: 0.1, applyMs: 0, rebuildMs: 0 },
      ],
    };
    expect(formatReport(report)).toBe(
      [
        'stopped: saturated after 2 iterations (12.3 ms)',
        'iter  nodes  classes  search ms  apply ms  rebuild ms  matches',
        '----  -----  -------  ---------  --------  ----------  -------',
        '   1      7        4        1.3       0.5         0.3        3',
        '   2      7        4        0.1       0.0         0.0        0',
        '',
        'rule  matches',
        '----  -------',
        'comm        2',
        'fold        1',
      ].join('\n'),
    );
  });
});

describe('runRules: semi-naive matching', () => {
  // Random terms under commutativity, identities and constant folding: the semi-naive
  // run must reach exactly the e-graph the naive run (every match, every iteration) reaches.
  const RULES = `
    (datatype Math (Num i64) (Var String) (Add Math Math) (Mul Math Math))
    (function const (Math) i64 :merge (min old new))
    (rewrite (Add a b) (Add b a))
    (rewrite (Mul a b) (Mul b a))
    (rewrite (Mul x (Num 1)) x)
    (rewrite (Add x (Num 0)) x)
    (rewrite (Mul a (Add b c)) (Add (Mul a b) (Mul a c)))
    (rule ((= e (Num n))) ((set (const e) n)))
    (rule ((= e (Add a b)) (= (const a) x) (= (const b) y)) ((set (const e) (+ x y))))
    (rule ((= e (Mul a b)) (= (const a) x) (= (const b) y)) ((set (const e) (* x y))))
    (rule ((= (const e) n)) ((union e (Num n))))`;

  function build(prog: EggProgram, seed: number): number[] {
    const eg = prog.eg;
    let s = seed;
    const rnd = (): number => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
    const term = (d: number): number => {
      if (d === 0 || rnd() < 0.25) return rnd() < 0.5 ? eg.add('Var', [`v${Math.floor(rnd() * 3)}`]) : eg.add('Num', [Math.floor(rnd() * 3)]);
      return eg.add(rnd() < 0.5 ? 'Add' : 'Mul', [term(d - 1), term(d - 1)]);
    };
    return Array.from({ length: 30 }, () => term(3));
  }

  for (const seed of [1, 2, 3]) {
    it(`reaches the same e-graph as naive matching (seed ${seed})`, () => {
      const semi = program(RULES);
      const naive = program(RULES);
      const a = build(semi, seed);
      const b = build(naive, seed);
      const rs = semi.runRules({ iterationLimit: 6 });
      const rn = naive.runRules({ iterationLimit: 6, seminaive: false });
      expect(rs.iterations.map((i) => [i.nodes, i.classes])).toEqual(rn.iterations.map((i) => [i.nodes, i.classes]));
      // the same equalities among the roots
      for (let i = 0; i < a.length; i++) {
        for (let j = i + 1; j < a.length; j++) {
          expect(semi.eg.find(a[i]!) === semi.eg.find(a[j]!)).toBe(naive.eg.find(b[i]!) === naive.eg.find(b[j]!));
        }
      }
      // and semi-naive did less matching
      const total = (r: RunReport): number =>
        r.iterations.reduce((n, it) => n + Object.values(it.rulesFired).reduce((x, y) => x + y, 0), 0);
      expect(total(rs)).toBeLessThan(total(rn));
    });
  }
});
