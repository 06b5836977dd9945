// A GGUF writer for the test tooling: metadata of every value type, tensor infos and an
// aligned data section, as runtime/gguf.ts reads them (its header comment gives the layout).
// Fixtures and fuzz seeds are written with it, so no test downloads a model.
import { ggmlType, typeBytes, type GgmlTypeName } from '../runtime/ggml-types';
import { GGUF_DEFAULT_ALIGNMENT, GgufType, type GgufArray, type GgufArrayValues, type GgufMetadataEntry, type GgufValue } from '../runtime/gguf';

export interface GgufWriterTensor {
  name: string;
  type: GgmlTypeName;
  /** GGUF order: ne[0] is the contiguous axis (a row-major [rows, cols] matrix has ne = [cols, rows]) */
  ne: number[];
  data: Uint8Array;
  /** for writing bad files: a ggml type id written instead of the type's */
  typeId?: number;
  /** for writing bad files: the data's length is not checked against the type and ne */
  unchecked?: boolean;
  /** for writing bad files: the offset written instead of the next aligned one */
  offset?: number;
}

export interface GgufWriterInput {
  /** written in this order; `general.alignment` (UINT32), if present, sets the data alignment */
  metadata: Iterable<[string, GgufMetadataEntry]>;
  tensors: GgufWriterTensor[];
  /** default 3 */
  version?: number;
  /** for writing bad files: pad to this alignment whatever `general.alignment` says */
  alignment?: number;
}

/** Metadata entries by type, for building inputs: `meta.u32(32)`, `meta.array(GgufType.STRING, ['a'])`. */
export const meta = {
  u8: (value: number): GgufMetadataEntry => ({ type: GgufType.UINT8, value }),
  i8: (value: number): GgufMetadataEntry => ({ type: GgufType.INT8, value }),
  u16: (value: number): GgufMetadataEntry => ({ type: GgufType.UINT16, value }),
  i16: (value: number): GgufMetadataEntry => ({ type: GgufType.INT16, value }),
  u32: (value: number): GgufMetadataEntry => ({ type: GgufType.UINT32, value }),
  i32: (value: number): GgufMetadataEntry => ({ type: GgufType.INT32, value }),
  f32: (value: number): GgufMetadataEntry => ({ type: GgufType.FLOAT32, value }),
  bool: (value: boolean): GgufMetadataEntry => ({ type: GgufType.BOOL, value }),
  str: (value: string): GgufMetadataEntry => ({ type: GgufType.STRING, value }),
  u64: (value: bigint): GgufMetadataEntry => ({ type: GgufType.UINT64, value }),
  i64: (value: bigint): GgufMetadataEntry => ({ type: GgufType.INT64, value }),
  f64: (value: number): GgufMetadataEntry => ({ type: GgufType.FLOAT64, value }),
  array: (elementType: GgufType, values: GgufArrayValues): GgufMetadataEntry => ({ type: GgufType.ARRAY, value: { elementType, values } }),
};

/** A growable little-endian byte buffer. */
class Bytes {
  private buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private room(n: number): number {
    if (this.length + n > this.buf.length) {
      const grown = new Uint8Array(Math.max(2 * this.buf.length, this.length + n));
      grown.set(this.buf.subarray(0, this.length));
      this.buf = grown;
      this.view = new DataView(grown.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  // room() first: it may replace buf and view, which must then be read after it
  u8(v: number) { const at = this.room(1); this.buf[at] = v; }
  i8(v: number) { const at = this.room(1); this.view.setInt8(at, v); }
  u16(v: number) { const at = this.room(2); this.view.setUint16(at, v, true); }
  i16(v: number) { const at = this.room(2); this.view.setInt16(at, v, true); }
  u32(v: number) { const at = this.room(4); this.view.setUint32(at, v, true); }
  i32(v: number) { const at = this.room(4); this.view.setInt32(at, v, true); }
  f32(v: number) { const at = this.room(4); this.view.setFloat32(at, v, true); }
  f64(v: number) { const at = this.room(8); this.view.setFloat64(at, v, true); }
  u64(v: bigint | number) { const at = this.room(8); this.view.setBigUint64(at, BigInt(v), true); }
  i64(v: bigint | number) { const at = this.room(8); this.view.setBigInt64(at, BigInt(v), true); }
  raw(bytes: Uint8Array) { const at = this.room(bytes.length); this.buf.set(bytes, at); }
  string(s: string) {
    const bytes = new TextEncoder().encode(s);
    this.u64(bytes.length);
    this.raw(bytes);
  }
  padTo(alignment: number) { this.room((alignment - (this.length % alignment)) % alignment); }
  bytes(): Uint8Array { return this.buf.slice(0, this.length); }
}

function writeValue(out: Bytes, type: GgufType, value: GgufValue): void {
  switch (type) {
    case GgufType.UINT8: return out.u8(value as number);
    case GgufType.INT8: return out.i8(value as number);
    case GgufType.UINT16: return out.u16(value as number);
    case GgufType.INT16: return out.i16(value as number);
    case GgufType.UINT32: return out.u32(value as number);
    case GgufType.INT32: return out.i32(value as number);
    case GgufType.FLOAT32: return out.f32(value as number);
    case GgufType.BOOL: return out.u8(value ? 1 : 0);
    case GgufType.STRING: return out.string(value as string);
    case GgufType.UINT64: return out.u64(value as bigint);
    case GgufType.INT64: return out.i64(value as bigint);
    case GgufType.FLOAT64: return out.f64(value as number);
    case GgufType.ARRAY: {
      const { elementType, values } = value as GgufArray;
      out.u32(elementType);
      out.u64(values.length);
      for (const v of values as ArrayLike<GgufValue> & Iterable<GgufValue>) writeValue(out, elementType, v);
      return;
    }
  }
}

/** The GGUF file: header, metadata, tensor infos, then each tensor's data at the next aligned offset. */
export function encodeGguf(input: GgufWriterInput): Uint8Array {
  const entries = [...input.metadata];
  const alignEntry = entries.find(([key]) => key === 'general.alignment');
  const alignment = input.alignment ?? (alignEntry ? Number(alignEntry[1].value) : GGUF_DEFAULT_ALIGNMENT);
  const out = new Bytes();
  out.raw(new TextEncoder().encode('GGUF'));
  out.u32(input.version ?? 3);
  out.u64(input.tensors.length);
  out.u64(entries.length);
  for (const [key, { type, value }] of entries) {
    out.string(key);
    out.u32(type);
    writeValue(out, type, value);
  }
  let offset = 0;
  for (const t of input.tensors) {
    const type = ggmlType(t.type);
    const expected = typeBytes(type, t.ne.reduce((a, b) => a * b, 1));
    if (!t.unchecked && t.data.length !== expected) throw new Error(`tensor "${t.name}": ${t.type} ne [${t.ne.join(', ')}] takes ${expected} bytes, given ${t.data.length}`);
    out.string(t.name);
    out.u32(t.ne.length);
    for (const n of t.ne) out.u64(n);
    out.u32(t.typeId ?? type.id);
    out.u64(t.offset ?? offset);
    offset += Math.ceil(t.data.length / alignment) * alignment;
  }
  out.padTo(alignment);
  for (const t of input.tensors) {
    out.raw(t.data);
    out.padTo(alignment);
  }
  return out.bytes();
}
