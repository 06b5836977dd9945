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

/**
 * The largest |out - reference| over `rows` ((head, query row) pairs) of attention over the feeds
 * softmax(q·kᵀ/√d)·v, causal or not, q, k, v and out [heads, seq, d]; the reference in float64.
 */
export function attentionError(
  f: Record<string, Float32Array>,
  out: Float32Array,
  { seq, d, causal }: { seq: number; d: number; causal: boolean },
  rows: readonly [number, number][],
): number {
  const scale = 1 / Math.sqrt(d);
  let worst = 0;
  for (const [h, i] of rows) {
    const q = f.q.subarray((h * seq + i) * d, (h * seq + i + 1) * d);
    const scores = Array.from({ length: seq }, (_, j) => {
      let dot = 0;
      for (let p = 0; p < d; p++) dot += q[p] * f.k[(h * seq + j) * d + p];
      return causal && j > i ? -Infinity : dot * scale;
    });
    const max = Math.max(...scores);
    const e = scores.map((x) => Math.exp(x - max));
    const sum = e.reduce((a, b) => a + b, 0);
    for (let p = 0; p < d; p++) {
      let want = 0;
      for (let j = 0; j < seq; j++) want += (e[j] / sum) * f.v[(h * seq + j) * d + p];
      const got = out[(h * seq + i) * d + p];
      worst = Math.max(worst, Number.isFinite(got) ? Math.abs(got - want) : Infinity);
    }
  }
  return worst;
}

