// NumPy's .npy format (format versions 1–3), for `mnc run` inputs and outputs: reads any
// C-order array of a plain numeric dtype as Float32Array, writes little-endian f32.
// Layout: "\x93NUMPY", major, minor, header length (u16 in v1, u32 in v2/3), a Python dict
// literal ({'descr': '<f4', 'fortran_order': False, 'shape': (4, 10), }) padded with spaces
// and '\n' so the data starts at a multiple of 64, then the raw elements.

export interface NpyArray {
  shape: number[];
  data: Float32Array;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Element readers by dtype kind and size; every value is converted to f32. */
const READERS: Record<string, (view: DataView, offset: number, little: boolean) => number> = {
  f2: (v, o, le) => f16ToF32(v.getUint16(o, le)),
  f4: (v, o, le) => v.getFloat32(o, le),
  f8: (v, o, le) => v.getFloat64(o, le),
  i1: (v, o) => v.getInt8(o),
  u1: (v, o) => v.getUint8(o),
  b1: (v, o) => v.getUint8(o),
  i2: (v, o, le) => v.getInt16(o, le),
  u2: (v, o, le) => v.getUint16(o, le),
  i4: (v, o, le) => v.getInt32(o, le),
  u4: (v, o, le) => v.getUint32(o, le),
  i8: (v, o, le) => Number(v.getBigInt64(o, le)),
  u8: (v, o, le) => Number(v.getBigUint64(o, le)),
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
  const read = READERS[`${kind}${size}`];
  if (!read) throw new Error(`unsupported .npy dtype '${order}${kind}${size}' (numeric dtypes only)`);
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
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = read(view, dataStart + i * itemSize, little);
  return { shape, data };
}

/** A version 1.0 .npy file holding `data` as little-endian f32 of `shape`, C order. */
export function writeNpy(data: Float32Array, shape: readonly number[]): Uint8Array {
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${tuple}, }`;
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + data.length * 4);
  out.set(MAGIC);
  out[6] = 1;
  out[7] = 0;
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  for (let i = 0; i < data.length; i++) view.setFloat32(10 + header.length + i * 4, data[i], true);
  return out;
}

export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}
