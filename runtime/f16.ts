// IEEE binary16 to and from numbers: f16 buffers, checkpoint and tensor files, GGUF scales.

const f32View = new Float32Array(1);
const u32View = new Uint32Array(f32View.buffer);

/** IEEE binary16 bits of `value`, rounded to nearest even (as a GPU's f16 conversion does). */
export function f32ToF16Bits(value: number): number {
  f32View[0] = value;
  const x = u32View[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0); // inf / nan
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow to zero
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let rounded = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    if (rest > half || (rest === half && rounded & 1)) rounded++;
    return sign | rounded;
  }
  let bits = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && bits & 1)) bits++; // may carry into the exponent, correctly
  return sign | bits;
}

/** The value of IEEE binary16 bits (subnormals, infinities and NaN included). */
export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** bfloat16 bits of `value` (the upper half of its binary32), rounded to nearest even; NaN stays NaN. */
export function f32ToBf16Bits(value: number): number {
  f32View[0] = value;
  const x = u32View[0];
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The value of bfloat16 bits: the upper half of a binary32. */
export function bf16BitsToF32(bits: number): number {
  u32View[0] = (bits & 0xffff) << 16;
  return f32View[0];
}
