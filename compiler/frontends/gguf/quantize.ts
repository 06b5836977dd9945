// float32 → ggml blocks, the inverse of runtime/ggml-types.ts's dequantizers (whose comments
// give each block's byte layout). The test tooling writes GGUF fixtures with these, and a
// compile step that quantizes f32 weights would too.
//
// Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 follow ggml's quantize_row_*_ref operation for operation in
// float32 (its C casts and roundf included), so they give ggml's bytes. The K-quants are
// simpler than ggml's reference, which searches each sub-block for the scale and min of least
// weighted squared error (make_qkx2_quants / make_qx_quants): here a sub-block's range is
// covered exactly, with its 6-bit (8-bit for Q6_K) scale rounded up rather than to nearest,
// so every element lies within half a quantization step of its value (Q6_K: one step at the
// clamped edge), a bound that holds for any input. Error per type, and why, in test/gguf.test.ts.
import { ggmlType, isSupportedType, QK_K, type SupportedTypeName } from '../../../runtime/ggml-types';
import { f16BitsToF32, f32ToF16Bits } from '../../../runtime/f16';

const fround = Math.fround;

/** C's roundf: halves away from zero. */
const roundAway = (v: number): number => Math.sign(v) * Math.round(Math.abs(v));

/** ggml's nearest_int: to nearest, halves to even. */
function nearestInt(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function putF16(out: Uint8Array, at: number, bits: number): void {
  out[at] = bits & 0xff;
  out[at + 1] = bits >> 8;
}

/** The f16 nearest to v (ties to even), as GGML_FP32_TO_FP16 rounds. */
function f16Bits(v: number): number {
  return f32ToF16Bits(v);
}

/** The smallest f16 ≥ v ≥ 0: a scale rounded up, so that the range it must cover still fits. */
function f16Up(v: number): number {
  let bits = f32ToF16Bits(v);
  if (f16BitsToF32(bits) < v) bits++;
  return bits;
}

/** The value with the largest magnitude (the first of equals), as ggml's reference finds it. */
function signedMax(x: Float32Array, from: number, n: number): number {
  let amax = 0;
  let max = 0;
  for (let i = from; i < from + n; i++) {
    if (amax < Math.abs(x[i])) {
      amax = Math.abs(x[i]);
      max = x[i];
    }
  }
  return max;
}

type Quantizer = (x: Float32Array, out: Uint8Array, blocks: number) => void;

/** Q4_0 / Q5_0 (ggml reference): d = max / −2^(bits−1), the value of largest magnitude maps to 0. */
function symmetric(bits: 4 | 5): Quantizer {
  const half = 1 << (bits - 1);
  const top = (1 << bits) - 1;
  const size = bits === 4 ? 18 : 22;
  return (x, out, blocks) => {
    for (let k = 0; k < blocks; k++) {
      const at = size * k;
      const d = fround(signedMax(x, 32 * k, 32) / -half);
      const id = d ? fround(1 / d) : 0;
      putF16(out, at, f16Bits(d));
      let qh = 0;
      for (let j = 0; j < 16; j++) {
        const x0 = fround(x[32 * k + j] * id);
        const x1 = fround(x[32 * k + 16 + j] * id);
        const q0 = Math.min(top, Math.trunc(fround(x0 + half + 0.5)));
        const q1 = Math.min(top, Math.trunc(fround(x1 + half + 0.5)));
        out[at + size - 16 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
        qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
      }
      if (bits === 5) for (let i = 0; i < 4; i++) out[at + 2 + i] = (qh >>> (8 * i)) & 0xff;
    }
  };
}

/** Q4_1 / Q5_1 (ggml reference): d = (max − min) / (2^bits − 1), m = min. */
function affine(bits: 4 | 5): Quantizer {
  const top = (1 << bits) - 1;
  const size = bits === 4 ? 20 : 24;
  return (x, out, blocks) => {
    for (let k = 0; k < blocks; k++) {
      const at = size * k;
      let min = Infinity;
      let max = -Infinity;
      for (let i = 32 * k; i < 32 * k + 32; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
      }
      const d = fround(fround(max - min) / top);
      const id = d ? fround(1 / d) : 0;
      putF16(out, at, f16Bits(d));
      putF16(out, at + 2, f16Bits(min));
      let qh = 0;
      for (let j = 0; j < 16; j++) {
        const x0 = fround(fround(x[32 * k + j] - min) * id);
        const x1 = fround(fround(x[32 * k + 16 + j] - min) * id);
        const q0 = Math.min(top, Math.trunc(fround(x0 + 0.5)));
        const q1 = Math.min(top, Math.trunc(fround(x1 + 0.5)));
        out[at + size - 16 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
        qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
      }
      if (bits === 5) for (let i = 0; i < 4; i++) out[at + 4 + i] = (qh >>> (8 * i)) & 0xff;
    }
  };
}

/**
 * Q4_K / Q5_K: per 32-element sub-block s, min m[s] = −min(0, min x) and scale
 * sc[s] = (max x + m̂[s]) / nmax, both as 6-bit multiples of the super-block's f16 dmin and d,
 * rounded up (ceil) so that [−m̂, nmax·ŝ − m̂] covers the sub-block; then q = nearest((x + m̂)/ŝ).
 */
function withMins(bits: 4 | 5): Quantizer {
  const nmax = (1 << bits) - 1;
  const size = bits === 4 ? 144 : 176;
  const qsAt = bits === 4 ? 16 : 48;
  return (x, out, blocks) => {
    const mins = new Float64Array(8);
    const highs = new Float64Array(8);
    const L = new Uint8Array(QK_K);
    for (let k = 0; k < blocks; k++) {
      const at = size * k;
      const from = QK_K * k;
      for (let s = 0; s < 8; s++) {
        let lo = 0;
        let hi = -Infinity;
        for (let i = from + 32 * s; i < from + 32 * s + 32; i++) {
          lo = Math.min(lo, x[i]);
          hi = Math.max(hi, x[i]);
        }
        mins[s] = -lo;
        highs[s] = hi;
      }
      const dminBits = f16Up(Math.max(...mins) / 63);
      const dmin = f16BitsToF32(dminBits);
      const lm = [...mins].map((m) => (dmin > 0 ? Math.min(63, Math.ceil(m / dmin)) : 0));
      const mHat = lm.map((l) => fround(dmin * l));
      const scales = [...highs].map((h, s) => Math.max(0, (h + mHat[s]) / nmax));
      const dBits = f16Up(Math.max(...scales) / 63);
      const d = f16BitsToF32(dBits);
      const ls = scales.map((sc) => (d > 0 ? Math.min(63, Math.ceil(sc / d)) : 0));
      putF16(out, at, dBits);
      putF16(out, at + 2, dminBits);
      for (let s = 0; s < 8; s++) {
        if (s < 4) {
          out[at + 4 + s] = ls[s];
          out[at + 8 + s] = lm[s];
        } else {
          out[at + 8 + s] = (ls[s] & 0xf) | ((lm[s] & 0xf) << 4);
          out[at + 4 + s - 4] |= (ls[s] >> 4) << 6;
          out[at + 4 + s] |= (lm[s] >> 4) << 6;
        }
        const sHat = fround(d * ls[s]);
        for (let i = 32 * s; i < 32 * s + 32; i++) {
          L[i] = sHat > 0 ? Math.max(0, Math.min(nmax, nearestInt(fround(fround(x[from + i] + mHat[s]) / sHat)))) : 0;
        }
      }
      for (let c = 0; c < 4; c++) {
        for (let l = 0; l < 32; l++) {
          const lo = L[64 * c + l];
          const hi = L[64 * c + 32 + l];
          out[at + qsAt + 32 * c + l] = (lo & 0xf) | ((hi & 0xf) << 4);
          if (bits === 5) out[at + 16 + l] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
        }
      }
    }
  };
}

/**
 * Q6_K: per 16-element sub-block, scale s = max / −32 (the value of largest magnitude maps to
 * −32, as in ggml), stored as an int8 multiple of the super-block's f16 d = max|s| / 127 with
 * its magnitude rounded up; q = clamp(nearest(x / ŝ), −32, 31) + 32.
 */
const q6K: Quantizer = (x, out, blocks) => {
  const L = new Uint8Array(QK_K);
  const scales = new Float64Array(16);
  for (let k = 0; k < blocks; k++) {
    const at = 210 * k;
    const from = QK_K * k;
    for (let s = 0; s < 16; s++) scales[s] = signedMax(x, from + 16 * s, 16) / -32;
    const maxAbs = Math.max(...scales.map(Math.abs));
    if (maxAbs === 0) continue; // an all-zero block: all bytes 0 (d = 0)
    const dBits = f16Up(maxAbs / 127);
    const d = f16BitsToF32(dBits);
    putF16(out, at + 208, dBits);
    for (let s = 0; s < 16; s++) {
      const sc = Math.sign(scales[s]) * Math.min(127, Math.ceil(Math.abs(scales[s]) / d));
      out[at + 192 + s] = sc & 0xff;
      const sHat = fround(d * sc);
      for (let i = 16 * s; i < 16 * s + 16; i++) {
        L[i] = sHat !== 0 ? Math.max(-32, Math.min(31, nearestInt(fround(x[from + i] / sHat)))) + 32 : 32;
      }
    }
    for (let h = 0; h < 2; h++) {
      for (let l = 0; l < 32; l++) {
        const [a, b, c, e] = [L[128 * h + l], L[128 * h + 32 + l], L[128 * h + 64 + l], L[128 * h + 96 + l]];
        out[at + 64 * h + l] = (a & 0xf) | ((c & 0xf) << 4);
        out[at + 64 * h + 32 + l] = (b & 0xf) | ((e & 0xf) << 4);
        out[at + 128 + 32 * h + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
      }
    }
  }
};

const QUANTIZERS: Record<SupportedTypeName, Quantizer> = {
  F32(x, out, n) {
    const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
    for (let i = 0; i < n; i++) v.setFloat32(4 * i, x[i], true);
  },
  F16(x, out, n) {
    for (let i = 0; i < n; i++) putF16(out, 2 * i, f16Bits(x[i]));
  },
  // as gguf-py: NaNs made quiet, then round to nearest even on the upper 16 bits
  BF16(x, out, n) {
    const word = new Uint32Array(1);
    const f = new Float32Array(word.buffer);
    for (let i = 0; i < n; i++) {
      f[0] = x[i];
      let w = word[0];
      if ((w & 0x7fffffff) > 0x7f800000) w = ((w & 0xffff0000) | (64 << 16)) >>> 0;
      const bits = Math.floor((w + 0x7fff + ((w >>> 16) & 1)) / 65536) & 0xffff;
      putF16(out, 2 * i, bits);
    }
  },
  Q8_0(x, out, blocks) {
    for (let k = 0; k < blocks; k++) {
      let amax = 0;
      for (let i = 32 * k; i < 32 * k + 32; i++) amax = Math.max(amax, Math.abs(x[i]));
      const d = fround(amax / 127);
      const id = d ? fround(1 / d) : 0;
      putF16(out, 34 * k, f16Bits(d));
      for (let i = 0; i < 32; i++) out[34 * k + 2 + i] = roundAway(fround(x[32 * k + i] * id)) & 0xff;
    }
  },
  Q4_0: symmetric(4),
  Q5_0: symmetric(5),
  Q4_1: affine(4),
  Q5_1: affine(5),
  Q4_K: withMins(4),
  Q5_K: withMins(5),
  Q6_K: q6K,
};

/** `values` (a whole number of blocks, rows along ne[0] one after another) as blocks of `type`. */
export function quantize(type: SupportedTypeName, values: Float32Array): Uint8Array {
  if (!isSupportedType(type)) throw new Error(`cannot quantize to ${type}`);
  const t = ggmlType(type);
  if (values.length % t.blockElements !== 0) throw new Error(`${values.length} values are not a whole number of ${type} blocks of ${t.blockElements}`);
  const blocks = values.length / t.blockElements;
  const out = new Uint8Array(blocks * t.blockBytes);
  QUANTIZERS[type](values, out, t.blockElements === 1 ? values.length : blocks);
  return out;
}
