// GGUF, llama.cpp's model file: a header (magic, version, counts), typed key-value metadata,
// tensor infos (name, dims, ggml type, offset) and an aligned data section. This reads the
// header and describes where each tensor's bytes lie; it never copies the data section.
//
// Written here rather than taken from @huggingface/gguf 0.4.6: that library reads only from a
// URL or (in Node) a path, not from bytes or a caller's reader; its errors are plain Errors
// (some raw RangeErrors) naming neither the file nor, often, the field; it does not check
// tensor data against the file's end, tensor types or offset alignment; and the runtime takes
// no dependencies. The limits below come from the file's own size instead of fixed caps.
//
// Layout (GGUF v2 and v3, little-endian; v3 only added big-endian files, refused here):
//   magic "GGUF" · version u32 · tensor_count u64 · kv_count u64
//   kv_count × (key: string, value_type u32, value)
//   tensor_count × (name: string, n_dims u32, ne u64[n_dims], ggml_type u32, offset u64)
//   padding to `general.alignment` (default 32) · data section
//   string = u64 byte length + UTF-8 bytes (no terminator); array = element type u32 + count u64 + elements
// A tensor's offset is relative to the data section and a multiple of the alignment.
import { PlanError, type PlanErrorKind } from './errors';
import { ggmlTypeById, type GgmlType } from './ggml-types';

export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS */
export const GGUF_MAX_DIMS = 4;
/** Arrays of arrays nest at most this deep (each level costs 12 bytes, so only the stack limits them otherwise). */
export const GGUF_MAX_ARRAY_DEPTH = 16;

/** GGUF metadata value types (gguf_type). */
export const GgufType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufType = (typeof GgufType)[keyof typeof GgufType];
const TYPE_NAMES = Object.fromEntries(Object.entries(GgufType).map(([name, id]) => [id, name])) as Record<GgufType, string>;
export const ggufTypeName = (t: number): string => TYPE_NAMES[t as GgufType] ?? `type ${t}`;

/**
 * A metadata value: numbers for the 8–32-bit integers and the floats, bigint for the 64-bit
 * integers, boolean, string, or an array. Arrays of numbers are typed arrays (a 150k-entry
 * token_type array is one allocation), arrays of strings, bools and arrays are plain arrays.
 */
export type GgufValue = number | bigint | boolean | string | GgufArray;
export type GgufArrayValues =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array
  | BigUint64Array | BigInt64Array | boolean[] | string[] | GgufArray[];
export interface GgufArray {
  elementType: GgufType;
  values: GgufArrayValues;
}

export interface GgufMetadataEntry {
  type: GgufType;
  value: GgufValue;
}

export interface GgufTensorInfo {
  name: string;
  type: GgmlType;
  /**
   * GGUF's dims as stored, ne[0] first: ne[0] is the contiguous (fastest-varying) axis and
   * the one blocks run along. A PyTorch Linear weight [out, in] is stored with ne = [in, out].
   */
  ne: number[];
  /** the row-major shape: ne reversed ([out, in] for that Linear weight) */
  shape: number[];
  elements: number;
  /** absolute byte offset of the tensor's data in the file */
  offset: number;
  byteLength: number;
}

export interface GgufFile {
  /** the name errors use for the file */
  source: string;
  version: number;
  alignment: number;
  metadata: Map<string, GgufMetadataEntry>;
  /** in file order */
  tensors: Map<string, GgufTensorInfo>;
  /** absolute offset of the data section */
  dataOffset: number;
  /** the file's size in bytes */
  byteLength: number;
}

/** Random access to a file's bytes: a buffer in memory, or a file handle (runtime/hosts/file-source.ts). */
export interface ByteSource {
  readonly byteLength: number;
  /** exactly `length` bytes from `offset`; a source over memory returns a view, not a copy */
  read(offset: number, length: number): Promise<Uint8Array>;
}

export function bytesSource(bytes: Uint8Array): ByteSource {
  return {
    byteLength: bytes.length,
    read: async (offset, length) => {
      if (offset < 0 || length < 0 || offset + length > bytes.length) throw new RangeError(`bytes ${offset}..${offset + length} are outside the ${bytes.length}-byte buffer`);
      return bytes.subarray(offset, offset + length);
    },
  };
}

/** Parses a GGUF file held in memory; tensorBytes() then gives views on its data. */
export function parseGguf(bytes: Uint8Array, source = 'GGUF file'): GgufFile {
  return parse(bytes, bytes.length, source);
}

/**
 * Reads a GGUF file's header from a source (a file handle, say), fetching only the header's
 * bytes: a prefix of 8 MiB (or `firstRead`), as much as a 150k-token vocabulary's header
 * takes, made 4 times longer and parsed again while the header runs past it. Tensor data stays
 * unread; readTensorBytes() fetches one tensor's bytes.
 */
export async function readGguf(file: ByteSource, source = 'GGUF file', options: { firstRead?: number } = {}): Promise<GgufFile> {
  let length = Math.min(file.byteLength, options.firstRead ?? 8 << 20);
  for (;;) {
    const prefix = await file.read(0, length);
    try {
      return parse(prefix, file.byteLength, source);
    } catch (error) {
      if (!(error instanceof NeedMore) || length === file.byteLength) throw error;
      length = Math.min(file.byteLength, Math.max(4 * length, error.needed));
    }
  }
}

/** A tensor's bytes in a file held in memory: a view, no copy. */
export function tensorBytes(bytes: Uint8Array, tensor: GgufTensorInfo): Uint8Array {
  return bytes.subarray(tensor.offset, tensor.offset + tensor.byteLength);
}

export function readTensorBytes(file: ByteSource, tensor: GgufTensorInfo): Promise<Uint8Array> {
  return file.read(tensor.offset, tensor.byteLength);
}

/** A metadata value by key, or undefined. */
export function metadataValue(file: GgufFile, key: string): GgufValue | undefined {
  return file.metadata.get(key)?.value;
}

// ---------------------------------------------------------------------------------------

/** Thrown inside parse() when a header read passes the end of a prefix shorter than the file. */
class NeedMore extends Error {
  constructor(readonly needed: number) {
    super('need more bytes');
  }
}

const MIN_VALUE_BYTES: Record<GgufType, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 8, 9: 12, 10: 8, 11: 8, 12: 8 };
const isGgufType = (t: number): t is GgufType => Object.hasOwn(MIN_VALUE_BYTES, t);
/** A tensor info takes at least an empty name (8), n_dims (4), type (4) and offset (8). */
const MIN_TENSOR_INFO_BYTES = 24;
/** A key-value pair takes at least an empty key (8), a type (4) and a one-byte value. */
const MIN_KV_BYTES = 13;

// ignoreBOM keeps a leading U+FEFF: it is a token of some vocabularies, not a byte-order mark here
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lenientUtf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/** What a read is of, for messages: a string, or a function that makes it (per array element, made only on failure). */
type Field = string | (() => string);
const named = (field: Field): string => (typeof field === 'string' ? field : field());

/** The header reader: a position in `bytes`, a prefix of a file of `fileSize` bytes. */
class Reader {
  pos = 0;
  private readonly view: DataView;

  constructor(
    readonly bytes: Uint8Array,
    readonly fileSize: number,
    readonly source: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(kind: PlanErrorKind, message: string): never {
    throw new PlanError(kind, `${this.source}: ${message}`);
  }

  /** Ensures `n` bytes at pos. */
  need(n: number, field: Field): void {
    if (this.pos + n <= this.bytes.length) return;
    if (this.bytes.length < this.fileSize) throw new NeedMore(this.pos + n);
    this.fail('truncated', `the file ends at byte ${this.fileSize}, inside ${named(field)} (${n} bytes at byte ${this.pos})`);
  }

  get remaining(): number {
    return this.fileSize - this.pos;
  }

  u8(field: Field): number {
    this.need(1, field);
    return this.bytes[this.pos++];
  }

  u32(field: Field): number {
    this.need(4, field);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A u64 that must be a count or offset below 2^53 (read as two halves: no BigInt on the hot path). */
  size(field: Field): number {
    this.need(8, field);
    const lo = this.view.getUint32(this.pos, true);
    const hi = this.view.getUint32(this.pos + 4, true);
    this.pos += 8;
    if (hi > 0x1fffff) this.fail('bad-header', `${named(field)} is ${(BigInt(hi) << 32n) | BigInt(lo)}, beyond any file`);
    return hi * 2 ** 32 + lo;
  }

  /** A count of items of at least `minBytes` each, bounded by the bytes left in the file. */
  count(field: Field, minBytes: number): number {
    const n = this.size(field);
    if (n * minBytes > this.remaining) {
      // beyond 32 bits no real GGUF count goes: the header is corrupt; otherwise the file was more likely cut short
      const room = `the ${this.remaining} bytes left in the file hold at most ${Math.floor(this.remaining / minBytes)}`;
      if (n > 0xffffffff) this.fail('bad-header', `${named(field)} is ${n}, more than any GGUF file holds (${room})`);
      this.fail('truncated', `${named(field)} is ${n}, but ${room}`);
    }
    return n;
  }

  /**
   * Keys and tensor names must be UTF-8 (`strict`); string values are decoded leniently (bad
   * bytes become U+FFFD), as some converters wrote vocabularies with stray bytes.
   */
  string(field: Field, strict: boolean): string {
    const length = this.size(() => `the length of ${named(field)}`);
    if (length > this.remaining) this.fail('truncated', `${named(field)} claims ${length} bytes at byte ${this.pos}, but the file ends at byte ${this.fileSize}`);
    this.need(length, field);
    const raw = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    if (!strict) return lenientUtf8.decode(raw);
    try {
      return utf8.decode(raw);
    } catch {
      return this.fail('bad-header', `${named(field)} is not UTF-8`);
    }
  }

  /** A fixed-size numeric element (array elements and scalars alike). */
  number(type: GgufType, field: Field): number | bigint {
    const width = MIN_VALUE_BYTES[type];
    this.need(width, field);
    const v = this.view;
    const at = this.pos;
    this.pos += width;
    switch (type) {
      case GgufType.UINT8: return v.getUint8(at);
      case GgufType.INT8: return v.getInt8(at);
      case GgufType.UINT16: return v.getUint16(at, true);
      case GgufType.INT16: return v.getInt16(at, true);
      case GgufType.UINT32: return v.getUint32(at, true);
      case GgufType.INT32: return v.getInt32(at, true);
      case GgufType.FLOAT32: return v.getFloat32(at, true);
      case GgufType.UINT64: return v.getBigUint64(at, true);
      case GgufType.INT64: return v.getBigInt64(at, true);
      case GgufType.FLOAT64: return v.getFloat64(at, true);
      default: return this.fail('bad-header', `${named(field)}: ${ggufTypeName(type)} is not a number type`);
    }
  }

  value(type: number, field: Field, depth = 0): GgufValue {
    if (!isGgufType(type)) this.fail('bad-header', `${named(field)} has unknown metadata type ${type}`);
    switch (type) {
      case GgufType.BOOL: return this.u8(field) !== 0;
      case GgufType.STRING: return this.string(field, false);
      case GgufType.ARRAY: return this.array(field, depth);
      default: return this.number(type, field);
    }
  }

  array(field: Field, depth: number): GgufArray {
    if (depth >= GGUF_MAX_ARRAY_DEPTH) this.fail('bad-header', `${named(field)} nests arrays deeper than ${GGUF_MAX_ARRAY_DEPTH}`);
    const elementType = this.u32(() => `the element type of ${named(field)}`);
    if (!isGgufType(elementType)) this.fail('bad-header', `${named(field)} is an array of unknown metadata type ${elementType}`);
    const n = this.count(() => `the length of ${named(field)}`, MIN_VALUE_BYTES[elementType]);
    switch (elementType) {
      case GgufType.STRING:
      case GgufType.BOOL:
      case GgufType.ARRAY: {
        const values: GgufValue[] = [];
        for (let i = 0; i < n; i++) values.push(this.value(elementType, () => `${named(field)}[${i}]`, depth + 1));
        return { elementType, values: values as GgufArrayValues };
      }
      default: {
        // numbers: the whole array at once (fixed width), then each element
        this.need(n * MIN_VALUE_BYTES[elementType], field);
        const values = new TYPED_ARRAYS[elementType](n);
        for (let i = 0; i < n; i++) (values as { [i: number]: number | bigint })[i] = this.number(elementType, field);
        return { elementType, values };
      }
    }
  }
}

const TYPED_ARRAYS = {
  [GgufType.UINT8]: Uint8Array,
  [GgufType.INT8]: Int8Array,
  [GgufType.UINT16]: Uint16Array,
  [GgufType.INT16]: Int16Array,
  [GgufType.UINT32]: Uint32Array,
  [GgufType.INT32]: Int32Array,
  [GgufType.FLOAT32]: Float32Array,
  [GgufType.FLOAT64]: Float64Array,
  [GgufType.UINT64]: BigUint64Array,
  [GgufType.INT64]: BigInt64Array,
} as const;

const MAGIC = [0x47, 0x47, 0x55, 0x46]; // "GGUF"

function parse(bytes: Uint8Array, fileSize: number, source: string): GgufFile {
  const r: Reader = new Reader(bytes, fileSize, source);
  const head = bytes.subarray(0, 4);
  if (!MAGIC.every((b, i) => i >= head.length || head[i] === b)) {
    r.fail('bad-magic', `not a GGUF file: it starts with ${JSON.stringify(String.fromCharCode(...head))}, not "GGUF"`);
  }
  r.need(4, 'the magic "GGUF"');
  r.pos = 4;
  const version = r.u32('the version');
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24) | ((version & 0xff00) << 8) | ((version >>> 8) & 0xff00) | (version >>> 24);
    if (swapped === 2 || swapped === 3) r.fail('unsupported-version', `a big-endian GGUF file (version ${swapped}); only little-endian files are read`);
    r.fail('unsupported-version', `GGUF version ${version}; this reader reads versions 2 and 3${version === 1 ? ' (llama.cpp no longer reads version 1 either)' : ''}`);
  }
  const tensorCount = r.count('the header field tensor_count', MIN_TENSOR_INFO_BYTES);
  const kvCount = r.count('the header field kv_count', MIN_KV_BYTES);

  const metadata = new Map<string, GgufMetadataEntry>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string(`the key of metadata entry ${i}`, true);
    if (metadata.has(key)) r.fail('bad-header', `metadata key "${key}" appears twice`);
    const type = r.u32(`the type of metadata "${key}"`);
    const value = r.value(type, `metadata "${key}"`);
    metadata.set(key, { type: type as GgufType, value });
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const align = metadata.get('general.alignment');
  if (align) {
    if (align.type !== GgufType.UINT32) r.fail('bad-header', `metadata "general.alignment" is ${ggufTypeName(align.type)}; GGUF stores it as UINT32`);
    alignment = align.value as number;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) r.fail('bad-header', `metadata "general.alignment" is ${alignment}, not a power of two`);
  }

  const tensors = new Map<string, GgufTensorInfo>();
  for (let i = 0; i < tensorCount; i++) {
    const name = r.string(`the name of tensor ${i}`, true);
    const what = `tensor "${name}"`;
    if (tensors.has(name)) r.fail('bad-header', `${what} appears twice`);
    const nDims = r.u32(`the n_dims of ${what}`);
    if (nDims > GGUF_MAX_DIMS) r.fail('bad-header', `${what} has ${nDims} dims; GGUF tensors have at most ${GGUF_MAX_DIMS}`);
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(r.size(`ne[${d}] of ${what}`));
    const typeId = r.u32(`the type of ${what}`);
    const offset = r.size(`the offset of ${what}`);
    const type = ggmlTypeById(typeId);
    if (!type) r.fail('unsupported-type', `${what} has ggml type ${typeId}, which this reader does not know`);
    if (offset % alignment !== 0) r.fail('bad-header', `${what} has offset ${offset} in the data section, not a multiple of the alignment ${alignment}`);
    const rowLength = ne[0] ?? 1;
    if (rowLength % type.blockElements !== 0) r.fail('bad-header', `${what} has ne[0] = ${rowLength}, not a multiple of ${type.name}'s block of ${type.blockElements} elements`);
    // element count and byte length, checked against the file's size before they can overflow
    let elements = 1;
    for (const n of ne) elements *= n;
    const byteLength = (elements / type.blockElements) * type.blockBytes;
    if (!(byteLength <= fileSize)) r.fail('truncated', `${what} (${type.name} ne [${ne.join(', ')}]) needs ${byteLength} bytes of data, more than the whole ${fileSize}-byte file`);
    tensors.set(name, { name, type, ne, shape: ne.slice().reverse(), elements, offset, byteLength });
  }

  const infoEnd = r.pos;
  const padded = Math.ceil(infoEnd / alignment) * alignment;
  if (tensorCount > 0 && padded > fileSize) r.fail('truncated', `the data section should start at byte ${padded} (alignment ${alignment}), past the end of the ${fileSize}-byte file`);
  const dataOffset = Math.min(padded, fileSize);
  for (const t of tensors.values()) {
    t.offset += dataOffset;
    if (t.offset + t.byteLength > fileSize) {
      r.fail('truncated', `tensor "${t.name}" has data at bytes ${t.offset}..${t.offset + t.byteLength}, past the end of the ${fileSize}-byte file`);
    }
  }
  return { source, version, alignment, metadata, tensors, dataOffset, byteLength: fileSize };
}
