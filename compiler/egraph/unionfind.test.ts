import { describe, expect, it } from 'vitest';
import { UnionFind } from './unionfind';

describe('UnionFind', () => {
  it('starts with singleton sets', () => {
    const uf = new UnionFind();
    const ids = Array.from({ length: 5 }, () => uf.makeSet());
    expect(ids).toEqual([0, 1, 2, 3, 4]);
    for (const id of ids) expect(uf.find(id)).toBe(id);
    expect(uf.setCount).toBe(5);
  });

  it('merges sets, keeps the larger set root, and counts sets', () => {
    const uf = new UnionFind();
    const [a, b, c, d] = [uf.makeSet(), uf.makeSet(), uf.makeSet(), uf.makeSet()];
    expect(uf.union(a!, b!)).toBe(a); // equal sizes: the smaller id stays root
    expect(uf.union(d!, a!)).toBe(a); // the bigger set's root wins
    expect(uf.find(d!)).toBe(a);
    expect(uf.find(c!)).toBe(c);
    expect(uf.setCount).toBe(2);
    expect(uf.union(b!, d!)).toBe(a); // already one set
    expect(uf.setCount).toBe(2);
    expect(uf.isRoot(a!)).toBe(true);
    expect(uf.isRoot(b!)).toBe(false);
  });

  it('agrees with a naive partition over many random unions (and grows past its initial capacity)', () => {
    const uf = new UnionFind();
    const n = 1000;
    const label = Array.from({ length: n }, (_, i) => i);
    for (let i = 0; i < n; i++) uf.makeSet();
    let s = 12345;
    const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) % n;
    for (let k = 0; k < 700; k++) {
      const a = rnd();
      const b = rnd();
      uf.union(a, b);
      const from = label[b]!;
      const to = label[a]!;
      for (let i = 0; i < n; i++) if (label[i] === from) label[i] = to;
    }
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j += 37) expect(uf.find(i) === uf.find(j)).toBe(label[i] === label[j]);
    }
    expect(uf.setCount).toBe(new Set(label).size);
  });

  it('refuses unknown ids', () => {
    const uf = new UnionFind();
    uf.makeSet();
    expect(() => uf.find(3)).toThrow(/unknown e-class id 3/);
  });
});
