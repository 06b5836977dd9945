// The cost model counts each kernel's FLOPs as its op table entry states them (`flops`),
// one per output element where it states none.
import { describe, expect, it } from 'vitest';
import type { TensorType } from '../ir/types';
import { flopsOf } from './cost';

const f32 = (...shape: number[]): TensorType => ({ shape, dtype: 'f32' });

describe('FLOPs from the op table', () => {
  it('a product does 2·M·N·K, reading K where its A is stored', () => {
    expect(flopsOf('matmul', [f32(3, 64, 32), f32(32, 16)], {}, f32(3, 64, 16))).toBe(2 * 3 * 64 * 16 * 32);
    const transposed = { transposeA: true, transposeB: false, activation: 'relu', bias: false, residual: false };
    expect(flopsOf('fusedMatmul', [f32(32, 64), f32(32, 16)], transposed, f32(64, 16))).toBe(2 * 64 * 16 * 32);
    expect(flopsOf('matmulInt8', [{ shape: [8, 64], dtype: 'i8' }, { shape: [64, 4], dtype: 'i8' }], {}, { shape: [8, 4], dtype: 'i32' })).toBe(2 * 8 * 4 * 64);
  });

  it('a pointwise op does one per element, a reduction one per element it reduces', () => {
    expect(flopsOf('relu', [f32(64, 16)], {}, f32(64, 16))).toBe(64 * 16);
    expect(flopsOf('sum', [f32(64, 16)], { axis: -1, keepDims: false }, f32(64))).toBe(64 * 16);
  });

  it('attention does its two products over the query-key pairs it scores', () => {
    const [q, k, v, mask, out] = [f32(2, 8, 16), f32(2, 12, 16), f32(2, 12, 4), f32(), f32(2, 8, 4)];
    expect(flopsOf('attention', [q, k, v, mask], { scale: 1 }, out)).toBe(2 * 2 * 8 * 12 * (16 + 4));
    // causal: query i sees keys 0 .. i + 4, 5 + 6 + ... + 12 = 68 pairs in all
    expect(flopsOf('attention', [q, k, v, mask], { scale: 1, causal: true }, out)).toBe(2 * 2 * 68 * (16 + 4));
  });
});
