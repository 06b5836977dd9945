// NumPy's .npy format (format versions 1–3), for `mnc run` inputs and outputs: reads any
// C-order array of a plain numeric dtype (kept in a typed array that holds its values
// exactly), writes little-endian f32.
// Layout: "\x93NUMPY", major, minor, header length (u16 in v1, u32 in v2/3), a Python dict
// literal ({'descr': '<f4', 'fortran_order': False, 'shape': (4, 10), }) padded with spaces
// and '\n' so the data starts at a multiple of 64, then the raw elements.
import { f16BitsToF32 } from '../../runtime/f16';

/** Values as the file holds them: int64 and uint64 as Float64Array, f16 widened to f32. */
export type NpyData = Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array;

export interface NpyArray {
  shape: number[];
  data: NpyData;
  /** NumPy's name of the file's dtype ('float32', 'int64', 'uint8', …), for messages */
  dtype: string;
  /** whether the dtype holds only integers (bool included) */
  integer: boolean;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

type Reader = { name: string; array: new (n: number) => NpyData; read: (view: DataView, offset: number, little: boolean) => number };

/** Element readers by dtype kind and size, with the typed array that holds their values. */
const READERS: Record<string, Reader> = {
  f2: { name: 'float16', array: Float32Array, read: (v, o, le) => f16ToF32(v.getUint16(o, le)) },
  f4: { name: 'float32', array: Float32Array, read: (v, o, le) => v.getFloat32(o, le) },
  f8: { name: 'float64', array: Float64Array, read: (v, o, le) => v.getFloat64(o, le) },
  i1: { name: 'int8', array: Int8Array, read: (v, o) => v.getInt8(o) },
  u1: { name: 'uint8', array: Uint8Array, read: (v, o) => v.getUint8(o) },
  b1: { name: 'bool', array: Uint8Array, read: (v, o) => v.getUint8(o) },
  i2: { name: 'int16', array: Int16Array, read: (v, o, le) => v.getInt16(o, le) },
  u2: { name: 'uint16', array: Uint16Array, read: (v, o, le) => v.getUint16(o, le) },
  i4: { name: 'int32', array: Int32Array, read: (v, o, le) => v.getInt32(o, le) },
  u4: { name: 'uint32', array: Uint32Array, read: (v, o, le) => v.getUint32(o, le) },
  i8: { name: 'int64', array: Float64Array, read: (v, o, le) => Number(v.getBigInt64(o, le)) },
  u8: { name: 'uint64', array: Float64Array, read: (v, o, le) => Number(v.getBigUint64(o, le)) },
};

/** Parses a .npy file; throws an Error whose message says what is wrong with it. */
export function readNpy(bytes: Uint8Array): NpyArray {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) throw new Error('not a .npy file (no \\x93NUMPY signature)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  if (major < 1 || major > 3) throw new Error(`unsupported .npy format version ${major}.${bytes[7]}`);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const dataStart = headerStart + headerLength;
  if (dataStart > bytes.length) throw new Error('truncated .npy header');
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(headerStart, dataStart));

  const descr = /'descr'\s*:\s*'([<>|=])([a-z])(\d+)'/.exec(header);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shapeText) throw new Error(`malformed .npy header: ${header.trim()}`);
  if (fortran[1] === 'True') throw new Error('Fortran-order .npy arrays are not supported; save with np.ascontiguousarray');
  const [, order, kind, size] = descr;
  const reader = READERS[`${kind}${size}`];
  if (!reader) throw new Error(`unsupported .npy dtype '${order}${kind}${size}' (numeric dtypes only)`);
  const shape = shapeText[1]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new Error(`malformed .npy shape (${shapeText[1]})`);

  const count = shape.reduce((n, d) => n * d, 1);
  const itemSize = Number(size);
  if (bytes.length - dataStart < count * itemSize) {
    throw new Error(`truncated .npy data: shape (${shape.join(', ')}) needs ${count * itemSize} bytes, the file has ${bytes.length - dataStart}`);
  }
  const little = order !== '>';
  const data = new reader.array(count);
  for (let i = 0; i < count; i++) data[i] = reader.read(view, dataStart + i * itemSize, little);
  return { shape, data, dtype: reader.name, integer: kind !== 'f' };
}

/** A version 1.0 .npy file holding `data` (little-endian f32, i8, i32 or u32, by its type) of `shape`, C order. */
export function writeNpy(data: Float32Array | Int8Array | Int32Array | Uint32Array, shape: readonly number[]): Uint8Array {
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const descr = data instanceof Int8Array ? '|i1' : data instanceof Int32Array ? '<i4' : data instanceof Uint32Array ? '<u4' : '<f4';
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${tuple}, }`;
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set(MAGIC);
  out[6] = 1;
  out[7] = 0;
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  const at = 10 + header.length;
  if (data instanceof Float32Array) for (let i = 0; i < data.length; i++) view.setFloat32(at + i * 4, data[i], true);
  else if (data instanceof Int8Array) out.set(new Uint8Array(data.buffer, data.byteOffset, data.length), at);
  else if (data instanceof Int32Array) for (let i = 0; i < data.length; i++) view.setInt32(at + i * 4, data[i], true);
  else for (let i = 0; i < data.length; i++) view.setUint32(at + i * 4, data[i], true);
  return out;
}

export const f16ToF32 = f16BitsToF32;
