// The tensor types of ggml (llama.cpp's tensor library) as GGUF files store them: each type's
// id, block size and bytes per block, the byte layout of one block, and a CPU reference
// dequantizer. GPU kernels read the same blocks in place, so the layouts below are the contract.
//
// Conventions for every layout: little-endian; `f16` is IEEE binary16; offsets are bytes from
// the start of the block; blocks follow each other with no padding, a row of `ne[0]` elements
// being `ne[0] / blockElements` consecutive blocks. A tensor's data in a GGUF file starts on
// the file's alignment (32 by default), so blocks of an even size keep their f16 fields
// 2-byte aligned; u32 fields inside blocks (Q5_0/Q5_1 `qh`) are not 4-byte aligned in general.
//
// The dequantizers follow ggml's `dequantize_row_*` and gguf-py's `quants.py` operation for
// operation in float32 (d·sc first, then ·q, then − m), so they match gguf-py bit for bit.
import { PlanError } from './errors';
import { f16BitsToF32 } from './f16';

/** Super-block size of the K-quants. */
export const QK_K = 256;

export type GgmlTypeName =
  | 'F32' | 'F16' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q8_0' | 'Q8_1'
  | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K' | 'Q8_K'
  | 'IQ2_XXS' | 'IQ2_XS' | 'IQ3_XXS' | 'IQ1_S' | 'IQ4_NL' | 'IQ3_S' | 'IQ2_S' | 'IQ4_XS'
  | 'I8' | 'I16' | 'I32' | 'I64' | 'F64' | 'IQ1_M' | 'BF16' | 'TQ1_0' | 'TQ2_0' | 'MXFP4';

/** The types this project dequantizes (and, in compiler/frontends/gguf/quantize.ts, quantizes). */
export const SUPPORTED_TYPES = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K'] as const;
export type SupportedTypeName = (typeof SUPPORTED_TYPES)[number];

export interface GgmlType {
  /** the `ggml_type` value stored in a GGUF tensor info */
  id: number;
  name: GgmlTypeName;
  /** elements per block (1 for the plain types) */
  blockElements: number;
  /** bytes per block */
  blockBytes: number;
}

// ids and sizes as ggml.h / gguf-py's GGML_QUANT_SIZES define them. Every known type is listed
// so that a file holding, say, a Q2_K tensor is still read (its byte length is known) and only
// dequantizing that tensor is refused. Ids 4, 5 and 31–33 belonged to removed types.
const TABLE: [number, GgmlTypeName, number, number][] = [
  [0, 'F32', 1, 4],
  [1, 'F16', 1, 2],
  [2, 'Q4_0', 32, 18],
  [3, 'Q4_1', 32, 20],
  [6, 'Q5_0', 32, 22],
  [7, 'Q5_1', 32, 24],
  [8, 'Q8_0', 32, 34],
  [9, 'Q8_1', 32, 36],
  [10, 'Q2_K', QK_K, 84],
  [11, 'Q3_K', QK_K, 110],
  [12, 'Q4_K', QK_K, 144],
  [13, 'Q5_K', QK_K, 176],
  [14, 'Q6_K', QK_K, 210],
  [15, 'Q8_K', QK_K, 292],
  [16, 'IQ2_XXS', QK_K, 66],
  [17, 'IQ2_XS', QK_K, 74],
  [18, 'IQ3_XXS', QK_K, 98],
  [19, 'IQ1_S', QK_K, 50],
  [20, 'IQ4_NL', 32, 18],
  [21, 'IQ3_S', QK_K, 110],
  [22, 'IQ2_S', QK_K, 82],
  [23, 'IQ4_XS', QK_K, 136],
  [24, 'I8', 1, 1],
  [25, 'I16', 1, 2],
  [26, 'I32', 1, 4],
  [27, 'I64', 1, 8],
  [28, 'F64', 1, 8],
  [29, 'IQ1_M', QK_K, 56],
  [30, 'BF16', 1, 2],
  [34, 'TQ1_0', QK_K, 54],
  [35, 'TQ2_0', QK_K, 66],
  [39, 'MXFP4', 32, 17],
];

const BY_ID = new Map<number, GgmlType>(TABLE.map(([id, name, blockElements, blockBytes]) => [id, { id, name, blockElements, blockBytes }]));
const BY_NAME = new Map<GgmlTypeName, GgmlType>([...BY_ID.values()].map((t) => [t.name, t]));

/** The type with this `ggml_type` id, or undefined for an id ggml does not (or no longer) define. */
export function ggmlTypeById(id: number): GgmlType | undefined {
  return BY_ID.get(id);
}

export function ggmlType(name: GgmlTypeName): GgmlType {
  return BY_NAME.get(name)!;
}

export function isSupportedType(name: string): name is SupportedTypeName {
  return (SUPPORTED_TYPES as readonly string[]).includes(name);
}

/** Bytes that `elements` values of `type` take; `elements` must be a whole number of blocks. */
export function typeBytes(type: GgmlType, elements: number): number {
  return (elements / type.blockElements) * type.blockBytes;
}

// ---------------------------------------------------------------------------------------
// Block decoding helpers

/** Every f16's value (256 KiB), made on first use. */
let f16Table: Float32Array | undefined;
function f16Values(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) f16Table[bits] = f16BitsToF32(bits);
  }
  return f16Table;
}
let F16_TABLE: Float32Array = new Float32Array(0);

/** The f16 at byte `at` of `b` (dequantize() makes F16_TABLE first). */
const f16 = (b: Uint8Array, at: number): number => F16_TABLE[b[at] | (b[at + 1] << 8)];

/**
 * The j-th 6-bit scale and min (j < 8) of a Q4_K/Q5_K super-block, from its 12 `scales` bytes s:
 *
 *   byte  0..3 : bits 0–5 = sc[0..3],        bits 6–7 = bits 4–5 of sc[4..7]
 *   byte  4..7 : bits 0–5 = m[0..3],         bits 6–7 = bits 4–5 of m[4..7]
 *   byte  8..11: bits 0–3 = bits 0–3 of sc[4..7], bits 4–7 = bits 0–3 of m[4..7]
 *
 * (ggml's get_scale_min_k4.)
 */
export function scaleMinK4(s: Uint8Array, at: number, j: number): [scale: number, min: number] {
  if (j < 4) return [s[at + j] & 63, s[at + j + 4] & 63];
  return [(s[at + j + 4] & 0xf) | ((s[at + j - 4] >> 6) << 4), (s[at + j + 4] >> 4) | ((s[at + j] >> 6) << 4)];
}

type Dequantizer = (b: Uint8Array, out: Float32Array, blocks: number) => void;

const DEQUANTIZERS: Record<SupportedTypeName, Dequantizer> = {
  // F32: 4 bytes, an IEEE binary32.
  F32(b, out, n) {
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let i = 0; i < n; i++) out[i] = v.getFloat32(4 * i, true);
  },
  // F16: 2 bytes, an IEEE binary16.
  F16(b, out, n) {
    for (let i = 0; i < n; i++) out[i] = f16(b, 2 * i);
  },
  // BF16: 2 bytes, the upper half of an IEEE binary32.
  BF16(b, out, n) {
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const word = new DataView(new ArrayBuffer(4));
    for (let i = 0; i < n; i++) {
      word.setUint32(0, v.getUint16(2 * i, true) << 16, true);
      out[i] = word.getFloat32(0, true);
    }
  },
  // Q8_0: 32 elements in 34 bytes.
  //   [0, 2)  d   f16
  //   [2, 34) qs  int8[32]      x[i] = d · qs[i]
  Q8_0(b, out, n) {
    for (let k = 0; k < n; k++) {
      const at = 34 * k;
      const d = f16(b, at);
      for (let i = 0; i < 32; i++) out[32 * k + i] = d * ((b[at + 2 + i] << 24) >> 24);
    }
  },
  // Q4_0: 32 elements in 18 bytes.
  //   [0, 2)  d   f16
  //   [2, 18) qs  u8[16]        x[j] = d · ((qs[j] & 15) − 8),  x[j+16] = d · ((qs[j] >> 4) − 8),  j < 16
  Q4_0(b, out, n) {
    for (let k = 0; k < n; k++) {
      const at = 18 * k;
      const d = f16(b, at);
      for (let j = 0; j < 16; j++) {
        const q = b[at + 2 + j];
        out[32 * k + j] = d * ((q & 0xf) - 8);
        out[32 * k + j + 16] = d * ((q >> 4) - 8);
      }
    }
  },
  // Q4_1: 32 elements in 20 bytes.
  //   [0, 2)  d   f16
  //   [2, 4)  m   f16
  //   [4, 20) qs  u8[16]        x[j] = d · (qs[j] & 15) + m,  x[j+16] = d · (qs[j] >> 4) + m
  Q4_1(b, out, n) {
    for (let k = 0; k < n; k++) {
      const at = 20 * k;
      const d = f16(b, at);
      const m = f16(b, at + 2);
      for (let j = 0; j < 16; j++) {
        const q = b[at + 4 + j];
        out[32 * k + j] = Math.fround(d * (q & 0xf)) + m;
        out[32 * k + j + 16] = Math.fround(d * (q >> 4)) + m;
      }
    }
  },
  // Q5_0: 32 elements in 22 bytes; 5-bit quants, the fifth bits gathered in qh.
  //   [0, 2)  d   f16
  //   [2, 6)  qh  u32 (LE)      bit i = bit 4 of element i's quant
  //   [6, 22) qs  u8[16]        q[j] = (qs[j] & 15) | bit j of qh << 4,  q[j+16] = (qs[j] >> 4) | bit j+16 of qh << 4
  //                             x[i] = d · (q[i] − 16)
  Q5_0(b, out, n) {
    for (let k = 0; k < n; k++) {
      const at = 22 * k;
      const d = f16(b, at);
      const qh = (b[at + 2] | (b[at + 3] << 8) | (b[at + 4] << 16) | (b[at + 5] << 24)) >>> 0;
      for (let j = 0; j < 16; j++) {
        const q = b[at + 6 + j];
        out[32 * k + j] = d * (((q & 0xf) | (((qh >>> j) & 1) << 4)) - 16);
        out[32 * k + j + 16] = d * (((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16);
      }
    }
  },
  // Q5_1: 32 elements in 24 bytes.
  //   [0, 2)  d   f16
  //   [2, 4)  m   f16
  //   [4, 8)  qh  u32 (LE)      as Q5_0
  //   [8, 24) qs  u8[16]        x[i] = d · q[i] + m
  Q5_1(b, out, n) {
    for (let k = 0; k < n; k++) {
      const at = 24 * k;
      const d = f16(b, at);
      const m = f16(b, at + 2);
      const qh = (b[at + 4] | (b[at + 5] << 8) | (b[at + 6] << 16) | (b[at + 7] << 24)) >>> 0;
      for (let j = 0; j < 16; j++) {
        const q = b[at + 8 + j];
        out[32 * k + j] = Math.fround(d * ((q & 0xf) | (((qh >>> j) & 1) << 4))) + m;
        out[32 * k + j + 16] = Math.fround(d * ((q >> 4) | (((qh >>> (j + 16)) & 1) << 4))) + m;
      }
    }
  },
  // Q4_K: 256 elements (8 sub-blocks of 32) in 144 bytes.
  //   [0, 2)    d       f16     scale of the sub-block scales
  //   [2, 4)    dmin    f16     scale of the sub-block mins
  //   [4, 16)   scales  u8[12]  8 six-bit scales sc[s] and 8 six-bit mins m[s] (see scaleMinK4)
  //   [16, 144) qs      u8[128] 4-bit quants: chunk c < 4 holds elements 64c..64c+63 in qs[32c..32c+31],
  //                             element 64c+l in the low nibble of qs[32c+l], element 64c+32+l in its high nibble
  //   sub-block s = element / 32;  x = (d·sc[s]) · q − (dmin·m[s])
  Q4_K(b, out, n) {
    for (let k = 0; k < n; k++) {
      const at = 144 * k;
      const d = f16(b, at);
      const dmin = f16(b, at + 2);
      for (let c = 0; c < 4; c++) {
        const [sc1, m1] = scaleMinK4(b, at + 4, 2 * c);
        const [sc2, m2] = scaleMinK4(b, at + 4, 2 * c + 1);
        const d1 = Math.fround(d * sc1), dm1 = Math.fround(dmin * m1);
        const d2 = Math.fround(d * sc2), dm2 = Math.fround(dmin * m2);
        const base = 256 * k + 64 * c;
        for (let l = 0; l < 32; l++) {
          const q = b[at + 16 + 32 * c + l];
          out[base + l] = Math.fround(d1 * (q & 0xf)) - dm1;
          out[base + 32 + l] = Math.fround(d2 * (q >> 4)) - dm2;
        }
      }
    }
  },
  // Q5_K: 256 elements (8 sub-blocks of 32) in 176 bytes.
  //   [0, 2)    d       f16
  //   [2, 4)    dmin    f16
  //   [4, 16)   scales  u8[12]  as Q4_K
  //   [16, 48)  qh      u8[32]  fifth bits: bit 2c of qh[l] for element 64c+l, bit 2c+1 for element 64c+32+l
  //   [48, 176) qs      u8[128] low 4 bits, arranged as Q4_K's qs
  //   x = (d·sc[s]) · q − (dmin·m[s])
  Q5_K(b, out, n) {
    for (let k = 0; k < n; k++) {
      const at = 176 * k;
      const d = f16(b, at);
      const dmin = f16(b, at + 2);
      for (let c = 0; c < 4; c++) {
        const [sc1, m1] = scaleMinK4(b, at + 4, 2 * c);
        const [sc2, m2] = scaleMinK4(b, at + 4, 2 * c + 1);
        const d1 = Math.fround(d * sc1), dm1 = Math.fround(dmin * m1);
        const d2 = Math.fround(d * sc2), dm2 = Math.fround(dmin * m2);
        const base = 256 * k + 64 * c;
        for (let l = 0; l < 32; l++) {
          const q = b[at + 48 + 32 * c + l];
          const h = b[at + 16 + l];
          out[base + l] = Math.fround(d1 * ((q & 0xf) + (((h >> (2 * c)) & 1) << 4))) - dm1;
          out[base + 32 + l] = Math.fround(d2 * ((q >> 4) + (((h >> (2 * c + 1)) & 1) << 4))) - dm2;
        }
      }
    }
  },
  // Q6_K: 256 elements (16 sub-blocks of 16) in 210 bytes.
  //   [0, 128)   ql      u8[128] low 4 bits
  //   [128, 192) qh      u8[64]  high 2 bits
  //   [192, 208) scales  int8[16] one per sub-block
  //   [208, 210) d       f16
  //   Half h < 2 covers elements 128h..128h+127 with ql[64h..], qh[32h..]; for l < 32 it holds
  //     element 128h+l     : ql[64h+l] & 15    | (qh[32h+l] >> 0 & 3) << 4
  //     element 128h+32+l  : ql[64h+32+l] & 15 | (qh[32h+l] >> 2 & 3) << 4
  //     element 128h+64+l  : ql[64h+l] >> 4    | (qh[32h+l] >> 4 & 3) << 4
  //     element 128h+96+l  : ql[64h+32+l] >> 4 | (qh[32h+l] >> 6 & 3) << 4
  //   sub-block s = element / 16;  x = (d·scales[s]) · (q − 32)
  Q6_K(b, out, n) {
    for (let k = 0; k < n; k++) {
      const at = 210 * k;
      const d = f16(b, at + 208);
      for (let h = 0; h < 2; h++) {
        const ql = at + 64 * h;
        const qh = at + 128 + 32 * h;
        const base = 256 * k + 128 * h;
        for (let l = 0; l < 32; l++) {
          const hi = b[qh + l];
          const q1 = ((b[ql + l] & 0xf) | ((hi & 3) << 4)) - 32;
          const q2 = ((b[ql + 32 + l] & 0xf) | (((hi >> 2) & 3) << 4)) - 32;
          const q3 = ((b[ql + l] >> 4) | (((hi >> 4) & 3) << 4)) - 32;
          const q4 = ((b[ql + 32 + l] >> 4) | (((hi >> 6) & 3) << 4)) - 32;
          const s = at + 192 + 8 * h + (l >> 4);
          out[base + l] = Math.fround(d * ((b[s] << 24) >> 24)) * q1;
          out[base + 32 + l] = Math.fround(d * ((b[s + 2] << 24) >> 24)) * q2;
          out[base + 64 + l] = Math.fround(d * ((b[s + 4] << 24) >> 24)) * q3;
          out[base + 96 + l] = Math.fround(d * ((b[s + 6] << 24) >> 24)) * q4;
        }
      }
    }
  },
};

/**
 * Decodes `elements` values of `type` from `bytes` (a whole number of blocks) to float32.
 * `what` names the tensor in errors: an unsupported type is a PlanError('unsupported-type').
 */
export function dequantize(type: GgmlType, bytes: Uint8Array, elements: number, what = 'tensor'): Float32Array {
  if (!isSupportedType(type.name)) {
    throw new PlanError('unsupported-type', `${what} has type ${type.name} (ggml type ${type.id}), which this reader does not dequantize; supported: ${SUPPORTED_TYPES.join(', ')}`);
  }
  if (!Number.isSafeInteger(elements) || elements < 0 || elements % type.blockElements !== 0) {
    throw new PlanError('bad-input', `${what}: ${elements} elements is not a whole number of ${type.name} blocks of ${type.blockElements}`);
  }
  const blocks = elements / type.blockElements;
  if (bytes.length !== blocks * type.blockBytes) {
    throw new PlanError('bad-input', `${what}: ${elements} ${type.name} elements take ${blocks * type.blockBytes} bytes, not ${bytes.length}`);
  }
  const out = new Float32Array(elements);
  F16_TABLE = f16Values();
  DEQUANTIZERS[type.name](bytes, out, type.blockElements === 1 ? elements : blocks);
  return out;
}
