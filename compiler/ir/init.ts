// Parameter initial values, drawn at compile time. Each parameter gets its own stream,
// seeded from the compile seed and the parameter's name, so adding a parameter never
// changes the values of the others and the same seed gives byte-identical plans.
import type { Init } from './ops';
import { elementCount, type Shape } from './types';

/** 32-bit FNV-1a of a string, to derive a per-parameter seed. */
function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** mulberry32: a small, well-mixed 32-bit generator; returns uniforms in [0, 1). */
export function uniformStream(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normals by Box–Muller over a uniform stream. */
function normalStream(uniform: () => number): () => number {
  return () => {
    const u = 1 - uniform(); // (0, 1]: log stays finite
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
  };
}

/** fan-in and fan-out of a weight used as x @ W: [.., in, out]. */
function fans(shape: Shape): { fanIn: number; fanOut: number } {
  if (shape.length === 0) return { fanIn: 1, fanOut: 1 };
  if (shape.length === 1) return { fanIn: shape[0], fanOut: shape[0] };
  const receptive = elementCount(shape.slice(0, -2));
  return { fanIn: shape[shape.length - 2] * receptive, fanOut: shape[shape.length - 1] * receptive };
}

export function initialValues(init: Init, shape: Shape, name: string, seed: number): Float32Array {
  const n = elementCount(shape);
  if (init instanceof Float32Array || Array.isArray(init)) return Float32Array.from(init as ArrayLike<number>);
  const uniform = uniformStream(hashName(name) ^ Math.imul(seed >>> 0, 0x9e3779b1));
  const out = new Float32Array(n);
  const { fanIn, fanOut } = fans(shape);
  if (init === 'zeros') return out;
  if (init === 'ones') return out.fill(1);
  if (init === 'glorot') {
    const limit = Math.sqrt(6 / (fanIn + fanOut));
    return fill(out, () => (2 * uniform() - 1) * limit);
  }
  if (init === 'he') {
    const normal = normalStream(uniform);
    const std = Math.sqrt(2 / fanIn);
    return fill(out, () => normal() * std);
  }
  if ('uniform' in init) {
    const [lo, hi] = init.uniform;
    return fill(out, () => lo + (hi - lo) * uniform());
  }
  const normal = normalStream(uniform);
  const std = (init as { normal: number }).normal;
  return fill(out, () => normal() * std);
}

/** In place, in index order (the values `map` would give, without a second array of a tensor that may be gigabytes). */
function fill(out: Float32Array, next: () => number): Float32Array {
  for (let i = 0; i < out.length; i++) out[i] = next();
  return out;
}
