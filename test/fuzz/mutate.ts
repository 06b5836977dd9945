// The fuzzer's mutations: blind ones on bytes (bit flips, byte runs, truncation, extension,
// header integers) and structured ones on a parsed JSON header (values of other types, huge
// and negative numbers, inherited names, deep nesting, deleted, copied and duplicated
// parts). A target re-encodes a structured mutation with its checksums fixed, so the
// mutation reaches the checks behind them. Each returns a short description for reports.
import type { Random } from './random';

export interface Mutated {
  bytes: Uint8Array;
  what: string;
}

/** Integers that sit on the edges readers get wrong: zero, sign, 32- and 53-bit bounds. */
const EDGE_INTEGERS = [0, 1, 3, 4, 255, 256, 65536, 0x7fffffff, 0x80000000, 0xffffffff, 2 ** 32, 2 ** 40, 2 ** 53 - 1];

/** Names every plain object inherits: a reader that uses `in` or `obj[name]` finds them. */
export const INHERITED_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf'];

function interestingValue(rng: Random): unknown {
  switch (rng.int(6)) {
    case 0:
      return rng.pick([null, true, false, '', 'x', [], {}]);
    case 1:
      return rng.pick(INHERITED_NAMES);
    case 2:
      return rng.pick([-1, -(2 ** 31), -(2 ** 40), 0.5, -0.5, 1e308, -1e308, 2 ** 64]);
    case 3:
      return rng.pick([[1, 1, 1], [2 ** 40, 1, 1], [0, 0, 0], [2 ** 32, 2 ** 32, 2 ** 32], [-1], ['a']]);
    case 4:
      return { [rng.pick(INHERITED_NAMES)]: rng.pick([1, 'x', {}, []]) };
    default:
      return rng.pick(EDGE_INTEGERS);
  }
}

/**
 * An array or object nested `depth` levels deep. JSON.stringify recurses and overflows the
 * stack on such values, so it stands as a placeholder until stringifyJson writes its text.
 */
class Nested {
  constructor(
    readonly depth: number,
    readonly arrays: boolean,
  ) {}
  toJSON() {
    return `@@nested:${this.depth}:${this.arrays ? 'a' : 'o'}@@`;
  }
}

export function deeplyNested(depth: number, rng: Random): unknown {
  return new Nested(depth, rng.chance(0.5));
}

/** JSON.stringify, with deeplyNested placeholders written out. */
export function stringifyJson(value: unknown): string {
  return JSON.stringify(value).replace(/"@@nested:(\d+):([ao])@@"/g, (_, depth: string, kind: string) => {
    const n = Number(depth);
    return kind === 'a' ? `${'['.repeat(n)}0${']'.repeat(n)}` : `${'{"a":'.repeat(n)}0${'}'.repeat(n)}`;
  });
}

// ---------------------------------------------------------------------------------------
// Bytes

export type ByteMutator = (bytes: Uint8Array, rng: Random) => Mutated;

/** Positions in the first `hot` bytes half the time: headers are where parsing happens. */
function position(length: number, rng: Random, hot = 4096): number {
  return rng.chance(0.5) ? rng.int(Math.min(length, hot)) : rng.int(length);
}

export const BYTE_MUTATORS: Record<string, ByteMutator> = {
  'bit flips'(bytes, rng) {
    const out = bytes.slice();
    const flips = 1 + rng.int(8);
    for (let i = 0; i < flips && out.length > 0; i++) out[position(out.length, rng)] ^= 1 << rng.int(8);
    return { bytes: out, what: `${flips} bit flips` };
  },
  'byte run'(bytes, rng) {
    const out = bytes.slice();
    if (out.length === 0) return { bytes: out, what: 'byte run on empty input' };
    const at = position(out.length, rng);
    const length = 1 + rng.int(64);
    const value = rng.pick([0, 0xff, 0x7f, 0x80, -1]);
    for (let i = at; i < Math.min(out.length, at + length); i++) out[i] = value < 0 ? rng.int(256) : value;
    return { bytes: out, what: `run of ${length} bytes ${value < 0 ? 'random' : `0x${value.toString(16)}`} at ${at}` };
  },
  truncation(bytes, rng) {
    const length = rng.chance(0.3) ? rng.int(Math.min(bytes.length + 1, 128)) : rng.int(bytes.length + 1);
    return { bytes: bytes.slice(0, length), what: `truncated to ${length} bytes` };
  },
  extension(bytes, rng) {
    const extra = 1 + rng.int(1024);
    const out = new Uint8Array(bytes.length + extra);
    out.set(bytes);
    if (rng.chance(0.5)) for (let i = bytes.length; i < out.length; i++) out[i] = rng.int(256);
    return { bytes: out, what: `extended by ${extra} bytes` };
  },
  'header integer'(bytes, rng) {
    const out = bytes.slice();
    if (out.length < 8) return { bytes: out, what: 'header integer on short input' };
    const at = 4 * rng.int(Math.min(out.length, 64) / 4 - 1);
    const value = rng.pick([...EDGE_INTEGERS.filter((v) => v <= 0xffffffff), bytes.length, bytes.length - 1, bytes.length + 1]);
    new DataView(out.buffer).setUint32(at, value >>> 0, true);
    return { bytes: out, what: `u32 ${value} at byte ${at}` };
  },
};

// ---------------------------------------------------------------------------------------
// JSON

/** A mutation of a parsed JSON document, in place; returns what it did. */
export type JsonMutator = (root: unknown, rng: Random) => string;

type Slot = { parent: Record<string, unknown> | unknown[]; key: string | number; path: string };

/** Every value's slot in the document (the root excluded), walked iteratively. */
function slots(root: unknown): Slot[] {
  const out: Slot[] = [];
  const stack: { value: unknown; path: string }[] = [{ value: root, path: '' }];
  while (stack.length > 0) {
    const { value, path } = stack.pop()!;
    if (typeof value !== 'object' || value === null || value instanceof Nested) continue;
    const entries: [string | number, unknown][] = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    for (const [key, child] of entries) {
      const childPath = typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key;
      out.push({ parent: value as Slot['parent'], key, path: childPath });
      stack.push({ value: child, path: childPath });
    }
  }
  return out;
}

/** A copy of a JSON value (placeholders stay shared: they are immutable). */
function cloneJson(value: unknown): unknown {
  if (value instanceof Nested || typeof value !== 'object' || value === null) return value;
  return structuredClone(value);
}

const read = (s: Slot) => (s.parent as Record<string | number, unknown>)[s.key];
const write = (s: Slot, value: unknown) => ((s.parent as Record<string | number, unknown>)[s.key] = value);
const brief = (value: unknown) => {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
};

function withSlot(root: unknown, rng: Random, use: (s: Slot, all: Slot[]) => string, filter?: (s: Slot) => boolean): string {
  const all = slots(root);
  const candidates = filter ? all.filter(filter) : all;
  if (candidates.length === 0) return 'nothing to mutate';
  return use(rng.pick(candidates), all);
}

export const JSON_MUTATORS: Record<string, JsonMutator> = {
  'replace value'(root, rng) {
    return withSlot(root, rng, (s) => {
      const value = interestingValue(rng);
      write(s, value);
      return `${s.path} = ${brief(value)}`;
    });
  },
  'tweak number'(root, rng) {
    return withSlot(
      root,
      rng,
      (s) => {
        const n = read(s) as number;
        const value = rng.pick([n + 1, n - 1, n * 2, -n, n + 256, n * 1024, 2 ** 31, 2 ** 40, n + 0.5]);
        write(s, value);
        return `${s.path}: ${n} → ${value}`;
      },
      (s) => typeof read(s) === 'number',
    );
  },
  'inherited name'(root, rng) {
    return withSlot(
      root,
      rng,
      (s) => {
        const name = rng.pick(INHERITED_NAMES);
        write(s, name);
        return `${s.path} = "${name}"`;
      },
      (s) => typeof read(s) === 'string',
    );
  },
  'unprintable string'(root, rng) {
    // an object whose own toString is no function: `${value}` and String(value) throw
    return withSlot(
      root,
      rng,
      (s) => {
        write(s, { toString: 1, valueOf: 'x' });
        return `${s.path} = {"toString":1,"valueOf":"x"}`;
      },
      (s) => typeof read(s) === 'string' || typeof read(s) === 'number',
    );
  },
  'delete'(root, rng) {
    return withSlot(root, rng, (s) => {
      if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 1);
      else delete s.parent[s.key as string];
      return `deleted ${s.path}`;
    });
  },
  'copy value'(root, rng) {
    return withSlot(root, rng, (s, all) => {
      const from = rng.pick(all);
      write(s, cloneJson(read(from)));
      return `${s.path} = copy of ${from.path}`;
    });
  },
  'duplicate element'(root, rng) {
    return withSlot(
      root,
      rng,
      (s) => {
        const items = read(s) as unknown[];
        items.splice(rng.int(items.length + 1), 0, cloneJson(items[rng.int(items.length)]));
        return `duplicated an element of ${s.path}`;
      },
      (s) => Array.isArray(read(s)) && (read(s) as unknown[]).length > 0,
    );
  },
  'unknown field'(root, rng) {
    return withSlot(
      root,
      rng,
      (s) => {
        const key = rng.chance(0.5) ? rng.pick(INHERITED_NAMES) : 'fuzzExtra';
        const value = rng.chance(0.5) ? deeplyNested(1 + rng.int(20_000), rng) : interestingValue(rng);
        (read(s) as Record<string, unknown>)[key] = value;
        return `${s.path}.${key} = ${brief(value)}`;
      },
      (s) => typeof read(s) === 'object' && read(s) !== null && !Array.isArray(read(s)),
    );
  },
  'deep nesting'(root, rng) {
    return withSlot(root, rng, (s) => {
      const depth = 1 + rng.int(20_000);
      write(s, deeplyNested(depth, rng));
      return `${s.path} nested ${depth} deep`;
    });
  },
};

/** Applies one to three JSON mutators from `mutators`; returns what they did. */
export function mutateJson(root: unknown, rng: Random, mutators: Record<string, JsonMutator>): string {
  const names = Object.keys(mutators);
  const count = 1 + (rng.chance(0.3) ? rng.int(3) : 0);
  const done: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = rng.pick(names);
    // an earlier mutation may have left a shape a targeted mutator did not expect: skip it
    try {
      done.push(`${name}: ${mutators[name](root, rng)}`);
    } catch {
      done.push(`${name}: not applicable`);
    }
  }
  return done.join('; ');
}
