// The IDX format of the MNIST files (LeCun's train-images-idx3-ubyte, ...), plain or gzipped:
// two zero bytes, a type code, the rank; then each dimension as a big-endian u32; then the
// elements, big-endian, in row-major order. Read into the matching typed array, for datasets.
import { gunzipSync } from 'node:zlib';
import { CompileError } from '../ir/errors';
import { readFileOrFail } from './tensors';

export type IdxType = 'u8' | 'i8' | 'i16' | 'i32' | 'f32' | 'f64';
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  type: IdxType;
  shape: number[];
  data: IdxData;
}

/** Each type code with its element size and how DataView reads and writes it (big-endian). */
const TYPES: Record<number, { type: IdxType; size: number; get: (v: DataView, at: number) => number; set: (v: DataView, at: number, x: number) => void }> = {
  0x08: { type: 'u8', size: 1, get: (v, at) => v.getUint8(at), set: (v, at, x) => v.setUint8(at, x) },
  0x09: { type: 'i8', size: 1, get: (v, at) => v.getInt8(at), set: (v, at, x) => v.setInt8(at, x) },
  0x0b: { type: 'i16', size: 2, get: (v, at) => v.getInt16(at), set: (v, at, x) => v.setInt16(at, x) },
  0x0c: { type: 'i32', size: 4, get: (v, at) => v.getInt32(at), set: (v, at, x) => v.setInt32(at, x) },
  0x0d: { type: 'f32', size: 4, get: (v, at) => v.getFloat32(at), set: (v, at, x) => v.setFloat32(at, x) },
  0x0e: { type: 'f64', size: 8, get: (v, at) => v.getFloat64(at), set: (v, at, x) => v.setFloat64(at, x) },
};

const ARRAYS = { u8: Uint8Array, i8: Int8Array, i16: Int16Array, i32: Int32Array, f32: Float32Array, f64: Float64Array };

/** The gzip signature, so a gzipped file is recognised whatever it is called. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** True when the bytes start like an (uncompressed) IDX file. */
export function looksLikeIdx(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0 && bytes[1] === 0 && bytes[2] in TYPES;
}

/** Inflates gzip bytes; `file` names them in the error. */
export function gunzipOrFail(bytes: Uint8Array, file: string): Uint8Array {
  try {
    return gunzipSync(bytes);
  } catch (error) {
    throw new CompileError('input', `${file}: not a valid gzip file: ${(error as Error).message}`);
  }
}

/** Parses IDX bytes (gunzipping them first when they are gzip); errors name `file`. */
export function readIdx(bytes: Uint8Array, file: string): IdxArray {
  if (isGzip(bytes)) bytes = gunzipOrFail(bytes, file);
  const fail = (why: string) => new CompileError('input', `${file}: ${why}`);
  if (bytes.length < 4) throw fail(`not an IDX file: ${bytes.length} bytes, shorter than the 4-byte header`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw fail(`not an IDX file: it starts with 0x${hex(bytes[0])} 0x${hex(bytes[1])}, not two zero bytes`);
  }
  const kind = TYPES[bytes[2]];
  if (!kind) throw fail(`not an IDX file: unknown type code 0x${hex(bytes[2])} (expected 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32 or 0x0E f64)`);
  const rank = bytes[3];
  const dataStart = 4 + 4 * rank;
  if (bytes.length < dataStart) throw fail(`truncated IDX header: rank ${rank} needs ${dataStart} bytes, the file has ${bytes.length}`);

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const count = shape.reduce((n, d) => n * d, 1);
  const needed = count * kind.size;
  const have = bytes.length - dataStart;
  const described = `${kind.type}[${shape.join(', ')}]`;
  if (have < needed) throw fail(`truncated IDX data: ${described} needs ${needed} bytes, the file has ${have}`);
  if (have > needed) throw fail(`${have - needed} byte${have - needed === 1 ? '' : 's'} after the IDX data of ${described}; the header does not describe this file`);
  if (kind.size === 1) {
    // bytes need no reordering: copy them out in one go (MNIST's 47 MB of pixels)
    const raw = bytes.slice(dataStart);
    return { type: kind.type, shape, data: kind.type === 'u8' ? raw : new Int8Array(raw.buffer) };
  }
  const data = new ARRAYS[kind.type](count);
  for (let i = 0; i < count; i++) data[i] = kind.get(view, dataStart + i * kind.size);
  return { type: kind.type, shape, data };
}

/** Reads and parses an IDX file (plain or gzipped). */
export function readIdxFile(file: string): IdxArray {
  const buffer = readFileOrFail(file, 'IDX file');
  return readIdx(new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength), file);
}

const hex = (byte: number) => byte.toString(16).padStart(2, '0').toUpperCase();

/** IDX bytes of `type` for `data` of `shape`, laid out as the MNIST files are; for tests and tools. */
export function writeIdx(type: IdxType, data: ArrayLike<number>, shape: readonly number[]): Uint8Array {
  const [code, kind] = Object.entries(TYPES).find(([, t]) => t.type === type)!;
  const start = 4 + 4 * shape.length;
  const out = new Uint8Array(start + data.length * kind.size);
  const view = new DataView(out.buffer);
  out[2] = Number(code);
  out[3] = shape.length;
  shape.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  for (let i = 0; i < data.length; i++) kind.set(view, start + i * kind.size, data[i]);
  return out;
}
