// Host sampling: each processor's kept set on hand-computed logits, transformers' order, a
// cross-check of the fast paths against transformers' formulation written out plainly,
// sampling frequencies against the renormalised distribution (chi-square), seeds, and the
// validation of options and generation_config.json.
import { describe, expect, it } from 'vitest';
import {
  applyRepetitionPenalty,
  nextTokenDistribution,
  readGenerationConfig,
  resolveGenerationOptions,
  sampleFromDistribution,
  splitMix64,
  uniform,
  type SamplingConfig,
  type TokenDistribution,
} from '../runtime/text';

const sample = (over: Partial<SamplingConfig>): SamplingConfig => ({ doSample: true, temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, ...over });
const logitsOf = (...values: number[]) => Float32Array.from(values);
const kept = (d: TokenDistribution) => [...d.ids];
const probs = (d: TokenDistribution) => [...d.probs];

function thrown(work: () => unknown): Error & { kind?: string } {
  try {
    work();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

describe('SplitMix64', () => {
  it('gives the reference outputs', () => {
    // the first outputs of SplitMix64 from state 0, as published with the generator
    expect([0, 1, 2].map((i) => splitMix64(0n, i))).toEqual([0xe220a8397b1dcdafn, 0x6e789e6aa1b965f4n, 0x06c45d188009454fn]);
    expect(splitMix64(1234567n, 0)).toBe(0x599ed017fb08fc85n); // checked with Python integers
    expect(splitMix64(2n ** 64n - 1n, 5)).toBe(0xd31dadbda438bb33n);
  });

  it('draws uniform doubles in [0, 1) that depend only on seed and index', () => {
    const draws = Array.from({ length: 10_000 }, (_, i) => uniform(42n, i));
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...draws)).toBeLessThan(1);
    expect(draws.reduce((a, b) => a + b) / draws.length).toBeCloseTo(0.5, 1);
    expect(uniform(42n, 7)).toBe(draws[7]);
    expect(uniform(43n, 7)).not.toBe(draws[7]);
  });
});

describe('processors on hand-computed logits', () => {
  it('greedy takes the first of the largest logits', () => {
    expect(kept(nextTokenDistribution(logitsOf(1, 3, 3, 2), [], sample({ doSample: false })))).toEqual([1]);
    expect(kept(nextTokenDistribution(logitsOf(1, 3, 3, 2), [], sample({ temperature: 0 })))).toEqual([1]);
  });

  it('repetition penalty divides positive logits and multiplies negative ones, once per seen token', () => {
    const scores = logitsOf(2, -1, 0.5, 0, 4);
    applyRepetitionPenalty(scores, [0, 1, 1, 3, 3], 2);
    expect([...scores]).toEqual([1, -2, 0.5, 0, 4]);
    // it applies when greedy too: token 0 (2 → 1) falls below token 1 (1.5)
    expect(kept(nextTokenDistribution(logitsOf(2, 1.5), [0], sample({ doSample: false, repetitionPenalty: 2 })))).toEqual([1]);
    expect(kept(nextTokenDistribution(logitsOf(2, 1.5), [0], sample({ doSample: false })))).toEqual([0]);
  });

  it('top-k keeps the k largest and every tie with the k-th', () => {
    const logits = logitsOf(3, 1, 2, 0.5, 2, -1);
    expect(kept(nextTokenDistribution(logits, [], sample({ topK: 1 })))).toEqual([0]);
    expect(kept(nextTokenDistribution(logits, [], sample({ topK: 2 })))).toEqual([0, 2, 4]); // 2 ties with the 2nd largest
    const d = nextTokenDistribution(logits, [], sample({ topK: 4 }));
    expect(kept(d)).toEqual([0, 1, 2, 4]);
    const z = Math.exp(3) + Math.exp(1) + 2 * Math.exp(2);
    probs(d).forEach((p, j) => expect(p).toBeCloseTo(Math.exp(logits[kept(d)[j]!]!) / z, 12));
    expect(kept(nextTokenDistribution(logits, [], sample({ topK: 100 })))).toEqual([0, 1, 2, 3, 4, 5]);
  });

  // probabilities exactly 1/2, 1/4, 1/8, 1/16, 1/16
  const halves = logitsOf(Math.log(0.5), Math.log(0.25), Math.log(0.125), Math.log(0.0625), Math.log(0.0625));

  it('top-p keeps a token while the mass above it is below p', () => {
    expect(kept(nextTokenDistribution(halves, [], sample({ topP: 0.7 })))).toEqual([0, 1]); // above token 2: 0.75
    probs(nextTokenDistribution(halves, [], sample({ topP: 0.7 }))).forEach((p, j) => expect(p).toBeCloseTo([2 / 3, 1 / 3][j]!, 6));
    expect(kept(nextTokenDistribution(halves, [], sample({ topP: 0.8 })))).toEqual([0, 1, 2]);
    expect(kept(nextTokenDistribution(halves, [], sample({ topP: 0.9 })))).toEqual([0, 1, 2, 3]); // above token 3: 0.875
    expect(kept(nextTokenDistribution(halves, [], sample({ topP: 0 })))).toEqual([0]); // the top token always stays
  });

  it('min-p keeps tokens at least min_p times as likely as the most likely', () => {
    expect(kept(nextTokenDistribution(halves, [], sample({ minP: 0.3 })))).toEqual([0, 1]); // floor 0.15
    expect(kept(nextTokenDistribution(halves, [], sample({ minP: 0.2 })))).toEqual([0, 1, 2]); // floor 0.1
    expect(kept(nextTokenDistribution(halves, [], sample({ minP: 1 })))).toEqual([0]);
  });

  it('temperature divides the logits before top-p looks at them (transformers order)', () => {
    const hot = nextTokenDistribution(halves, [], sample({ temperature: 2 }));
    const roots = [0.5, 0.25, 0.125, 0.0625, 0.0625].map(Math.sqrt);
    const sum = roots.reduce((a, b) => a + b);
    probs(hot).forEach((p, j) => expect(p).toBeCloseTo(roots[j]! / sum, 6));
    // T = 0.5 squares the probabilities: 0.744, 0.186, ...: top-p 0.7 keeps the first alone (at T = 1 it keeps two)
    expect(kept(nextTokenDistribution(halves, [], sample({ temperature: 0.5, topP: 0.7 })))).toEqual([0]);
  });

  it('applies penalty, temperature, top-k, top-p and min-p in turn', () => {
    // by hand (T = 0.7): top-k 6 drops 6, 7; softmax over 0-5 is 0.462 0.226 0.147 0.111 0.041 0.013;
    // top-p 0.95 drops 5 (mass above it 0.987); min-p 0.1 drops 4 (0.041 < 0.0462)
    const logits = logitsOf(2.0, 1.5, 1.2, 1.0, 0.3, -0.5, -1.0, -3.0);
    const d = nextTokenDistribution(logits, [], sample({ temperature: 0.7, topK: 6, topP: 0.95, minP: 0.1 }));
    expect(kept(d)).toEqual([0, 1, 2, 3]);
    const w = [2.0, 1.5, 1.2, 1.0].map((l) => Math.exp(l / 0.7));
    const z = w.reduce((a, b) => a + b);
    probs(d).forEach((p, j) => expect(p).toBeCloseTo(w[j]! / z, 6));
    // a seen token 0 penalised by 4 (2 → 0.5) before the warpers: top-k 6 keeps 0-5 again; softmax
    // 0.092 0.382 0.249 0.187 0.069 0.022 (ids 0-5); top-p drops 5 (mass above it 0.978); min-p keeps 0.069 >= 0.038
    const penalised = nextTokenDistribution(logits, [0], sample({ temperature: 0.7, topK: 6, topP: 0.95, minP: 0.1, repetitionPenalty: 4 }));
    expect(kept(penalised)).toEqual([0, 1, 2, 3, 4]);
    const w4 = [0.5, 1.5, 1.2, 1.0, 0.3].map((l) => Math.exp(l / 0.7));
    const z4 = w4.reduce((a, b) => a + b);
    probs(penalised).forEach((p, j) => expect(p).toBeCloseTo(w4[j]! / z4, 6));
  });

  it('refuses logits it cannot sample', () => {
    let error = thrown(() => nextTokenDistribution(logitsOf(0, NaN, 1), [], sample({})));
    expect(error.kind).toBe('bad-logits');
    expect(error.message).toBe("the model's logit for token 1 is NaN: logits must be finite or -Infinity");
    error = thrown(() => nextTokenDistribution(logitsOf(-Infinity, -Infinity), [], sample({ doSample: false })));
    expect(error.message).toBe('every one of the 2 logits is -Infinity: no token can be chosen');
    expect(kept(nextTokenDistribution(logitsOf(-Infinity, 0, -Infinity), [], sample({ topK: 2 })))).toEqual([1]);
  });
});

describe('fast paths against transformers formulation', () => {
  // transformers' TopPLogitsWarper and MinPLogitsWarper written out plainly: sort ascending,
  // drop where the cumulative probability <= 1 - p (never the last); drop p < min_p · max p
  function reference(logits: Float32Array, topK: number, topP: number, minP: number): number[] {
    let ids = [...logits.keys()];
    if (topK > 0) {
      const kth = [...logits].sort((a, b) => b - a)[topK - 1]!;
      ids = ids.filter((i) => logits[i]! >= kth);
    }
    const softmax = (set: number[]) => {
      const max = Math.max(...set.map((i) => logits[i]!));
      const w = set.map((i) => Math.exp(logits[i]! - max));
      const sum = w.reduce((a, b) => a + b);
      return new Map(set.map((i, j) => [i, w[j]! / sum]));
    };
    if (topP < 1) {
      const p = softmax(ids);
      const ascending = [...ids].sort((a, b) => p.get(a)! - p.get(b)!);
      let cumulative = 0;
      const dropped = new Set<number>();
      ascending.forEach((i, j) => {
        cumulative += p.get(i)!;
        if (cumulative <= 1 - topP && j < ascending.length - 1) dropped.add(i);
      });
      ids = ids.filter((i) => !dropped.has(i));
    }
    if (minP > 0) {
      const p = softmax(ids);
      const max = Math.max(...p.values());
      ids = ids.filter((i) => p.get(i)! >= minP * max);
    }
    return ids;
  }

  it('keep the same sets on random logits', () => {
    let draw = 0;
    for (let trial = 0; trial < 40; trial++) {
      const vocab = 200 + trial * 37;
      const spread = 1 + (trial % 5) * 2; // from flat to peaked distributions
      const logits = Float32Array.from({ length: vocab }, () => (uniform(7n, draw++) - 0.5) * 2 * spread);
      const topK = [0, 5, 40][trial % 3]!;
      const topP = [1, 0.5, 0.9, 0.99][trial % 4]!;
      const minP = [0, 0.02, 0.2][trial % 3 === 1 ? 1 : trial % 2]!;
      const ours = kept(nextTokenDistribution(logits, [], sample({ topK, topP, minP })));
      expect(ours, `trial ${trial}: topK ${topK} topP ${topP} minP ${minP}`).toEqual(reference(logits, topK, topP, minP));
    }
  });
});

describe('sampling frequencies', () => {
  // chi-square 99.9% quantiles by degrees of freedom
  const CHI2_999: Record<number, number> = { 1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32 };

  function counts(distribution: TokenDistribution, seed: bigint, n: number): Map<number, number> {
    const seen = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const token = sampleFromDistribution(distribution, uniform(seed, i));
      seen.set(token, (seen.get(token) ?? 0) + 1);
    }
    return seen;
  }

  function chiSquare(observed: Map<number, number>, expected: Map<number, number>, n: number): number {
    let chi2 = 0;
    for (const [token, p] of expected) chi2 += ((observed.get(token) ?? 0) - n * p) ** 2 / (n * p);
    return chi2;
  }

  it('match the renormalised distribution, and a wrong distribution fails the same bound', () => {
    const logits = logitsOf(2.0, 1.5, 1.2, 1.0, 0.3, -0.5, -1.0, -3.0);
    const n = 20_000;
    const w = [2.0, 1.5, 1.2, 1.0].map((l) => Math.exp(l / 0.7));
    const z = w.reduce((a, b) => a + b);
    const expected = new Map(w.map((x, i) => [i, x / z]));
    for (const seed of [1n, 2n, 3n]) {
      const observed = counts(nextTokenDistribution(logits, [], sample({ temperature: 0.7, topK: 6, topP: 0.95, minP: 0.1 })), seed, n);
      expect([...observed.keys()].sort()).toEqual([0, 1, 2, 3]); // nothing filtered is ever drawn
      expect(chiSquare(observed, expected, n)).toBeLessThan(CHI2_999[3]!);
      // the same draws judged against the distribution without temperature: far outside the bound
      const w1 = [2.0, 1.5, 1.2, 1.0].map(Math.exp);
      const z1 = w1.reduce((a, b) => a + b);
      expect(chiSquare(observed, new Map(w1.map((x, i) => [i, x / z1])), n)).toBeGreaterThan(10 * CHI2_999[3]!);
    }
  });

  it('match plain softmax over a larger vocabulary', () => {
    const logits = Float32Array.from({ length: 6 }, (_, i) => Math.log(i + 1));
    const n = 30_000;
    const observed = counts(nextTokenDistribution(logits, [], sample({})), 99n, n);
    const expected = new Map(Array.from({ length: 6 }, (_, i) => [i, (i + 1) / 21]));
    expect(chiSquare(observed, expected, n)).toBeLessThan(CHI2_999[5]!);
  });

  it('are reproducible with a seed', () => {
    const d = nextTokenDistribution(logitsOf(0, 0.5, 1, 1.5), [], sample({}));
    const run = (seed: bigint) => Array.from({ length: 50 }, (_, i) => sampleFromDistribution(d, uniform(seed, i)));
    expect(run(5n)).toEqual(run(5n));
    expect(run(5n)).not.toEqual(run(6n));
  });
});

describe('generation options', () => {
  it('default as transformers does, except the length', () => {
    const o = resolveGenerationOptions({ seed: 3 });
    expect(o).toMatchObject({ doSample: false, temperature: 1, topK: 50, topP: 1, minP: 0, repetitionPenalty: 1, maxNewTokens: 256, minNewTokens: 0, seed: 3n });
    expect(resolveGenerationOptions({ maxLength: 100 }).maxNewTokens).toBeUndefined();
    expect(typeof resolveGenerationOptions({}).seed).toBe('bigint');
  });

  it('name the bad field and its value', () => {
    const message = (options: object) => thrown(() => resolveGenerationOptions(options as never)).message;
    expect(message({ topP: 1.5 })).toBe('generation option topP must be a number in [0, 1]; got 1.5');
    expect(message({ topK: 2.5 })).toBe('generation option topK must be an integer >= 0; got 2.5');
    expect(message({ temperature: -1 })).toBe('generation option temperature must be a finite number >= 0; got -1');
    expect(message({ repetitionPenalty: 0 })).toBe('generation option repetitionPenalty must be a finite number > 0; got 0');
    expect(message({ maxNewTokens: 0 })).toBe('generation option maxNewTokens must be an integer >= 1; got 0');
    expect(message({ stopTokenIds: [2, -1] })).toBe('generation option stopTokenIds must be an array of token ids (integers >= 0); got [2,-1]');
    expect(message({ seed: 1.5 })).toBe('generation option seed must be an integer in [0, 2^53) or a bigint; got 1.5');
    expect(message({ doSample: 'yes' })).toBe('generation option doSample must be a boolean; got "yes"');
    expect(message({ top_p: 0.9 })).toMatch(/^unknown generation option top_p \(did you mean topP\?\); the options are doSample, /);
    expect(thrown(() => resolveGenerationOptions({ topP: 2 })).kind).toBe('bad-option');
  });

  it('read generation_config.json', () => {
    // Llama-3-8B-Instruct's generation_config.json
    const llama3 = { bos_token_id: 128000, do_sample: true, eos_token_id: [128001, 128009], max_length: 4096, temperature: 0.6, top_p: 0.9, transformers_version: '4.40.0.dev0' };
    expect(readGenerationConfig(llama3)).toEqual({ doSample: true, stopTokenIds: [128001, 128009], maxLength: 4096, temperature: 0.6, topP: 0.9 });
    expect(readGenerationConfig('{"eos_token_id": 2, "min_p": null, "repetition_penalty": 1.1}')).toEqual({ stopTokenIds: [2], repetitionPenalty: 1.1 });
    expect(readGenerationConfig(new TextEncoder().encode('{"top_k": 20}'))).toEqual({ topK: 20 });
    const options = resolveGenerationOptions({ ...readGenerationConfig(llama3), temperature: 0.8 });
    expect(options).toMatchObject({ doSample: true, temperature: 0.8, topP: 0.9, topK: 50, maxLength: 4096, maxNewTokens: undefined });
  });

  it('name the file and field of a bad generation_config.json', () => {
    const message = (json: unknown, file?: string) => thrown(() => readGenerationConfig(json, file)).message;
    expect(message({ top_k: -1 })).toBe('generation_config.json: top_k must be an integer >= 0; got -1');
    expect(message({ temperature: '0.7' }, 'models/x/generation_config.json')).toBe('models/x/generation_config.json: temperature must be a finite number >= 0; got "0.7"');
    expect(message({ eos_token_id: 'eos' })).toBe('generation_config.json: eos_token_id must be a token id or a list of them; got "eos"');
    expect(message('{"top_k": ')).toMatch(/^generation_config\.json: is not JSON: /);
    expect(message('[1]')).toBe('generation_config.json: must hold a JSON object; got an array');
  });
});
