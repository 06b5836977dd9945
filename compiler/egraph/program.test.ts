import { describe, expect, it } from 'vitest';
import { EGraph } from './egraph';
import { parseEgg } from './parse';
import { EggProgram, type ProgramOutput } from './program';
import { EggError } from './syntax';

function run(text: string, prog = new EggProgram(new EGraph())): { prog: EggProgram; out: ProgramOutput[] } {
  return { prog, out: prog.run(parseEgg(text, 'test.egg')) };
}

function extracted(out: ProgramOutput[]): { term: string; cost: number }[] {
  return out.flatMap((o) => (o.kind === 'extract' ? [{ term: o.term, cost: o.cost }] : []));
}

/** The EggError a program raises: its message (with file:line:col) */
function failure(text: string): string {
  try {
    run(text);
  } catch (e) {
    expect(e).toBeInstanceOf(EggError);
    return (e as EggError).message;
  }
  return 'no error';
}

const MATH = '(datatype Math (Num i64) (Var String) (Add Math Math) (Mul Math Math))\n';

describe('EggProgram: egglog examples', () => {
  it('eqsat-basic: distributivity, commutativity and folding prove two expressions equal', () => {
    const { out } = run(`${MATH}
      (rewrite (Add a b) (Add b a))
      (rewrite (Mul a (Add b c)) (Add (Mul a b) (Mul a c)))
      (rewrite (Add (Num a) (Num b)) (Num (+ a b)))
      (rewrite (Mul (Num a) (Num b)) (Num (* a b)))
      (let expr1 (Mul (Num 2) (Add (Var "x") (Num 3))))
      (let expr2 (Add (Num 6) (Mul (Num 2) (Var "x"))))
      (run 10)
      (check (= expr1 expr2))
      (extract expr1)`);
    expect(out.map((o) => o.kind)).toEqual(['run', 'check', 'extract']);
    const run0 = out[0]!;
    expect(run0.kind === 'run' && run0.report.stopReason).toBe('saturated');
    // every cheapest form costs 5; which one wins is a tie
    const [best] = extracted(out);
    expect(best!.cost).toBe(5);
    expect([
      '(Mul (Num 2) (Add (Var "x") (Num 3)))',
      '(Mul (Num 2) (Add (Num 3) (Var "x")))',
      '(Add (Num 6) (Mul (Num 2) (Var "x")))',
      '(Add (Mul (Num 2) (Var "x")) (Num 6))',
    ]).toContain(best!.term);
  });

  it('folds (Add (Num 1) (Num 2)) and removes x*1', () => {
    const { out, prog } = run(`${MATH}
      (rewrite (Add (Num a) (Num b)) (Num (+ a b)))
      (rewrite (Mul x (Num 1)) x)
      (let e (Mul (Add (Var "y") (Add (Num 1) (Num 2))) (Num 1)))
      (run 5)
      (extract e)
      (check (= e (Add (Var "y") (Num 3))))`);
    expect(extracted(out)).toEqual([{ term: '(Add (Var "y") (Num 3))', cost: 3 }]);
    expect(prog.eg.find(prog.global('e') as number)).toBe(prog.eg.lookup('Add', [prog.eg.add('Var', ['y']), prog.eg.add('Num', [3])]));
  });

  it('saturates under commutativity (both orders, then nothing new)', () => {
    const { out, prog } = run(`${MATH}
      (rewrite (Add a b) (Add b a))
      (let e (Add (Var "x") (Add (Var "y") (Var "z"))))
      (run 100)`);
    const r = out[0]!;
    if (r.kind !== 'run') throw new Error('expected a run');
    expect(r.report.stopReason).toBe('saturated');
    expect(r.report.iterations.length).toBeLessThanOrEqual(3);
    expect(prog.eg.nodeCount).toBe(3 + 4); // three Vars, two Adds each in both orders
    expect(prog.eg.classCount).toBe(5);
  });

  it('transitive closure over a relation (rules joining two facts)', () => {
    const { prog } = run(`
      (relation edge (i64 i64))
      (relation path (i64 i64))
      (rule ((edge a b)) ((path a b)))
      (rule ((path a b) (edge b c)) ((path a c)))
      ${Array.from({ length: 10 }, (_, i) => `(edge ${i} ${i + 1})`).join(' ')}
      (run 100)
      (check (path 0 10))`);
    expect(prog.eg.table('path')!.liveCount).toBe(55);
  });

  it('merges function values with :merge (min old new), also when keys become equal', () => {
    const { prog } = run(`${MATH}
      (function lo (Math) i64 :merge (min old new))
      (set (lo (Var "x")) 5)
      (set (lo (Var "x")) 3)
      (set (lo (Var "x")) 7)
      (check (= (lo (Var "x")) 3))
      (set (lo (Var "y")) 1)
      (union (Var "x") (Var "y"))
      (run 1)
      (check (= (lo (Var "x")) 1))`);
    expect(prog.eg.get('lo', [prog.eg.add('Var', ['y'])])).toBe(1);
    expect(prog.eg.table('lo')!.liveCount).toBe(1);
    expect(failure(`${MATH}(function lo (Math) i64 :merge (min old new)) (set (lo (Num 1)) 4) (check (= (lo (Num 1)) 5))`)).toMatch(
      /check failed/,
    );
  });

  it('runs a constant-folding analysis through a function with :merge', () => {
    const { prog, out } = run(`${MATH}
      (function const (Math) i64 :merge (min old new))
      (rule ((= e (Num n))) ((set (const e) n)))
      (rule ((= e (Add a b)) (= (const a) x) (= (const b) y)) ((set (const e) (+ x y))))
      (rule ((= e (Mul a b)) (= (const a) x) (= (const b) y)) ((set (const e) (* x y))))
      (rule ((= (const e) n)) ((union e (Num n))))
      (let e (Add (Mul (Num 3) (Num 4)) (Add (Num 5) (Var "v"))))
      (let k (Mul (Add (Num 1) (Num 1)) (Num 21)))
      (run 10)
      (check (= (const k) 42))
      (check (= k (Num 42)))
      (extract e)
      (extract k)`);
    expect(prog.eg.get('const', [prog.global('k')!])).toBe(42);
    expect(prog.eg.get('const', [prog.global('e')!])).toBeUndefined();
    expect(extracted(out)).toEqual([
      { term: '(Add (Num 12) (Add (Num 5) (Var "v")))', cost: 5 },
      { term: '(Num 42)', cost: 1 },
    ]);
  });

  it('applies :when guards', () => {
    const { prog } = run(`${MATH}
      (rewrite (Add (Num a) (Num b)) (Num (+ a b)) :when ((< a 10) (!= b 0)))
      (let p (Add (Num 1) (Num 2)))
      (let q (Add (Num 11) (Num 2)))
      (let r (Add (Num 1) (Num 0)))
      (run 5)
      (check (= p (Num 3)))`);
    const eg = prog.eg;
    expect(eg.find(prog.global('q') as number)).not.toBe(eg.lookup('Num', [13]) ?? -1);
    expect(eg.lookup('Num', [13])).toBeUndefined();
    expect(eg.lookup('Num', [1])).not.toBe(eg.find(prog.global('r') as number));
  });

  it('runs let, union, set and delete actions in rules and at top level', () => {
    const { prog } = run(`${MATH}
      (function size (Math) i64 :merge (max old new))
      (relation big (Math))
      (rule ((= e (Add a b))) ((let s (Add b a)) (union e s) (set (size s) 2)))
      (rule ((= (size e) n) (> n 1)) ((big e)))
      (let x (Add (Var "a") (Var "b")))
      (union (Var "c") (Var "d"))
      (set (size (Var "a")) 1)
      (run 3)
      (check (= x (Add (Var "b") (Var "a"))))
      (check (big x))
      (check (= (Var "c") (Var "d")))
      (delete (big x))`);
    const eg = prog.eg;
    expect(eg.get('big', [prog.global('x')!])).toBeUndefined();
    expect(eg.get('size', [prog.global('x')!])).toBe(2);
    expect(eg.get('size', [eg.add('Var', ['a'])])).toBe(1);
  });

  it('binds every name of variables equated in a query, and reads globals in rules', () => {
    const { prog } = run(`${MATH}
      (relation seen (Math Math))
      (let g (Var "g"))
      (rule ((= x (Num n)) (= y x) (= z 1) (= n z)) ((seen y g)))
      (rule ((= (Var s) g)) ((seen g g)))
      (Num 1) (Num 2)
      (run 2)`);
    const eg = prog.eg;
    const g = prog.global('g') as number;
    expect(eg.get('seen', [eg.add('Num', [1]), g])).toBe(true);
    expect(eg.get('seen', [eg.add('Num', [2]), g])).toBeUndefined();
    expect(eg.get('seen', [g, g])).toBe(true);
  });

  it('keeps rulesets apart and stops at :until', () => {
    const { out, prog } = run(`${MATH}
      (ruleset fold)
      (rewrite (Add (Num a) (Num b)) (Num (+ a b)) :ruleset fold)
      (rewrite (Add a b) (Add b a))
      (let e (Add (Num 1) (Num 2)))
      (run 5)
      (run fold 5 :until ((= e (Num 3))))
      (run fold 5 :until ((= e (Num 3))))`);
    const reports = out.flatMap((o) => (o.kind === 'run' ? [o.report] : []));
    expect(prog.eg.lookup('Num', [3])).toBeDefined();
    expect(reports.map((r) => r.stopReason)).toEqual(['saturated', 'until', 'until']);
    expect(Object.keys(reports[0]!.iterations[0]!.rulesFired)).toEqual(['rewrite test.egg:5']);
    expect(Object.keys(reports[1]!.iterations[0]!.rulesFired)).toEqual(['rewrite test.egg:4']);
    expect(reports[2]!.iterations).toEqual([]);
  });

  it('extracts variants: one term per e-node of the class, cheapest first', () => {
    const { out } = run(`${MATH}
      (rewrite (Mul x (Num 2)) (Add x x))
      (let e (Mul (Var "x") (Num 2)))
      (run 3)
      (extract e 5)`);
    const e = out.find((o) => o.kind === 'extract')!;
    if (e.kind !== 'extract') throw new Error('expected extract');
    expect(e.variants!.map((v) => v.term).sort()).toEqual(['(Add (Var "x") (Var "x"))', '(Mul (Var "x") (Num 2))']);
  });

  it('extracts primitives, strings and floats as egglog literals', () => {
    const { out } = run(`
      (datatype V (F f64) (S String))
      (extract (+ 40 2))
      (extract (F 2.0))
      (extract (S "a\\"b"))
      (extract (< 1.5 2.5))`);
    expect(extracted(out)).toEqual([
      { term: '42', cost: 0 },
      { term: '(F 2.0)', cost: 1 },
      { term: '(S "a\\"b")', cost: 1 },
      { term: 'true', cost: 0 },
    ]);
  });

  it('uses :cost and the DAG extraction option', () => {
    const text = `
      (datatype E (Shared :cost 10) (P E) (Q E) (Two E E) (Alt :cost 20))
      (let s (Shared))
      (let x (Two (P s) (Q s)))
      (union x (Alt))
      (extract x)`;
    expect(extracted(run(text).out)).toEqual([{ term: '(Alt)', cost: 20 }]);
    const dag = new EggProgram(new EGraph(), { extraction: 'dag' });
    expect(extracted(run(text, dag).out)).toEqual([{ term: '(Two (P (Shared)) (Q (Shared)))', cost: 13 }]);
  });
});

describe('EggProgram: deep terms', () => {
  it('inserts, checks and extracts terms thousands of levels deep', () => {
    let t = '(L)';
    for (let i = 0; i < 5000; i++) t = `(F ${t})`;
    const { out, prog } = run(`(datatype M (L) (F M)) (let x ${t}) (check (= x ${t})) (extract x)`);
    expect(prog.eg.nodeCount).toBe(5001);
    const e = extracted(out)[0]!;
    expect(e.cost).toBe(5001);
    expect(e.term).toBe(t);
  });
});

describe('EggProgram: errors', () => {
  it('names the form and what was expected', () => {
    expect(failure(`${MATH}(let e (Sub (Num 1) (Num 2)))`)).toBe('test.egg:2:8: unknown function Sub');
    expect(failure(`${MATH}(let e (Add (Num 1)))`)).toBe('test.egg:2:8: Add takes 2 arguments, found 1');
    expect(failure(`${MATH}(let e (Add (Num 1) 2))`)).toBe('test.egg:2:21: sort mismatch: argument 2 of Add must be Math, found i64');
    expect(failure(`${MATH}(rule ((= e (Num n))) ((union e (Num m))))`)).toBe('test.egg:2:38: unbound variable m');
    expect(failure(`${MATH}(rewrite (Add a b) (Add b c))`)).toBe('test.egg:2:27: unbound variable c');
    expect(failure(`${MATH}(rewrite (Add a b) (Num 1) :ruleset nope)`)).toBe('test.egg:2:1: unknown ruleset nope');
    expect(failure(`${MATH}(run nope 3)`)).toBe('test.egg:2:1: unknown ruleset nope');
    expect(failure(`${MATH}(datatype Math (Foo))`)).toBe('test.egg:2:1: sort Math is already declared');
    expect(failure(`(datatype A (B Nope))`)).toBe('test.egg:1:13: unknown sort Nope in the declaration of B');
    expect(failure(`${MATH}(check (= (Num 1) (Num 2)))`)).toBe('test.egg:2:1: check failed: (= (Num 1) (Num 2)) has no match');
    expect(failure(`${MATH}(union (Num 1) 2)`)).toBe('test.egg:2:1: cannot union a Math with a i64');
    expect(failure(`(function f (i64) i64) (set (f 1) 2) (set (f 1) 3)`)).toBe(
      'f: conflicting values 2 and 3 for the same arguments, and no :merge',
    );
    expect(failure(`(function f (i64) i64 :merge (+ old "x"))`)).toBe('test.egg:1:30: no primitive + takes (i64 String)');
    expect(failure(`${MATH}(let a (Num 1)) (let a (Num 2))`)).toBe('test.egg:2:17: a is already defined');
    expect(failure(`(function f (i64) i64) (let x (f 3))`)).toBe('test.egg:1:31: f has no value for these arguments');
    expect(failure(`(let x (+ 9007199254740991 1))`)).toBe(
      'test.egg:1:8: i64 overflow in (+ 9007199254740991 1): the result 9007199254740992 is outside ±(2^53−1)',
    );
  });

  it('refuses rewrites whose left-hand side is not a table call', () => {
    expect(failure(`${MATH}(rewrite x (Num 1))`)).toBe(
      'test.egg:2:10: the left-hand side of a rewrite must be a constructor or function call; found the variable x',
    );
    expect(failure(`${MATH}(rewrite (+ a b) (Num 1))`)).toBe(
      'test.egg:2:10: the left-hand side of a rewrite must be a constructor or function call; found the primitive +',
    );
    expect(failure(`${MATH}(rewrite (Sub a b) (Num 1))`)).toBe('test.egg:2:10: unknown function Sub');
  });

  it('cuts long terms short in messages', () => {
    let t = '(Num 0)';
    for (let i = 0; i < 100; i++) t = `(Add ${t} (Num ${i}))`;
    const message = failure(`${MATH}(check (= ${t} (Num 1)))`);
    expect(message).toMatch(/^test\.egg:2:1: check failed: \(= \(Add \(Add .*… \(Num 1\)\) has no match$/);
    expect(message.length).toBeLessThan(300);
  });

  it('raises overflow inside a rule at the primitive', () => {
    expect(
      failure(`${MATH}
        (rule ((= e (Num n))) ((Num (* n 1000000000))))
        (Num 5)
        (run 5)`),
    ).toMatch(/^test\.egg:3:37: i64 overflow in \(\* 5000000000 1000000000\): the result 5000000000000000000 is outside ±\(2\^53−1\)$/);
  });
});
