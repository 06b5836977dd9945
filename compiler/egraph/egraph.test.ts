import { describe, expect, it } from 'vitest';
import { EGraph } from './egraph';
import { EggError } from './syntax';

/** Math with Num/Var/Add/Mul and a unary F, declared through the API. */
function mathGraph(): EGraph {
  const eg = new EGraph();
  eg.declareSort('Math');
  eg.declareFunction({ name: 'Num', kind: 'constructor', args: ['i64'], output: 'Math' });
  eg.declareFunction({ name: 'Var', kind: 'constructor', args: ['String'], output: 'Math' });
  eg.declareFunction({ name: 'Add', kind: 'constructor', args: ['Math', 'Math'], output: 'Math' });
  eg.declareFunction({ name: 'F', kind: 'constructor', args: ['Math'], output: 'Math' });
  return eg;
}

describe('EGraph: hash-consing', () => {
  it('gives the same class to the same term added twice', () => {
    const eg = mathGraph();
    const x = eg.add('Var', ['x']);
    const one = eg.add('Num', [1]);
    const a = eg.add('Add', [x, one]);
    expect(eg.add('Var', ['x'])).toBe(x);
    expect(eg.add('Add', [eg.add('Var', ['x']), eg.add('Num', [1])])).toBe(a);
    expect(eg.add('Add', [one, x])).not.toBe(a);
    expect(eg.nodeCount).toBe(4);
    expect(eg.classCount).toBe(4);
    expect(eg.lookup('Add', [x, one])).toBe(a);
    expect(eg.lookup('Add', [x, x])).toBeUndefined();
  });

  it('lists classes and their e-nodes with decoded arguments', () => {
    const eg = mathGraph();
    const x = eg.add('Var', ['x']);
    const n = eg.add('Num', [-7]);
    const a = eg.add('Add', [x, n]);
    expect(eg.classes()).toEqual([x, n, a].sort((p, q) => p - q));
    expect(eg.nodes(a)).toEqual([{ head: 'Add', args: [x, n] }]);
    expect(eg.nodes(x)).toEqual([{ head: 'Var', args: ['x'] }]);
    const seen: string[] = [];
    eg.forEachNode((node, c) => seen.push(`${c}:${node.head}`));
    expect(seen.sort()).toEqual([`${x}:Var`, `${n}:Num`, `${a}:Add`].sort());
    eg.union(x, n);
    eg.rebuild();
    const r = eg.find(x);
    expect(eg.nodesByClass()).toEqual(
      new Map([
        [r, expect.arrayContaining([{ head: 'Var', args: ['x'] }, { head: 'Num', args: [-7] }])],
        [a, [{ head: 'Add', args: [r, r] }]],
      ]),
    );
    expect(eg.nodesByClass().get(r)!.length).toBe(2);
  });
});

describe('EGraph: union and rebuild', () => {
  it('merges F(a) and F(b) after a = b, but only once rebuilt (deferred congruence)', () => {
    const eg = mathGraph();
    const a = eg.add('Var', ['a']);
    const b = eg.add('Var', ['b']);
    const fa = eg.add('F', [a]);
    const fb = eg.add('F', [b]);
    const ffa = eg.add('F', [fa]);
    const ffb = eg.add('F', [fb]);
    eg.union(a, b);
    expect(eg.find(a)).toBe(eg.find(b));
    expect(eg.find(fa)).not.toBe(eg.find(fb)); // not yet
    expect(eg.needsRebuild).toBe(true);
    eg.rebuild();
    expect(eg.find(fa)).toBe(eg.find(fb));
    expect(eg.find(ffa)).toBe(eg.find(ffb)); // congruence propagates upward
    expect(eg.classCount).toBe(3);
    expect(eg.nodeCount).toBe(4); // Var a, Var b, one F, one F(F)
    expect(eg.nodes(fa)).toEqual([{ head: 'F', args: [eg.find(a)] }]);
  });

  it('keeps rows canonical after chains of unions', () => {
    const eg = mathGraph();
    const xs = Array.from({ length: 50 }, (_, i) => eg.add('Num', [i]));
    const fs = xs.map((x) => eg.add('F', [x]));
    const adds = xs.map((x, i) => eg.add('Add', [x, xs[(i + 1) % xs.length]!]));
    for (let i = 1; i < xs.length; i += 2) eg.union(xs[i - 1]!, xs[i]!);
    eg.rebuild();
    for (let i = 1; i < xs.length; i += 2) expect(eg.find(fs[i - 1]!)).toBe(eg.find(fs[i]!));
    for (let i = 0; i < xs.length; i++) {
      for (const node of eg.nodes(adds[i]!)) for (const arg of node.args) expect(eg.find(arg as number)).toBe(arg);
    }
    for (let i = 1; i < xs.length; i++) eg.union(xs[0]!, xs[i]!);
    eg.rebuild();
    expect(eg.classCount).toBe(3); // all Num, all F, all Add
    expect(eg.nodeCount).toBe(50 + 1 + 1);
  });

  it('refuses to union classes of different sorts', () => {
    const eg = mathGraph();
    eg.declareSort('Other');
    eg.declareFunction({ name: 'O', kind: 'constructor', args: [], output: 'Other' });
    expect(() => eg.union(eg.add('Num', [1]), eg.add('O', []))).toThrow(/cannot union e-class \d+ of Math with e-class \d+ of Other/);
  });
});

describe('EGraph: functions', () => {
  it('merges values with :merge (min old new), on set and when rebuilding', () => {
    const eg = mathGraph();
    eg.declareFunction({ name: 'lo', kind: 'function', args: ['Math'], output: 'i64', merge: (a, b) => Math.min(a as number, b as number) });
    const a = eg.add('Var', ['a']);
    const b = eg.add('Var', ['b']);
    eg.set('lo', [a], 5);
    eg.set('lo', [a], 3);
    eg.set('lo', [a], 7);
    expect(eg.get('lo', [a])).toBe(3);
    eg.set('lo', [b], 1);
    eg.union(a, b);
    eg.rebuild();
    expect(eg.get('lo', [a])).toBe(1);
    expect(eg.get('lo', [b])).toBe(1);
    expect(eg.table('lo')!.liveCount).toBe(1);
  });

  it('refuses conflicting values without :merge, and unions class-valued ones', () => {
    const eg = mathGraph();
    eg.declareFunction({ name: 'size', kind: 'function', args: ['Math'], output: 'i64' });
    eg.declareFunction({ name: 'simpler', kind: 'function', args: ['Math'], output: 'Math' });
    const x = eg.add('Var', ['x']);
    eg.set('size', [x], 1);
    eg.set('size', [x], 1); // same value: fine
    expect(() => eg.set('size', [x], 2)).toThrow(/size: conflicting values 1 and 2 for the same arguments, and no :merge/);
    const p = eg.add('Num', [1]);
    const q = eg.add('Num', [2]);
    eg.set('simpler', [x], p);
    eg.set('simpler', [x], q);
    expect(eg.find(p)).toBe(eg.find(q));
  });

  it('holds relations as facts, and deletes rows', () => {
    const eg = mathGraph();
    eg.declareFunction({ name: 'leaf', kind: 'relation', args: ['Math'], output: 'Unit' });
    const x = eg.add('Var', ['x']);
    expect(eg.get('leaf', [x])).toBeUndefined();
    eg.set('leaf', [x]);
    expect(eg.get('leaf', [x])).toBe(true);
    eg.delete('leaf', [x]);
    expect(eg.get('leaf', [x])).toBeUndefined();
  });

  it('stores every primitive sort', () => {
    const eg = new EGraph();
    eg.declareFunction({ name: 'fi', kind: 'function', args: ['i64', 'String'], output: 'f64' });
    eg.declareFunction({ name: 'fb', kind: 'function', args: ['bool', 'f64'], output: 'String' });
    eg.set('fi', [2 ** 53 - 1, 'a'], 0.5);
    eg.set('fi', [-3, 'a'], NaN);
    eg.set('fb', [true, -0], 'yes');
    eg.set('fb', [false, 0.25], 'no');
    expect(eg.get('fi', [2 ** 53 - 1, 'a'])).toBe(0.5);
    expect(eg.get('fi', [-3, 'a'])).toBeNaN();
    expect(eg.get('fi', [-3, 'b'])).toBeUndefined();
    expect(eg.get('fb', [true, 0])).toBe('yes'); // 0 and -0 are one key
    expect(eg.get('fb', [false, 0.25])).toBe('no');
  });
});

describe('EGraph: API checks', () => {
  it('refuses unknown heads, wrong arity, wrong values and i64 overflow', () => {
    const eg = mathGraph();
    expect(() => eg.add('Sub', [])).toThrow(EggError);
    expect(() => eg.add('Sub', [])).toThrow(/unknown function Sub/);
    expect(() => eg.add('Add', [0])).toThrow(/Add takes 2 arguments, found 1/);
    expect(() => eg.add('Num', ['1'])).toThrow(/expected an i64, found "1"/);
    expect(() => eg.add('Num', [1.5])).toThrow(/expected an i64, found 1.5/);
    expect(() => eg.add('Num', [2 ** 53 + 2])).toThrow(/outside ±\(2\^53−1\)/);
    expect(() => eg.add('F', [99])).toThrow(/expected an e-class id of Math, found 99/);
    expect(() => eg.declareFunction({ name: 'G', kind: 'constructor', args: ['Nope'], output: 'Math' })).toThrow(
      /unknown sort Nope in the declaration of G/,
    );
  });

  it('survives many rows, deletions and compaction', () => {
    const eg = mathGraph();
    const nums = Array.from({ length: 5000 }, (_, i) => eg.add('Num', [i]));
    const fs = nums.map((n) => eg.add('F', [n]));
    for (let i = 1; i < nums.length; i++) eg.union(nums[0]!, nums[i]!);
    eg.rebuild(); // kills 4999 F rows: the table compacts
    expect(eg.table('F')!.rowCount).toBe(1);
    expect(eg.find(fs[123]!)).toBe(eg.find(fs[4000]!));
    expect(eg.lookup('F', [nums[77]!])).toBe(eg.find(fs[0]!));
    const g = eg.add('F', [eg.add('Var', ['z'])]);
    expect(eg.lookup('F', [eg.add('Var', ['z'])])).toBe(g);
  });
});
