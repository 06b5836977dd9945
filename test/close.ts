// The comparison the GPU and browser suites make with the CPU reference:
// |actual - expected| ≤ atol + rtol·|expected| at every element; a failure names the worst one.
import { expect } from 'vitest';

export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol = 0, label = 'output', detail = ''): void {
  expect(actual.length, `${label} length`).toBe(expected.length);
  let worst = { i: -1, excess: 0 };
  for (let i = 0; i < expected.length; i++) {
    const excess = Math.abs(actual[i] - expected[i]) - (atol + rtol * Math.abs(expected[i]));
    if (!(excess <= 0) && !(excess < worst.excess)) worst = { i, excess: Number.isNaN(excess) ? Infinity : excess };
  }
  if (worst.i >= 0) {
    expect.fail(`${label}[${worst.i}]: got ${actual[worst.i]}, reference ${expected[worst.i]} (atol ${atol}, rtol ${rtol})${detail ? `\n${detail}` : ''}`);
  }
}
