// The sampler's random numbers: SplitMix64 (Steele, Lea and Flood, "Fast splittable
// pseudorandom number generators", OOPSLA 2014; the generator behind Java's SplittableRandom)
// used as a counter-based generator, so the draw for generated token i depends only on the
// seed and i, never on how many draws came before. Any language reproduces it in a few lines.

const MASK64 = (1n << 64n) - 1n;
const GOLDEN_GAMMA = 0x9e3779b97f4a7c15n;

/**
 * The `index`-th output (from 0) of SplitMix64 started from state `seed`, as a 64-bit
 * unsigned bigint: z = seed + (index + 1)·γ mod 2⁶⁴, then the mix13 finaliser.
 *
 *     splitMix64(0n, 0) === 0xe220a8397b1dcdafn
 */
export function splitMix64(seed: bigint, index: number): bigint {
  let z = (BigInt.asUintN(64, seed) + BigInt(index + 1) * GOLDEN_GAMMA) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/** A uniform double in [0, 1) from the top 53 bits of `splitMix64(seed, index)`. */
export function uniform(seed: bigint, index: number): number {
  return Number(splitMix64(seed, index) >> 11n) / 2 ** 53;
}

/** A seed for callers that gave none: 64 bits from the platform's crypto.getRandomValues. */
export function randomSeed(): bigint {
  const words = new Uint32Array(2);
  globalThis.crypto.getRandomValues(words);
  return (BigInt(words[0]!) << 32n) | BigInt(words[1]!);
}
