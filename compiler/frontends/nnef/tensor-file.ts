// NNEF's binary tensor files (.dat): a 128-byte little-endian header, then the items.
//
//   bytes 0-1   magic 0x4E 0xEF            bytes 2-3   version (major, minor), 1.0
//   bytes 4-7   data length in bytes       bytes 8-11  rank (at most 8)
//   bytes 12-43 extents, 8 slots of u32    bytes 44-47 bits per item
//   bytes 48-51 item type: 0 float, 1 unsigned int, 2 quantized unsigned, 3 quantized
//               signed, 4 signed int, 5 bool (high 16 bits: vendor codes)
//   bytes 52-127 reserved (19 u32; the first, in 1.0.0 files, marks an item type 1 as signed)
//
// The data length must equal ceil(items × bits / 8) and the file must end with the data.
// Floats are 16, 32 or 64 bits, integers 8 to 64 bits, bools 1 bit (packed, most
// significant bit first) or 8. Quantized items need the quantization file (graph.quant) to
// mean numbers, which this reader does not take, so they are refused.
import { f16BitsToF32 } from '../../../runtime/f16';

export const TENSOR_HEADER_BYTES = 128;
export const MAX_TENSOR_RANK = 8;

export const ITEM_TYPES = { float: 0, uint: 1, quint: 2, qint: 3, int: 4, bool: 5 } as const;
export type ItemTypeName = keyof typeof ITEM_TYPES;

export interface TensorFile {
  shape: number[];
  itemType: ItemTypeName;
  bits: number;
  /** the items as numbers (int64 values past 2^53 lose precision) */
  data: Float64Array;
}

/** A refusal of a tensor file; the caller adds the file's name (where `file` does not give it) and the variable. */
export class TensorFileError extends Error {
  constructor(
    message: string,
    /** the file the refusal is about, when the thrower knows it */
    readonly file?: string,
  ) {
    super(message);
  }
}

const typeName = (code: number): ItemTypeName | undefined => (Object.keys(ITEM_TYPES) as ItemTypeName[]).find((k) => ITEM_TYPES[k] === code);

/** Decodes a .dat file; throws TensorFileError saying what is wrong. */
export function decodeTensorFile(bytes: Uint8Array): TensorFile {
  if (bytes.length < TENSOR_HEADER_BYTES) throw new TensorFileError(`truncated: ${bytes.length} bytes, shorter than the ${TENSOR_HEADER_BYTES}-byte header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[0] !== 0x4e || bytes[1] !== 0xef) {
    throw new TensorFileError(`bad magic 0x${hex(bytes[0])} 0x${hex(bytes[1])}: not an NNEF tensor file (expected 0x4E 0xEF)`);
  }
  if (bytes[2] !== 1 || bytes[3] !== 0) throw new TensorFileError(`version ${bytes[2]}.${bytes[3]} is not supported (expected 1.0)`);
  const dataLength = view.getUint32(4, true);
  const rank = view.getUint32(8, true);
  if (rank > MAX_TENSOR_RANK) throw new TensorFileError(`rank ${rank} is more than the format's ${MAX_TENSOR_RANK}`);
  const shape = Array.from({ length: rank }, (_, i) => view.getUint32(12 + 4 * i, true));
  const bits = view.getUint32(44, true);
  const code = view.getUint32(48, true);
  const signedFlag = view.getUint32(52, true);
  if (code >>> 16 !== 0) throw new TensorFileError(`item type 0x${code.toString(16)} is vendor-specific; supported: float, int, uint, bool`);
  let itemType = typeName(code) ?? fail(`item type code ${code} is unknown (0 float, 1 uint, 2 quint, 3 qint, 4 int, 5 bool)`);
  if (itemType === 'uint' && signedFlag !== 0) itemType = 'int'; // 1.0.0's signed integers
  if (itemType === 'quint' || itemType === 'qint') throw new TensorFileError(`quantized items (${itemType}) need the graph's quantization file, which is not supported; store float weights`);
  const allowed: Record<string, readonly number[]> = { float: [16, 32, 64], int: [8, 16, 32, 64], uint: [8, 16, 32, 64], bool: [1, 8] };
  if (!allowed[itemType].includes(bits)) throw new TensorFileError(`${bits} bits per ${itemType} item is not supported (${allowed[itemType].join(', ')})`);

  const count = shape.reduce((n, d) => n * d, 1);
  const expected = Math.ceil((count * bits) / 8);
  if (dataLength !== expected) {
    throw new TensorFileError(`data length ${dataLength} does not match extents [${shape.join(', ')}] at ${bits} bits per item (${expected} bytes)`);
  }
  const available = bytes.length - TENSOR_HEADER_BYTES;
  if (available < dataLength) throw new TensorFileError(`truncated: the header gives ${dataLength} bytes of data, the file holds ${available}`);
  if (available > dataLength) throw new TensorFileError(`${available - dataLength} bytes follow the ${dataLength} bytes of data the header gives`);

  const data = new Float64Array(count);
  const at = TENSOR_HEADER_BYTES;
  const bytesPer = bits / 8;
  for (let i = 0; i < count; i++) data[i] = item(view, at, i, bytesPer, itemType, bits);
  return { shape, itemType, bits, data };
}

function item(view: DataView, at: number, i: number, bytesPer: number, type: ItemTypeName, bits: number): number {
  if (bits === 1) return (view.getUint8(at + (i >> 3)) >> (7 - (i & 7))) & 1;
  const o = at + i * bytesPer;
  switch (type) {
    case 'float':
      return bits === 16 ? halfToFloat(view.getUint16(o, true)) : bits === 32 ? view.getFloat32(o, true) : view.getFloat64(o, true);
    case 'int':
      return bits === 8 ? view.getInt8(o) : bits === 16 ? view.getInt16(o, true) : bits === 32 ? view.getInt32(o, true) : Number(view.getBigInt64(o, true));
    case 'uint':
      return bits === 8 ? view.getUint8(o) : bits === 16 ? view.getUint16(o, true) : bits === 32 ? view.getUint32(o, true) : Number(view.getBigUint64(o, true));
    default:
      return view.getUint8(o) !== 0 ? 1 : 0;
  }
}

/** IEEE 754 binary16 to a number. */
export const halfToFloat = f16BitsToF32;

/** Writes a .dat file (for fixtures and tests): float32 unless told otherwise. */
export function encodeTensorFile(shape: readonly number[], values: ArrayLike<number>, options: { itemType?: ItemTypeName; bits?: number } = {}): Uint8Array {
  const itemType = options.itemType ?? 'float';
  const bits = options.bits ?? (itemType === 'bool' ? 1 : 32);
  const count = shape.reduce((n, d) => n * d, 1);
  if (values.length !== count) throw new Error(`${values.length} values for shape [${shape.join(', ')}]`);
  const dataLength = Math.ceil((count * bits) / 8);
  const out = new Uint8Array(TENSOR_HEADER_BYTES + dataLength);
  const view = new DataView(out.buffer);
  out.set([0x4e, 0xef, 1, 0]);
  view.setUint32(4, dataLength, true);
  view.setUint32(8, shape.length, true);
  shape.forEach((d, i) => view.setUint32(12 + 4 * i, d, true));
  view.setUint32(44, bits, true);
  view.setUint32(48, ITEM_TYPES[itemType], true);
  const at = TENSOR_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    const v = values[i];
    const o = at + (i * bits) / 8;
    if (bits === 1) out[at + (i >> 3)] |= (v ? 1 : 0) << (7 - (i & 7));
    else if (itemType === 'float') bits === 32 ? view.setFloat32(o, v, true) : bits === 64 ? view.setFloat64(o, v, true) : view.setUint16(o, floatToHalf(v), true);
    else if (bits === 8) view.setUint8(o, v & 0xff);
    else if (bits === 16) view.setUint16(o, v & 0xffff, true);
    else if (bits === 32) view.setUint32(o, v >>> 0, true);
    else view.setBigInt64(o, BigInt(Math.trunc(v)), true);
  }
  return out;
}

/** A number to binary16, rounding to nearest even (normal and subnormal ranges). */
function floatToHalf(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = ((x >>> 23) & 0xff) - 127 + 15;
  const mantissa = x & 0x7fffff;
  if (Number.isNaN(v)) return 0x7e00;
  if (exponent >= 0x1f) return sign | 0x7c00;
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    const m = (mantissa | 0x800000) >> (1 - exponent);
    return sign | ((m + 0xfff + ((m >> 13) & 1)) >> 13);
  }
  return sign | ((exponent << 10) + ((mantissa + 0xfff + ((mantissa >> 13) & 1)) >> 13));
}

const hex = (b: number) => b.toString(16).padStart(2, '0').toUpperCase();
function fail(message: string): never {
  throw new TensorFileError(message);
}
