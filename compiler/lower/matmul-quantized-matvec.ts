// The quantized matrix-vector kernel of decode: y[M, N] = x[M, K] · dequant(w[N, K])ᵀ for a few
// rows of x, w kept in its packed format (runtime/ggml-types.ts gives the block layouts). The
// product is bound by reading w once, so the kernel is built to decode at memory speed:
//   - a unit of 32 values (a whole 32-value block, an eighth of a 256-value super-block; 4
//     values of f16/bf16) is one invocation's step: its words are loaded with as few loads as
//     the layout's alignment allows (vec4 for Q4_K/Q5_K, vec2 for Q5_1, f16, bf16), its scales
//     and mins unpacked once, its quants decoded a word at a time;
//   - a field below bit 23 OR-ed into the mantissa of 2^23 is 2^23 + field exactly, so a quant
//     becomes a float with a bitwise AND/OR and one subtraction, wherever it sits in the word
//     (times a power of two, folded into the block's scale): no shifts to bit 0, no integer
//     conversions (a quarter-rate instruction on Nvidia);
//   - the loads of 32 invocations (Nvidia's warp) should touch few 128-byte lines: lanesPerRow
//     neighbouring invocations take neighbouring units of a row (their words are consecutive
//     bytes), the 32 / lanesPerRow groups of them other rows at the same units, so x's reads
//     (4 bytes a value, several times w's) are shared by the groups, and by the rowsPerTeam rows
//     each invocation takes; the workgroup's 8 slices of 32 split K between them;
//   - stepsInFlight units are loaded before any is decoded; the sums are added in workgroup
//     memory.
// Every decoder rounds at most once per value where the CPU reference (ggml's order) may round
// twice, so the product stays within f32 accumulation's bound.
// A fused product (MatvecFusion: a fusedMatmul of a packed B) reads x through its RMSNorm's
// weight and finishes each value as the float kernels do (matmul.ts's epilogue, rope, cache
// write): the rows of x are every matrix's rows, each split back into its batch and row where
// the stores read the epilogue's operands; a rope's workgroup computes its columns in pair
// order (rope_column), so each value's rotation partner was summed in the same workgroup.
import { PACKED_DTYPES } from '../../schemas/manifest';
import { wgslFloat } from '../ir/ops';
import { stridesOf } from '../ir/shape';
import type { Shape, TensorType, WeightDType } from '../ir/types';
import type { QuantizedMatvecTuning } from '../target/tuning';
import { elementType, indent, kernelHeader, linearGrid, u32, type KernelCode, type KernelSubject } from './kernel';
import { epilogueHelpers, type MatmulProblem } from './matmul';
import { rowNorms } from './matmul-gemv';

/** Invocations per slice (the rows' units are shared by 32 invocations at a time); 8 slices make a workgroup of 256, splitting K. */
const SLICE = 32;
const SLICES = 8;

/**
 * The rows of x whose sums are added in workgroup memory at a time (1 KiB per row of x and
 * row per invocation): beyond 8 rows of x (up to 16), the sums of the first 8 are added and
 * stored, then the next's, in the same memory.
 */
const SUM_ROWS = 8;
/** The rows of x whose sums share the workgroup's memory at once. */
const sumRows = (m: number) => Math.min(m, SUM_ROWS);

/**
 * How one invocation decodes a unit of a format. Names in the WGSL it emits end in the step's
 * suffix `s` (step and row), so the units of several steps and rows live side by side.
 */
interface UnitDecoder {
  /** values per unit: 32, or 4 for f16/bf16 */
  values: number;
  /** units per block (a 256-value super-block has 8) */
  perBlock: number;
  /** the element w is bound as: u32, or vec2/vec4 where every block starts on 8 or 16 bytes */
  element: 'u32' | 'vec2<u32>' | 'vec4<u32>';
  /** loads of the unit at byte `bb${s}` of w, unit `t${s}` of its block (perBlock > 1) */
  loads(s: string): string[];
  /** the decoding: lines, then the unit's values as vec4s `w` beside x's vec4 index from the block's first value */
  decode(s: string): { lines: string[]; vecs: { w: string; x: string }[] };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

// For blocks of 18, 22, 34 or 210 bytes, which start on any even byte: word j of a field at
// byte f of the block, from the words r0, r1, ... loaded at the block's first word. `odd`: the
// block starts 2 bytes into a word.
const funnel = (a: string, b: string) => `((${a} >> 16u) | (${b} << 16u))`;
const fieldWord = (s: string, f: number, j: number): string => {
  const k = Math.floor(f / 4) + j;
  return f % 4 === 0 ? `select(r${k}${s}, ${funnel(`r${k}${s}`, `r${k + 1}${s}`)}, odd${s})` : `select(${funnel(`r${k}${s}`, `r${k + 1}${s}`)}, r${k + 1}${s}, odd${s})`;
};
/** loads of the words of a 2-aligned block of `bytes` bytes, whichever its alignment */
const unalignedLoads = (s: string, bytes: number) => [
  `let i${s} = bb${s} >> 2u;`,
  `let odd${s} = (bb${s} & 2u) != 0u;`,
  ...range(Math.ceil((bytes + 2) / 4)).map((k) => `let r${k}${s} = in1[i${s} + ${u32(k)}];`),
];
/** the f16 d at byte 0 of such a block */
const unalignedD = (s: string) => `let d${s} = unpack2x16float(select(r0${s}, r0${s} >> 16u, odd${s})).x;`;

/** 4-bit quants: the low nibbles of a word's bytes for values v..v+3, the high ones for v+16.. (ggml's 32-value blocks) */
const nibbleVecs = (s: string, words: (j: number) => string, d: string, offset: string, xLow = (j: number) => `${u32(j)}`, xHigh = (j: number) => `${u32(4 + j)}`) => [
  ...range(4).map((j) => ({ w: `fma(q_lo4(${words(j)}), ${d}_lo, ${offset})`, x: xLow(j) })),
  ...range(4).map((j) => ({ w: `fma(q_hi4(${words(j)}), ${d}_hi, ${offset})`, x: xHigh(j) })),
];

/** the fifth bits of four values (bits 0..3 of h) moved to bit 4 of four bytes */
const spread = (h: string) => `(((${h} * 0x204081u) & 0x01010101u) << 4u)`;

const DECODERS: Partial<Record<WeightDType, UnitDecoder>> = {
  // d f16 | qs int8[32]: x = d · qs
  q8_0: {
    values: 32,
    perBlock: 1,
    element: 'u32',
    loads: (s) => unalignedLoads(s, 34),
    decode: (s) => ({
      lines: [unalignedD(s), `let dv${s} = d${s} * Q_S4;`],
      vecs: range(8).map((j) => ({ w: `q_s4(${fieldWord(s, 2, j)}) * dv${s}`, x: u32(j) })),
    }),
  },
  // d f16 | qs u8[16]: x[j] = d · (low nibble of qs[j] − 8), x[j + 16] = d · (high nibble − 8)
  q4_0: {
    values: 32,
    perBlock: 1,
    element: 'u32',
    loads: (s) => unalignedLoads(s, 18),
    decode: (s) => ({
      lines: [unalignedD(s), `let d${s}_lo = d${s} * Q_LO4;`, `let d${s}_hi = d${s} * Q_HI4;`, `let o${s} = vec4<f32>(-8.0 * d${s});`],
      vecs: nibbleVecs(s, (j) => fieldWord(s, 2, j), `d${s}`, `o${s}`),
    }),
  },
  // d f16 | m f16 | qs u8[16]: x = d · nibble + m
  q4_1: {
    values: 32,
    perBlock: 1,
    element: 'u32',
    loads: (s) => [`let i${s} = bb${s} >> 2u;`, ...range(5).map((k) => `let r${k}${s} = in1[i${s} + ${u32(k)}];`)],
    decode: (s) => ({
      lines: [`let dm${s} = unpack2x16float(r0${s});`, `let d${s}_lo = dm${s}.x * Q_LO4;`, `let d${s}_hi = dm${s}.x * Q_HI4;`, `let o${s} = vec4<f32>(dm${s}.y);`],
      vecs: nibbleVecs(s, (j) => `r${1 + j}${s}`, `d${s}`, `o${s}`),
    }),
  },
  // d f16 | qh u32 (bit i: fifth bit of value i) | qs u8[16]: x = d · (q − 16)
  q5_0: {
    values: 32,
    perBlock: 1,
    element: 'u32',
    loads: (s) => unalignedLoads(s, 22),
    decode: (s) => ({
      lines: [unalignedD(s), `let qh${s} = ${fieldWord(s, 2, 0)};`, `let dv${s} = d${s} * Q_LO4;`, `let o${s} = vec4<f32>(-16.0 * d${s});`, ...range(4).map((j) => `let qs${j}${s} = ${fieldWord(s, 6, j)};`)],
      vecs: [
        ...range(4).map((j) => ({ w: `fma(q_b4((qs${j}${s} & 0x0f0f0f0fu) | ${spread(`((qh${s} >> ${u32(4 * j)}) & 15u)`)}), dv${s}, o${s})`, x: u32(j) })),
        ...range(4).map((j) => ({ w: `fma(q_b4(((qs${j}${s} >> 4u) & 0x0f0f0f0fu) | ${spread(`((qh${s} >> ${u32(16 + 4 * j)}) & 15u)`)}), dv${s}, o${s})`, x: u32(4 + j) })),
      ],
    }),
  },
  // d f16 | m f16 | qh u32 | qs u8[16] (24 bytes: three vec2s): x = d · q + m
  q5_1: {
    values: 32,
    perBlock: 1,
    element: 'vec2<u32>',
    loads: (s) => [`let i${s} = bb${s} >> 3u;`, ...range(3).map((k) => `let r${k}${s} = in1[i${s} + ${u32(k)}];`)],
    decode: (s) => {
      const qs = (j: number) => `r${1 + (j >> 1)}${s}.${'xy'[j & 1]}`;
      return {
        lines: [`let dm${s} = unpack2x16float(r0${s}.x);`, `let qh${s} = r0${s}.y;`, `let dv${s} = dm${s}.x * Q_LO4;`, `let o${s} = vec4<f32>(dm${s}.y);`],
        vecs: [
          ...range(4).map((j) => ({ w: `fma(q_b4((${qs(j)} & 0x0f0f0f0fu) | ${spread(`((qh${s} >> ${u32(4 * j)}) & 15u)`)}), dv${s}, o${s})`, x: u32(j) })),
          ...range(4).map((j) => ({ w: `fma(q_b4(((${qs(j)} >> 4u) & 0x0f0f0f0fu) | ${spread(`((qh${s} >> ${u32(16 + 4 * j)}) & 15u)`)}), dv${s}, o${s})`, x: u32(4 + j) })),
        ],
      };
    },
  },
  // d f16 | dmin f16 | scales u8[12] | qs u8[128] (nine vec4s). Unit t of the super-block: chunk
  // c = t / 2 (sub-blocks 2c and 2c + 1), qs[32c + 16·(t % 2) ..][16], i.e. the vec4 1 + t; its
  // low nibbles are values 64c + 16·(t % 2) + 0..15, its high ones 32 further.
  q4_k: {
    values: 32,
    perBlock: 8,
    element: 'vec4<u32>',
    loads: (s) => [`let i${s} = bb${s} >> 4u;`, `let hd${s} = in1[i${s}];`, `let qs${s} = in1[i${s} + 1u + t${s}];`, ...kUnit(s)],
    decode: (s) => ({
      lines: kScales(s),
      vecs: [
        ...range(4).map((j) => ({ w: `fma(q_lo4(qs${s}.${'xyzw'[j]}), da${s}_lo, -ma${s})`, x: `xt${s} + ${u32(j)}` })),
        ...range(4).map((j) => ({ w: `fma(q_hi4(qs${s}.${'xyzw'[j]}), db${s}_hi, -mb${s})`, x: `xt${s} + ${u32(8 + j)}` })),
      ],
    }),
  },
  // as Q4_K, with qh u8[32] at 16 (bit 2c of qh[l]: fifth bit of value 64c + l, bit 2c + 1 of
  // 64c + 32 + l) and qs at 48 (eleven vec4s): unit t reads qh's vec4 1 + t % 2 and qs's 3 + t
  q5_k: {
    values: 32,
    perBlock: 8,
    element: 'vec4<u32>',
    loads: (s) => [`let i${s} = bb${s} >> 4u;`, `let hd${s} = in1[i${s}];`, `let qh${s} = in1[i${s} + 1u + (t${s} & 1u)];`, `let qs${s} = in1[i${s} + 3u + t${s}];`, ...kUnit(s)],
    decode: (s) => {
      const c = `c${s}`;
      return {
        lines: [...kScales(s), `let da${s}_b = da${s} * Q_LO4;`, `let db${s}_b = db${s} * Q_LO4;`],
        vecs: [
          ...range(4).map((j) => {
            const q = `qs${s}.${'xyzw'[j]}`;
            const h = `qh${s}.${'xyzw'[j]}`;
            return { w: `fma(q_b4((${q} & 0x0f0f0f0fu) | (((${h} >> (2u * ${c})) & 0x01010101u) << 4u)), da${s}_b, -ma${s})`, x: `xt${s} + ${u32(j)}` };
          }),
          ...range(4).map((j) => {
            const q = `qs${s}.${'xyzw'[j]}`;
            const h = `qh${s}.${'xyzw'[j]}`;
            return { w: `fma(q_b4(((${q} >> 4u) & 0x0f0f0f0fu) | (((${h} >> (2u * ${c} + 1u)) & 0x01010101u) << 4u)), db${s}_b, -mb${s})`, x: `xt${s} + ${u32(8 + j)}` };
          }),
        ],
      };
    },
  },
  // ql u8[128] | qh u8[64] | scales int8[16] | d f16 (210 bytes, any even byte). Unit t: half
  // h = t / 4, p = t % 4; ql[64h + 8p ..][8] and ql[64h + 32 + 8p ..][8] (low nibbles: values
  // 128h + 8p + 0..7 and 32 further, high nibbles 64 and 96 further), qh[32h + 8p ..][8] (bits
  // 2g..2g+1 for group g), scales[8h ..][8] (group g's: byte 2g + p / 2); x = d·scale · (q − 32)
  q6_k: {
    values: 32,
    perBlock: 8,
    element: 'u32',
    loads: (s) => [
      `let h${s} = t${s} >> 2u;`,
      `let p${s} = t${s} & 3u;`,
      `let odd${s} = (bb${s} & 2u) != 0u;`,
      ...[
        ['la', `64u * h${s} + 8u * p${s}`],
        ['lb', `64u * h${s} + 32u + 8u * p${s}`],
        ['qh', `128u + 32u * h${s} + 8u * p${s}`],
        ['sc', `192u + 8u * h${s}`],
      ].flatMap(([name, at]) => [`let ${name}i${s} = (bb${s} + ${at}) >> 2u;`, ...range(3).map((k) => `let ${name}${k}${s} = in1[${name}i${s} + ${u32(k)}];`)]),
      `let dw${s} = in1[(bb${s} + 208u) >> 2u];`,
    ],
    decode: (s) => {
      const lines = q6kScales(s, (g) => [`let dv${g}${s} = ds${g}${s} * Q_LO4;`, `let o${g}${s} = vec4<f32>(-32.0 * ds${g}${s});`]);
      const vecs = range(4).flatMap((g) => range(2).map((j) => ({ w: `fma(q_b4(${q6kBytes(s, g, j)}), dv${g}${s}, o${g}${s})`, x: `32u * h${s} + ${u32(8 * g + j)} + 2u * p${s}` })));
      return { lines, vecs };
    },
  },
  // 4 values, 8 bytes: one vec2 (rows of a multiple of 4 values start on 8 bytes)
  f16: {
    values: 4,
    perBlock: 1,
    element: 'vec2<u32>',
    loads: (s) => [`let r${s} = in1[bb${s} >> 3u];`],
    decode: (s) => ({ lines: [], vecs: [{ w: `vec4<f32>(unpack2x16float(r${s}.x), unpack2x16float(r${s}.y))`, x: '0u' }] }),
  },
  bf16: {
    values: 4,
    perBlock: 1,
    element: 'vec2<u32>',
    loads: (s) => [`let r${s} = in1[bb${s} >> 3u];`],
    decode: (s) => ({
      lines: [],
      vecs: [{ w: `bitcast<vec4<f32>>(vec4<u32>(r${s}.x << 16u, r${s}.x & 0xffff0000u, r${s}.y << 16u, r${s}.y & 0xffff0000u))`, x: '0u' }],
    }),
  },
};

// Q6_K: the two words of each 8-byte field (la, lb, qh, sc), realigned where the block starts 2 bytes into a word
const q6kWord = (s: string, name: string, j: number) => `${name}${j}v${s}`;

/** Q6_K: the realigned words, d, and group g's scale d·scale as ds{g}, each followed by `after(g)` */
function q6kScales(s: string, after: (g: number) => string[] = () => []): string[] {
  const lines = ['la', 'lb', 'qh', 'sc'].flatMap((name) => range(2).map((j) => `let ${q6kWord(s, name, j)} = select(${name}${j}${s}, ${funnel(`${name}${j}${s}`, `${name}${j + 1}${s}`)}, odd${s});`));
  lines.push(`let d${s} = unpack2x16float(select(dw${s}, dw${s} >> 16u, odd${s})).x;`, `let sp${s} = 8u * (p${s} >> 1u);`);
  // group g's scale: byte 2g + p / 2 of the eight, sign-extended from the top of an i32
  for (let g = 0; g < 4; g++) lines.push(`let ds${g}${s} = d${s} * f32(bitcast<i32>(${q6kWord(s, 'sc', g >> 1)} << (${u32(24 - 16 * (g & 1))} - sp${s})) >> 24u);`, ...after(g));
  return lines;
}

/** Q6_K: word j of group g's quants, four 6-bit values 0..63 in four bytes (low nibbles from ql, two high bits from qh) */
function q6kBytes(s: string, g: number, j: number): string {
  const l = q6kWord(s, g & 1 ? 'lb' : 'la', j);
  const low = g < 2 ? `(${l} & 0x0f0f0f0fu)` : `((${l} >> 4u) & 0x0f0f0f0fu)`;
  const shift = 4 - 2 * g;
  const h = q6kWord(s, 'qh', j);
  return `${low} | ((${shift > 0 ? `${h} << ${u32(shift)}` : shift < 0 ? `${h} >> ${u32(-shift)}` : h}) & 0x30303030u)`;
}

/** Q4_K/Q5_K: the unit's chunk c (sub-blocks 2c, 2c + 1) and its x offset within the super-block (loads: x's index must not wait for the decoding) */
const kUnit = (s: string) => [`let c${s} = t${s} >> 1u;`, `let xt${s} = 16u * c${s} + 4u * (t${s} & 1u);`];

/**
 * Q4_K/Q5_K: the unit's two sub-blocks' scales d·sc and mins dmin·m (ggml's get_scale_min_k4
 * on whole words): bytes 4..7 of the header hold sc[0..3] and m[0..3] in their low 6 bits and
 * bits 4–5 of sc[4..7] and m[4..7] in their top 2, bytes 8..11 the low 4 bits of sc[4..7] and
 * (high nibbles) m[4..7].
 */
function kScales(s: string): string[] {
  return [
    `let dm${s} = unpack2x16float(hd${s}.x);`,
    `let low${s} = c${s} < 2u;`,
    `let scw${s} = select((hd${s}.w & 0x0f0f0f0fu) | ((hd${s}.y >> 2u) & 0x30303030u), hd${s}.y & 0x3f3f3f3fu, low${s});`,
    `let mw${s} = select(((hd${s}.w >> 4u) & 0x0f0f0f0fu) | ((hd${s}.z >> 2u) & 0x30303030u), hd${s}.z & 0x3f3f3f3fu, low${s});`,
    `let sh${s} = 16u * (c${s} & 1u);`,
    `let sm${s} = vec4<f32>(vec4<u32>(scw${s} >> sh${s}, scw${s} >> (sh${s} + 8u), mw${s} >> sh${s}, mw${s} >> (sh${s} + 8u)) & vec4<u32>(255u));`,
    `let da${s} = dm${s}.x * sm${s}.x;`,
    `let db${s} = dm${s}.x * sm${s}.y;`,
    `let ma${s} = vec4<f32>(dm${s}.y * sm${s}.z);`,
    `let mb${s} = vec4<f32>(dm${s}.y * sm${s}.w);`,
    `let da${s}_lo = da${s} * Q_LO4;`,
    `let db${s}_hi = db${s} * Q_HI4;`,
  ];
}

/** The helpers every format's decoder shares: quants to floats through 2^23's mantissa. */
const QUANT_FLOATS = `// A field below bit 23 OR-ed into 2^23's bits (0x4b000000) reads as 2^23 + field exactly; each
// helper leaves a byte's field where it lies in the word (the powers of two it is scaled by are
// folded into the block's scale: Q_LO4, Q_HI4, Q_S4), so a value costs an AND/OR and a subtraction.
const Q_LO4 = vec4<f32>(1.0, 0.00390625, 0.0000152587890625, 0.0000152587890625);
const Q_HI4 = vec4<f32>(0.0625, 0.000244140625, 0.000244140625, 0.000244140625);
const Q_S4 = vec4<f32>(1.0, 0.00390625, 1.0, 0.00390625);

/** the low nibbles of w's four bytes, times 1, 2^8, 2^16, 2^16 */
fn q_lo4(w: u32) -> vec4<f32> {
  return bitcast<vec4<f32>>(vec4<u32>(w & 0xfu, w & 0xf00u, w & 0xf0000u, (w >> 8u) & 0xf0000u) | vec4<u32>(0x4b000000u)) - vec4<f32>(8388608.0);
}

/** the high nibbles of w's four bytes, times 2^4, 2^12, 2^12, 2^12 */
fn q_hi4(w: u32) -> vec4<f32> {
  return bitcast<vec4<f32>>(vec4<u32>(w & 0xf0u, w & 0xf000u, (w >> 8u) & 0xf000u, (w >> 16u) & 0xf000u) | vec4<u32>(0x4b000000u)) - vec4<f32>(8388608.0);
}

/** w's four bytes (each below 128), times 1, 2^8, 2^16, 2^16 */
fn q_b4(w: u32) -> vec4<f32> {
  return bitcast<vec4<f32>>(vec4<u32>(w & 0xffu, w & 0xff00u, w & 0x7f0000u, (w >> 8u) & 0x7f0000u) | vec4<u32>(0x4b000000u)) - vec4<f32>(8388608.0);
}

/** w's four bytes as int8, times 1, 2^8, 1, 2^8 (the sign bit flipped: 2^23 + 128 + q) */
fn q_s4(w: u32) -> vec4<f32> {
  let h = w >> 16u;
  return bitcast<vec4<f32>>(vec4<u32>(w & 0xffu, w & 0xff00u, h & 0xffu, h & 0xff00u) ^ vec4<u32>(0x4b000080u, 0x4b008000u, 0x4b000080u, 0x4b008000u)) - vec4<f32>(8388736.0, 8421376.0, 8388736.0, 8421376.0);
}`;

// --- fused products ----------------------------------------------------------------------------

/**
 * What a fusedMatmul of a packed B adds to a matrix-vector kernel: its problem (matmul.ts, over
 * the product's own shape: the epilogue's operands and views, the rope, the cache write; no
 * norm), the RMSNorm of x's rows, and the batch axes folded into x's rows (p.m rows each).
 */
export interface MatvecFusion {
  problem: MatmulProblem;
  /** x read through RMSNorm: its weight [K] is binding `in${weight}` */
  norm?: { weight: number; eps: number };
  batchShape: Shape;
}

/** The bindings of a fused kernel: x (vec4s), w (`element`s), the epilogue's operands (the norm's weight as vec4s), the output. */
export function fusionBindings(f: MatvecFusion, element: string, dtype: WeightDType): string {
  const ops = f.problem.operands;
  const lines = ops.map((t, k) => {
    const type = k === 0 || k === f.norm?.weight ? 'vec4<f32>' : k === 1 ? element : elementType(t);
    return `@group(0) @binding(${k}) var<storage, read> in${k}: array<${type}>;${k === 0 ? ' // x [M, K]' : k === 1 ? ` // w [N, K], ${dtype}` : ''}`;
  });
  lines.push(`@group(0) @binding(${ops.length}) var<storage, read_write> out: array<f32>; // ${f.problem.cache ? 'the cache, written in place' : 'y [M, N]'}`);
  return lines.join('\n');
}

/** The fused kernel's RMSNorm: its workgroup memory and the lines filling norm_scale[R] with x row R's 1/rms (after the loop over K). */
export function fusionNorm(f: MatvecFusion | undefined, m: number, k: number): { decl: string; bytes: number; lines: string[] } | undefined {
  if (!f?.norm) return undefined;
  const norm = rowNorms({ m, rowsConst: u32(m), k, eps: f.norm.eps, vec4: true, read: (nr, j) => `in0[${nr} * ${u32(k / 4)} + ${j}]` });
  return { decl: norm.shared, bytes: norm.bytes, lines: norm.lines };
}

/** x's vec4 at `index` (of x's row-major vec4s), through the norm's weight (its vec4 `weightIndex`) where fused. */
export function xRead(f: MatvecFusion | undefined, index: string, weightIndex: string): string {
  return f?.norm ? `(in0[${index}] * in${f.norm.weight}[${weightIndex}])` : `in0[${index}]`;
}

/** w's row for the computed position `c` (of N): a rope's columns in pair order. */
const fusedRow = (f: MatvecFusion | undefined, c: string) => (f?.problem.rope ? `rope_column(${c})` : c);

/**
 * The stores of x row R and computed position c (< N), whose sum is `sum` (its rotation
 * partner's, at position c ^ 2, `partner`): R split into its matrix's batch coordinates bc{d}
 * and row, the norm's 1/rms, the epilogue at (row, col), a rope's rotation, stored at the
 * product's flat element R·N + col (through cache_index into a cache).
 */
export function fusedStore(f: MatvecFusion, R: string, c: string, sum: string, partner: string): string[] {
  const p = f.problem;
  const lines: string[] = [];
  if (f.batchShape.length > 0) {
    const strides = stridesOf(f.batchShape);
    lines.push(`let batch = ${R} / ${u32(p.m)};`, 'var rem = batch;');
    strides.forEach((st, d) => lines.push(`let bc${d} = rem / ${u32(st)};`, `rem = rem % ${u32(st)};`));
    lines.push(`let row = ${R} % ${u32(p.m)};`);
  } else {
    lines.push(`let row = ${R};`);
  }
  const scaled = (v: string) => (f.norm ? `${v} * norm_scale[${R}]` : v);
  const flat = (col: string) => `${R} * ${u32(p.n)} + ${col}`;
  if (!p.rope) {
    const e = p.epilogue(scaled(sum), 'row', 'col', '');
    return [...lines, `let col = ${c};`, ...e.lines, p.storeAt(flat('col'), e.value)];
  }
  const rope = p.rope;
  const half = rope.rotaryDim / 2;
  const own = p.epilogue(scaled(sum), 'row', 'col', '  ');
  const other = p.epilogue(scaled(partner), 'row', 'pcol', '  ');
  return [
    ...lines,
    `let col = rope_column(${c});`,
    `let pcol = rope_column(${c} ^ 2u);`,
    'var e = 0.0;',
    'var ep = 0.0;',
    '{',
    ...own.lines,
    `  e = ${own.value};`,
    '}',
    '{',
    ...other.lines,
    `  ep = ${other.value};`,
    '}',
    // the pair (j, j + H) of a head's rotated part: x·cos ∓ partner·sin
    `let jj = col % ${u32(rope.width)};`,
    `if (jj < ${u32(rope.rotaryDim)}) {`,
    `  let cs = cos_sin(${rope.position('row')} * INV_FREQ[jj % ${u32(half)}]);`,
    `  let s = ${wgslFloat(rope.inverse ? -1 : 1)} * cs.y;`,
    `  e = select(e * cs.x + ep * s, e * cs.x - ep * s, jj < ${u32(half)});`,
    '}',
    p.storeAt(flat('col'), 'e'),
  ];
}

/**
 * The lanes along a row: the tuning's, or with a rope at most 8 (4 groups of rows or more) where
 * the workgroup's rows would not be whole groups of 4 positions (two rotation pairs) otherwise.
 */
function fusedLanes(f: MatvecFusion | undefined, lanes: number, perTeam: number): number {
  return f?.problem.rope && ((SLICE / lanes) * perTeam) % 4 !== 0 ? Math.min(lanes, 8) : lanes;
}

/** A fused kernel's header line naming the ops it fuses; none for a plain product. */
const fusedOps = (f: MatvecFusion | undefined) => f?.problem.form?.ops;

/** Whether the units kernel decodes this format. */
export const hasUnitDecoder = (dtype: WeightDType): boolean => DECODERS[dtype] !== undefined;

/** The bytes of a block: f16/bf16's "block" is a unit of 4 values. */
function blockBytes(dtype: WeightDType, decoder: UnitDecoder): { values: number; bytes: number } {
  if (dtype === 'f16' || dtype === 'bf16') return { values: decoder.values, bytes: 2 * decoder.values };
  const { elements, bytes } = PACKED_DTYPES[dtype];
  return { values: elements, bytes };
}

/**
 * y[M, N] = x[M, K] · dequant(w[N, K])ᵀ, M small. `workgroupBytes`: the most workgroup memory
 * the target allows (the team sums take M · rows · 128 bytes; fewer rows per team where needed).
 */
export function unitsMatvecKernel(
  node: KernelSubject,
  operands: readonly TensorType[],
  name: string,
  m: number,
  dtype: WeightDType,
  tuning: QuantizedMatvecTuning,
  workgroupBytes: number,
  fusion?: MatvecFusion,
): KernelCode {
  const decoder = DECODERS[dtype];
  if (!decoder) throw new Error(`matmulQuantized: no unit decoder for ${dtype}`);
  const [n, k] = operands[1].shape;
  const block = blockBytes(dtype, decoder);
  const norm = fusionNorm(fusion, m, k);
  // the sums take M · rows · 256 / groups floats, 1 KiB per row of x and row per invocation
  const perTeam = Math.max(1, Math.min(tuning.rowsPerTeam, Math.floor((workgroupBytes - (norm?.bytes ?? 0)) / (sumRows(m) * SLICE * SLICES * 4))));
  // 4-value units (f16, bf16): 4 times the lanes and steps of 32-value ones, the same bytes
  const small = decoder.values < 32 ? 4 : 1;
  const lanes = fusedLanes(fusion, Math.min(SLICE, tuning.lanesPerRow * small), perTeam);
  if (SLICE % lanes !== 0) throw new Error(`quantizedMatvec.lanesPerRow ${tuning.lanesPerRow}: not a divisor of ${SLICE}`);
  const groups = SLICE / lanes;
  const rows = groups * perTeam;
  const steps = Math.max(1, tuning.stepsInFlight * small);
  const units = k / decoder.values;
  const stride = SLICES * lanes;
  const { grid, gridX } = linearGrid(Math.ceil(n / rows));
  const perBlock = decoder.perBlock;

  // one step: `count` units u, u + stride, ..., every row's loads first, then each unit's
  // decoding and its products with x (read once for the invocation's rows)
  const step = (count: number): string[] => {
    const lines: string[] = [];
    const sfx = (j: number, r: number) => `_${j}_${r}`;
    for (let j = 0; j < count; j++) {
      lines.push(`let u${j} = u + ${u32(j * stride)};`);
      lines.push(perBlock > 1 ? `let b${j} = u${j} >> ${u32(Math.log2(perBlock))};` : `let b${j} = u${j};`);
      if (perBlock > 1) lines.push(`let t${j} = u${j} & ${u32(perBlock - 1)};`);
      lines.push(`let xb${j} = b${j} * ${u32(block.values / 4)};`);
      for (let r = 0; r < perTeam; r++) {
        const s = sfx(j, r);
        lines.push(`let bb${s} = (row${r} * ${u32(k / block.values)} + b${j}) * ${u32(block.bytes)};`);
        if (perBlock > 1) lines.push(`let t${s} = t${j};`);
        lines.push(...decoder.loads(s));
      }
    }
    for (let j = 0; j < count; j++) {
      lines.push('{');
      const decoded = range(perTeam).map((r) => decoder.decode(sfx(j, r)));
      const xs = decoded[0].vecs.map((v) => range(m).map((mm) => xRead(fusion, `${mm ? `${u32((mm * k) / 4)} + ` : ''}xb${j} + ${v.x}`, `xb${j} + ${v.x}`)));
      if (m === 1) xs.forEach((x, i) => lines.push(`  let x${i} = ${x[0]};`));
      // a row at a time: its values, then their products with each row of x
      for (let r = 0; r < perTeam; r++) {
        lines.push('  {', ...indent(decoded[r].lines, 4));
        decoded[r].vecs.forEach((v, i) => lines.push(`    let w${i} = ${v.w};`));
        for (let mm = 0; mm < m; mm++) lines.push(`    acc${mm}_${r} += ${xs.map((x, i) => `dot(w${i}, ${m === 1 ? `x${i}` : x[mm]})`).join(' + ')};`);
        lines.push('  }');
      }
      lines.push('}');
    }
    return lines;
  };
  const loops = [
    `var u = (li / ${u32(SLICE)}) * ${u32(lanes)} + lane;`,
    ...(steps > 1 ? [`for (; u + ${u32((steps - 1) * stride)} < ${u32(units)}; u += ${u32(steps * stride)}) {`, ...indent(step(steps)), '}'] : []),
    `for (; u < ${u32(units)}; u += ${u32(stride)}) {`,
    ...indent(step(1)),
    '}',
  ];
  const plural = (c: number, what: string) => `${c} ${what}${c > 1 ? 's' : ''}`;
  const describe = `${dtype} weights: ${decoder.values} values a step per invocation, ${lanes} invocations along a row, ${plural(perTeam, 'row')} each, ${plural(steps, 'step')} in flight, K split ${SLICES} ways, sums reduced in workgroup memory`;
  return matvecShell({ name, node, operands, describe, element: decoder.element, dtype, n, m, lanes, groups, perTeam, gridX, grid, loops, workgroup: norm ? [norm] : [], prologue: [], fusion, afterLoops: norm?.lines ?? [] });
}

/** What a matrix-vector kernel's body gives the shell around it. */
interface MatvecBody {
  name: string;
  node: KernelSubject;
  operands: readonly TensorType[];
  describe: string;
  element: UnitDecoder['element'];
  dtype: WeightDType;
  n: number;
  m: number;
  lanes: number;
  groups: number;
  perTeam: number;
  gridX: number;
  grid: [number, number, number];
  /** the loop over the invocation's units, adding to acc{mm}_{r} */
  loops: string[];
  /** workgroup declarations beside the partial sums, and their bytes */
  workgroup: { decl: string; bytes: number }[];
  /** statements before the loop (after the rows are known) */
  prologue: string[];
  /** a fused product's epilogue, and the statements after the loop (its norm's row scales) */
  fusion?: MatvecFusion;
  afterLoops?: string[];
}

/**
 * The kernel around a body: SLICES slices of SLICE invocations, lanes along a row and
 * groups × perTeam rows per workgroup; each invocation's sums per row of x and row of w are
 * added in workgroup memory and written to y.
 */
function matvecShell(b: MatvecBody): KernelCode {
  const { m, lanes, groups, perTeam, fusion } = b;
  const rows = groups * perTeam;
  const accs = range(m).flatMap((mm) => range(perTeam).map((r) => [mm, r]));
  // partial sums: [SUM_ROWS of x at most][ROWS][SLICES][lanes], one vec4 per 4 lanes
  const sums = rows * SLICES * lanes;
  const mc = sumRows(m);
  const partialSum = (at: string) => [
    'var v = vec4<f32>();',
    `for (var j = 0u; j < ${u32((SLICES * lanes) / 4)}; j++) {`,
    `  v += partial[${at} * ${u32((SLICES * lanes) / 4)} + j];`,
    '}',
  ];
  // invocation li adds row li % ROWS's sums of x's row R = x0 + li / ROWS (with a rope, its pair partner's too: li ^ 2)
  const store = (x0: number): string[] => {
    const R = x0 > 0 ? `${u32(x0)} + li / ROWS` : 'li / ROWS';
    if (!fusion) return [...partialSum('li'), 'let row = first + li % ROWS;', 'if (row < N) {', `  out[(${R}) * N + row] = (v.x + v.y) + (v.z + v.w);`, '}'];
    return [
      ...(fusion.problem.rope ? ['var partner = 0.0;'] : []),
      ...partialSum('li'),
      ...(fusion.problem.rope ? ['let own = (v.x + v.y) + (v.z + v.w);', '{', ...indent(partialSum('(li ^ 2u)')), '  partner = (v.x + v.y) + (v.z + v.w);', '}'] : []),
      'let c = first + li % ROWS;',
      'if (c < N) {',
      ...indent(fusedStore(fusion, `(${R})`, 'c', fusion.problem.rope ? 'own' : '((v.x + v.y) + (v.z + v.w))', 'partner')),
      '}',
    ];
  };
  // the sums of x's rows x0 .. x0 + mc - 1 into workgroup memory, added and stored
  const reduce = (x0: number): string[] => {
    const these = accs.filter(([mm]) => mm >= x0 && mm < x0 + mc);
    const count = Math.min(mc, m - x0);
    return [
      ...(x0 > 0 ? ['workgroupBarrier();'] : []),
      ...these.map(([mm, r]) => `partial[((${u32((mm - x0) * rows + r)} + rowGroup * ${u32(perTeam)}) * ${u32(SLICES * lanes)} + at) / 4u][at % 4u] = acc${mm}_${r};`),
      'workgroupBarrier();',
      `// invocation li adds row li % ROWS's ${SLICES * lanes} sums of x's row ${x0 > 0 ? `${x0} + ` : ''}li / ROWS`,
      `if (li < ${u32(count * rows)}) {`,
      ...indent(store(x0)),
      '}',
    ];
  };
  const bindings = fusion
    ? fusionBindings(fusion, b.element, b.dtype)
    : `@group(0) @binding(0) var<storage, read> in0: array<vec4<f32>>; // x [M, K]
@group(0) @binding(1) var<storage, read> in1: array<${b.element}>; // w [N, K], ${b.dtype}
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // y [M, N]`;
  const helpers = fusion ? epilogueHelpers(fusion.problem) : [];
  const wgsl = `${kernelHeader(b.name, b.node, b.operands, `quantized matrix-vector product, ${b.describe}${fusion ? ', epilogue per value' : ''}`, fusedOps(fusion))}
${bindings}

const N: u32 = ${u32(b.n)};
const ROWS: u32 = ${u32(rows)};
const GRID_X: u32 = ${u32(b.gridX)};

${QUANT_FLOATS}
${helpers.length ? `\n${helpers.join('\n')}\n` : ''}
// every invocation's sum per row of x and row of w: [${m > mc ? `${mc} rows of x at a time` : 'M'}][ROWS][${SLICES} slices][${lanes} lanes]
var<workgroup> partial: array<vec4<f32>, ${(mc * sums) / 4}>;
${b.workgroup.map((w) => `${w.decl}\n`).join('')}
@compute @workgroup_size(${SLICES * SLICE}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let lane = li % ${u32(lanes)};
  let rowGroup = (li / ${u32(lanes)}) % ${u32(groups)};
  let first = (wid.x + wid.y * GRID_X) * ROWS;
  // the invocation's rows, the last row of w standing in for those past it (read, never stored)
${range(perTeam)
  .map((r) => `  let row${r} = ${fusedRow(fusion, `min(first + rowGroup * ${u32(perTeam)} + ${u32(r)}, N - 1u)`)};`)
  .join('\n')}
${accs.map(([mm, r]) => `  var acc${mm}_${r} = 0.0;`).join('\n')}
${indent([...b.prologue, ...b.loops, ...(b.afterLoops ?? [])]).join('\n')}
  let at = (li / ${u32(SLICE)}) * ${u32(lanes)} + lane;
${indent(range(Math.ceil(m / mc)).flatMap((c) => reduce(c * mc))).join('\n')}
}
`;
  const bytes = mc * sums * 4 + b.workgroup.reduce((t, w) => t + w.bytes, 0);
  return { wgsl, workgroupSize: [SLICES * SLICE, 1, 1], workgroupBytes: bytes, workgroups: b.grid };
}

// --- packed 4x8-bit dot products --------------------------------------------------------------
//
// The 'dot4' kernel: each workgroup first quantizes x to int8 in blocks of 32 values (a scale
// max|x|/127 per block, as llama.cpp's Q8_1 activations) into workgroup memory, with each
// 8 values' integer sum; then every unit of w is multiplied as integers, four values per
// dot4I8Packed (WGSL's packed_4x8_integer_dot_product, core in every implementation): the
// quants are only masked into bytes, never converted to floats. A segment of a unit (values
// sharing one scale of w and one block of x) gives Σ q·xq exactly in an i32; the offsets of
// the formats (Q4_0's −8, the mins of Q4_1/Q5_1/K types) multiply the segment's Σ xq. So y is
// the product of w with x rounded to its int8 grid, exactly up to f32 accumulation: the error
// against x itself is at most Σ_k |w_k|·scale(k)/2 (scale(k): x's block scale at k).

/** A run of a unit's words that shares one scale of w and one 32-value block of x. */
interface Dot4Segment {
  /** u32 words of four int8 quants each (w's), in x's order */
  words: string[];
  /** word index within x's row of the first of them (4 values a word) */
  xWord: string;
  /** f32 scale of the quants */
  scale: string;
  /** an integer added to every quant (Q4_0: −8), or an f32 added to every value (a min) */
  intOffset?: number;
  floatOffset?: string;
}

interface Dot4Decoder {
  /** statements after the unit decoder's loads (scales, realigned words) */
  lines(s: string): string[];
  /** the segments of the unit whose block starts at word `xw${s}` of x's row */
  segments(s: string): Dot4Segment[];
}

const nibbles = (words: string[]) => [...words.map((w) => `(${w} & 0x0f0f0f0fu)`), ...words.map((w) => `((${w} >> 4u) & 0x0f0f0f0fu)`)];
/** Q5_0/Q5_1: the 32 five-bit quants, low nibbles then high ones, fifth bits from qh */
const fiveBits = (qs: (j: number) => string, qh: string) => [
  ...range(4).map((j) => `(${qs(j)} & 0x0f0f0f0fu) | ${spread(`((${qh} >> ${u32(4 * j)}) & 15u)`)}`),
  ...range(4).map((j) => `((${qs(j)} >> 4u) & 0x0f0f0f0fu) | ${spread(`((${qh} >> ${u32(16 + 4 * j)}) & 15u)`)}`),
];
/** Q4_K/Q5_K: the unit's two segments (sub-blocks 2c and 2c + 1), 16 values each */
const kSegments = (s: string, low: string[], high: string[]): Dot4Segment[] => [
  { words: low, xWord: `xw${s} + xt${s}`, scale: `da${s}`, floatOffset: `-ma${s}.x` },
  { words: high, xWord: `xw${s} + xt${s} + 8u`, scale: `db${s}`, floatOffset: `-mb${s}.x` },
];

const DOT4_DECODERS: Partial<Record<WeightDType, Dot4Decoder>> = {
  q8_0: { lines: (s) => [unalignedD(s)], segments: (s) => [{ words: range(8).map((j) => fieldWord(s, 2, j)), xWord: `xw${s}`, scale: `d${s}` }] },
  q4_0: {
    lines: (s) => [unalignedD(s), ...range(4).map((j) => `let q${j}${s} = ${fieldWord(s, 2, j)};`)],
    segments: (s) => [{ words: nibbles(range(4).map((j) => `q${j}${s}`)), xWord: `xw${s}`, scale: `d${s}`, intOffset: -8 }],
  },
  q4_1: {
    lines: (s) => [`let dm${s} = unpack2x16float(r0${s});`],
    segments: (s) => [{ words: nibbles(range(4).map((j) => `r${1 + j}${s}`)), xWord: `xw${s}`, scale: `dm${s}.x`, floatOffset: `dm${s}.y` }],
  },
  q5_0: {
    lines: (s) => [unalignedD(s), `let qh${s} = ${fieldWord(s, 2, 0)};`, ...range(4).map((j) => `let qs${j}${s} = ${fieldWord(s, 6, j)};`)],
    segments: (s) => [{ words: fiveBits((j) => `qs${j}${s}`, `qh${s}`), xWord: `xw${s}`, scale: `d${s}`, intOffset: -16 }],
  },
  q5_1: {
    lines: (s) => [`let dm${s} = unpack2x16float(r0${s}.x);`, `let qh${s} = r0${s}.y;`],
    segments: (s) => [{ words: fiveBits((j) => `r${1 + (j >> 1)}${s}.${'xy'[j & 1]}`, `qh${s}`), xWord: `xw${s}`, scale: `dm${s}.x`, floatOffset: `dm${s}.y` }],
  },
  q4_k: {
    lines: kScales,
    segments: (s) => {
      const q = range(4).map((j) => `qs${s}.${'xyzw'[j]}`);
      const [low, high] = [nibbles(q).slice(0, 4), nibbles(q).slice(4)];
      return kSegments(s, low, high);
    },
  },
  q5_k: {
    lines: kScales,
    segments: (s) => {
      const q = (j: number) => `qs${s}.${'xyzw'[j]}`;
      const h = (j: number) => `qh${s}.${'xyzw'[j]}`;
      const low = range(4).map((j) => `(${q(j)} & 0x0f0f0f0fu) | (((${h(j)} >> (2u * c${s})) & 0x01010101u) << 4u)`);
      const high = range(4).map((j) => `((${q(j)} >> 4u) & 0x0f0f0f0fu) | (((${h(j)} >> (2u * c${s} + 1u)) & 0x01010101u) << 4u)`);
      return kSegments(s, low, high);
    },
  },
  q6_k: {
    lines: (s) => q6kScales(s),
    // group g: values 128h + 32g + 8p + 0..7, scale ds{g}, quants 0..63 standing for q − 32
    segments: (s) => range(4).map((g) => ({ words: range(2).map((j) => q6kBytes(s, g, j)), xWord: `xw${s} + 32u * h${s} + ${u32(8 * g)} + 2u * p${s}`, scale: `ds${g}${s}`, intOffset: -32 })),
  },
};

/** Whether the dot4 kernel multiplies this format. */
export const hasDot4Decoder = (dtype: WeightDType): boolean => DOT4_DECODERS[dtype] !== undefined;

/**
 * y[M, N] = x[M, K] · dequant(w[N, K])ᵀ with x rounded to int8 per 32 values, multiplied by
 * packed 4x8-bit dot products; null where the format has no such decoder or x's int8 copy
 * and the sums do not fit `workgroupBytes`.
 */
export function dot4MatvecKernel(
  node: KernelSubject,
  operands: readonly TensorType[],
  name: string,
  m: number,
  dtype: WeightDType,
  tuning: QuantizedMatvecTuning,
  workgroupBytes: number,
  fusion?: MatvecFusion,
): (KernelCode & { rowsPerTeam: number }) | null {
  const decoder = DECODERS[dtype];
  const dot4 = DOT4_DECODERS[dtype];
  if (!decoder || !dot4) return null;
  const [n, k] = operands[1].shape;
  const block = blockBytes(dtype, decoder);
  const norm = fusionNorm(fusion, m, k);
  // x as int8 (1 byte a value), a scale per 32 values and an i32 sum per 8: 1.625 bytes a value
  const xBytes = m * k + (m * k) / 8 + (m * k) / 2;
  const perTeam = Math.min(tuning.rowsPerTeam, Math.floor((workgroupBytes - xBytes - (norm?.bytes ?? 0)) / (sumRows(m) * SLICE * SLICES * 4)));
  if (perTeam < 1) return null;
  const lanes = fusedLanes(fusion, Math.min(SLICE, tuning.lanesPerRow), perTeam);
  if (SLICE % lanes !== 0) throw new Error(`quantizedMatvec.lanesPerRow ${tuning.lanesPerRow}: not a divisor of ${SLICE}`);
  const groups = SLICE / lanes;
  const rows = groups * perTeam;
  const units = k / decoder.values;
  const stride = SLICES * lanes;
  const { grid, gridX } = linearGrid(Math.ceil(n / rows));
  const perBlock = decoder.perBlock;
  const rowWords = k / 4;

  // x's blocks, every row of x: the int8 quants (8 words), their scale, and each 8 values' sum
  const xBlocks = (m * k) / 32;
  const prologue = [
    `for (var xb = li; xb < ${u32(xBlocks)}; xb += ${u32(SLICES * SLICE)}) {`,
    // (through the norm's weight: x's block xb is block xb % (K / 32) of its row)
    ...range(8).map((j) => `  let x${j} = ${xRead(fusion, `xb * 8u + ${u32(j)}`, `(xb % ${u32(k / 32)}) * 8u + ${u32(j)}`)};`),
    `  let a4 = max(max(max(abs(x0), abs(x1)), max(abs(x2), abs(x3))), max(max(abs(x4), abs(x5)), max(abs(x6), abs(x7))));`,
    '  let amax = max(max(a4.x, a4.y), max(a4.z, a4.w));',
    '  let inv = select(0.0, 127.0 / amax, amax > 0.0);',
    '  xd[xb] = amax / 127.0;',
    ...range(8).map((j) => `  let q${j} = vec4<i32>(round(x${j} * inv));`),
    ...range(8).map((j) => `  xq[xb * 8u + ${u32(j)}] = pack4xI8(q${j});`),
    ...range(4).map((j) => `  xs[xb * 4u + ${u32(j)}] = dot(q${2 * j} + q${2 * j + 1}, vec4<i32>(1));`),
    '}',
    'workgroupBarrier();',
  ];
  const step = (): string[] => {
    const lines: string[] = [];
    lines.push(perBlock > 1 ? `let b = u >> ${u32(Math.log2(perBlock))};` : 'let b = u;');
    if (perBlock > 1) lines.push(`let t = u & ${u32(perBlock - 1)};`);
    for (let r = 0; r < perTeam; r++) {
      const s = `_${r}`;
      lines.push(`let bb${s} = (row${r} * ${u32(k / block.values)} + b) * ${u32(block.bytes)};`);
      if (perBlock > 1) lines.push(`let t${s} = t;`);
      lines.push(`let xw${s} = b * ${u32(block.values / 4)};`);
      lines.push(...decoder.loads(s));
    }
    for (let r = 0; r < perTeam; r++) {
      const s = `_${r}`;
      lines.push('{', ...indent(dot4.lines(s)));
      for (const [i, seg] of dot4.segments(s).entries()) {
        lines.push(`  let w${i}s = ${seg.xWord};`);
        seg.words.forEach((w, j) => lines.push(`  let w${i}_${j} = ${w};`));
        for (let mm = 0; mm < m; mm++) {
          const at = mm ? `${u32(mm * rowWords)} + w${i}s` : `w${i}s`;
          const sums = range(seg.words.length / 2).map((e) => `xs[(${at}) / 2u + ${u32(e)}]`).join(' + ');
          const dots = seg.words.map((_, j) => `dot4I8Packed(w${i}_${j}, xq[${at} + ${u32(j)}])`).join(' + ');
          const whole = seg.intOffset !== undefined ? `f32(${dots} + ${seg.intOffset} * (${sums}))` : `f32(${dots})`;
          const value = seg.floatOffset !== undefined ? `fma(${seg.scale}, ${whole}, ${seg.floatOffset} * f32(${sums}))` : `${seg.scale} * ${whole}`;
          lines.push(`  acc${mm}_${r} = fma(xd[(${at}) / 8u], ${value}, acc${mm}_${r});`);
        }
      }
      lines.push('}');
    }
    return lines;
  };
  const loops = [`for (var u = (li / ${u32(SLICE)}) * ${u32(lanes)} + lane; u < ${u32(units)}; u += ${u32(stride)}) {`, ...indent(step()), '}'];
  const describe = `${dtype} weights times x rounded to int8 per 32 values (dot4I8Packed): 32 values a step per invocation, ${lanes} invocations along a row, ${perTeam} row${perTeam > 1 ? 's' : ''} each, K split ${SLICES} ways`;
  const workgroup = [
    { decl: `var<workgroup> xq: array<u32, ${(m * k) / 4}>; // x's int8 quants, four a word`, bytes: m * k },
    { decl: `var<workgroup> xd: array<f32, ${(m * k) / 32}>; // x's scale per 32 values`, bytes: (m * k) / 8 },
    { decl: `var<workgroup> xs: array<i32, ${(m * k) / 8}>; // the sum of each 8 quants of x`, bytes: (m * k) / 2 },
  ];
  if (norm) workgroup.push(norm);
  return { ...matvecShell({ name, node, operands, describe, element: decoder.element, dtype, n, m, lanes, groups, perTeam, gridX, grid, loops, workgroup, prologue, fusion, afterLoops: norm?.lines ?? [] }), rowsPerTeam: perTeam };
}
