import { describe, expect, it } from 'vitest';
import { EGraph } from './egraph';
import { parseEgg } from './parse';
import { EggProgram } from './program';
import { compileQuery, matchAll, search } from './query';
import type { Fact } from './syntax';

const DECLS = `
(datatype Math (Num i64) (Var String) (Add Math Math) (Mul Math Math) (Neg Math))
(function size (Math) i64 :merge (min old new))
(relation edge (i64 i64))
`;

function setup(): { eg: EGraph; prog: EggProgram } {
  const eg = new EGraph();
  const prog = new EggProgram(eg);
  prog.run(parseEgg(DECLS, 'decls.egg'));
  return { eg, prog };
}

/** The facts of `(check ...)` in `text`: a handy way to write a query. */
function facts(text: string): Fact[] {
  const [c] = parseEgg(`(check ${text})`, 'q.egg');
  if (c?.kind !== 'check') throw new Error('not a check');
  return c.facts;
}

const sorted = (ms: Record<string, unknown>[]): string[] => ms.map((m) => JSON.stringify(m)).sort();

describe('compiling and matching queries', () => {
  it('matches a nested pattern through joins', () => {
    const { eg } = setup();
    const x = eg.add('Var', ['x']);
    const one = eg.add('Num', [1]);
    const two = eg.add('Num', [2]);
    const e1 = eg.add('Mul', [x, one]);
    eg.add('Mul', [x, two]);
    eg.add('Add', [e1, one]);
    const q = compileQuery(eg, facts('(= e (Mul a (Num 1)))'));
    expect(matchAll(eg, q)).toEqual([{ e: e1, a: x }]);
    const q2 = compileQuery(eg, facts('(= e (Add (Mul a (Num n)) (Num n)))'));
    expect(matchAll(eg, q2)).toEqual([{ e: eg.lookup('Add', [e1, one]), a: x, n: 1 }]);
  });

  it('joins several facts that share variables (multi-pattern)', () => {
    const { eg } = setup();
    const a = eg.add('Var', ['a']);
    const b = eg.add('Var', ['b']);
    const c = eg.add('Var', ['c']);
    const s1 = eg.add('Add', [a, b]);
    const p1 = eg.add('Mul', [a, b]);
    eg.add('Add', [a, c]);
    eg.add('Mul', [c, b]);
    const q = compileQuery(eg, facts('(= s (Add x y)) (= p (Mul x y))'));
    expect(matchAll(eg, q)).toEqual([{ s: s1, x: a, y: b, p: p1 }]);
    // the same variable twice in one atom
    const d = eg.add('Add', [c, c]);
    expect(matchAll(eg, compileQuery(eg, facts('(= s (Add x x))')))).toEqual([{ s: d, x: c }]);
  });

  it('uses primitive guards and computations', () => {
    const { eg } = setup();
    for (let i = 0; i < 6; i++) eg.add('Num', [i]);
    const lt = compileQuery(eg, facts('(Num a) (Num b) (< a b) (= 3 (+ a b))'));
    expect(sorted(matchAll(eg, lt))).toEqual(sorted([{ a: 0, b: 3 }, { a: 1, b: 2 }]));
    const neq = compileQuery(eg, facts('(Num a) (Num b) (!= a b) (= c (* a b)) (>= c 20)'));
    expect(sorted(matchAll(eg, neq))).toEqual(sorted([{ a: 4, b: 5, c: 20 }, { a: 5, b: 4, c: 20 }]));
    // a computed value used as a pattern argument: joins through the Num table
    const shifted = compileQuery(eg, facts('(= e (Num n)) (= f (Num (+ n 4)))'));
    expect(matchAll(eg, shifted).map((m) => m.n).sort()).toEqual([0, 1]);
    // division by zero is no match, not an error
    const div = compileQuery(eg, facts('(Num a) (= q (/ 10 a))'));
    expect(matchAll(eg, div).map((m) => m.a).sort()).toEqual([1, 2, 3, 4, 5]);
  });

  it('evaluates f64, String and bool primitives', () => {
    const { eg } = setup();
    eg.add('Var', ['ab']);
    eg.add('Var', ['b']);
    const q = compileQuery(eg, facts('(Var s) (= (+ "a" s) "ab")'));
    expect(matchAll(eg, q)).toEqual([{ s: 'b' }]);
    const f = compileQuery(eg, facts('(= x (max 1.5 (neg 2.0))) (< x 2.0) (= b (and true (not false)))'));
    expect(matchAll(eg, f)).toEqual([{ x: 1.5, b: true }]);
    expect(matchAll(eg, compileQuery(eg, facts('(= x (min 1.5 (neg 2.0))) (> x 0.0)')))).toEqual([]);
  });

  it('reads functions and relations, with their values', () => {
    const { eg } = setup();
    const x = eg.add('Var', ['x']);
    const y = eg.add('Var', ['y']);
    eg.set('size', [x], 3);
    eg.set('size', [y], 9);
    eg.set('edge', [1, 2]);
    eg.set('edge', [2, 3]);
    expect(matchAll(eg, compileQuery(eg, facts('(= (size e) n) (< n 5)')))).toEqual([{ e: x, n: 3 }]);
    expect(matchAll(eg, compileQuery(eg, facts('(edge a b) (edge b c)')))).toEqual([{ a: 1, b: 2, c: 3 }]);
  });

  it('finds nothing for contradictory constants, and everything for an empty query', () => {
    const { eg } = setup();
    eg.add('Num', [1]);
    expect(matchAll(eg, compileQuery(eg, facts('(= 1 2)')))).toEqual([]);
    expect(matchAll(eg, compileQuery(eg, facts('(= n 1) (Num n)')))).toEqual([{ n: 1 }]);
    expect(matchAll(eg, compileQuery(eg, facts('(< 1 2)')))).toEqual([{}]);
    expect(matchAll(eg, compileQuery(eg, facts('(< 2 1)')))).toEqual([]);
  });

  it('matches only what is new since a timestamp (semi-naive), each match once', () => {
    const { eg } = setup();
    eg.set('edge', [1, 2]);
    eg.set('edge', [2, 3]);
    const q = compileQuery(eg, facts('(edge a b) (edge b c)'));
    expect(search(eg, q, undefined, () => {})).toBe(1);
    eg.timestamp = 1;
    expect(search(eg, q, 1, () => {})).toBe(0); // nothing new
    eg.set('edge', [3, 4]); // new: joins with (2,3) as the second atom
    eg.set('edge', [0, 1]); // new: joins with (1,2) as the first atom
    eg.set('edge', [4, 5]); // new, and joins with the new (3,4): counted once
    const seen: string[] = [];
    search(eg, q, 1, (v) => {
      seen.push(`${v[q.variable('a')!]}${v[q.variable('b')!]}${v[q.variable('c')!]}`);
    });
    expect(seen.sort()).toEqual(['012', '234', '345']);
    expect(search(eg, q, undefined, () => {})).toBe(4);
  });

  it('reports type errors and unbound variables with the offending span', () => {
    const { eg } = setup();
    const err = (text: string): string => {
      try {
        compileQuery(eg, facts(text));
      } catch (e) {
        return (e as Error).message;
      }
      return 'no error';
    };
    expect(err('(= e (Sub a b))')).toBe('q.egg:1:13: unknown function Sub');
    expect(err('(= e (Add a))')).toBe('q.egg:1:13: Add takes 2 arguments, found 1');
    expect(err('(= e (Add a 1))')).toBe('q.egg:1:20: sort mismatch: argument 2 of Add must be Math, but the literal 1 is i64');
    expect(err('(= e (Num a)) (= e (Var a))')).toBe(
      'q.egg:1:32: sort mismatch: argument 1 of Var must be String, but a (from argument 1 of Num) is i64',
    );
    expect(err('(Num a) (< a b)')).toBe('q.egg:1:21: b of < is not bound by any pattern in the query');
    expect(err('(= x y)')).toBe('q.egg:1:11: cannot infer the sort of x');
    expect(err('(Num a) (< a "s")')).toBe('q.egg:1:16: no primitive < takes (i64 String)');
  });
});
