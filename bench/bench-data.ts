// Seeded inputs shared by the bench programs, so the suite and the attention sweep feed the
// same values.

/** A seeded xorshift stream of uniform floats in [-1, 1). */
export function uniform(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 31 - 1;
  };
}

/** The additive causal mask: -1e9 above the diagonal, 0 elsewhere. */
export function causalMask(seq: number): Float32Array {
  const mask = new Float32Array(seq * seq);
  for (let i = 0; i < seq; i++) for (let j = i + 1; j < seq; j++) mask[i * seq + j] = -1e9;
  return mask;
}
