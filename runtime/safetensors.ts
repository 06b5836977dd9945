// safetensors, the tensor file format of Hugging Face: an 8-byte little-endian header
// length, a JSON header naming each tensor's dtype, shape and byte range, then the data.
// Written by hand because the runtime takes no dependencies; only what training state needs.
import { PlanError } from './errors';
import { parseJson } from './json';

export type SafetensorsDType = 'F32' | 'F16' | 'I32' | 'U32' | 'F64' | 'I64' | 'U8' | 'I8' | 'BF16';

export interface SafeTensor {
  dtype: SafetensorsDType;
  shape: number[];
  /** little-endian element bytes */
  data: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

const ELEMENT_BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, U32: 4, F64: 8, I64: 8, U8: 1, I8: 1 };

/** Writes tensors in the given order; the header is padded with spaces to 8 bytes, as the format allows. */
export function encodeSafetensors(tensors: ReadonlyMap<string, SafeTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const t of tensors.values()) {
    out.set(t.data, at);
    at += t.data.length;
  }
  return out;
}

/** A header value for a message: JSON, cut short. */
function brief(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Reads a safetensors file; every problem is a PlanError('bad-input') naming the file part at fault. */
export function decodeSafetensors(bytes: Uint8Array, source = 'safetensors file'): SafetensorsFile {
  const bad = (problem: string): never => {
    throw new PlanError('bad-input', `${source}: ${problem}`);
  };
  if (bytes.length < 8) bad(`${bytes.length} bytes is too short for a safetensors header`);
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLength > bytes.length - 8) bad(`the header claims ${headerLength} bytes but only ${bytes.length - 8} follow`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLength));
  } catch {
    return bad('the header is not UTF-8');
  }
  const parsed = parseJson(text);
  if ('problem' in parsed) bad(`the header ${parsed.problem}`);
  const header = (parsed as { value: Record<string, unknown> }).value;
  if (typeof header !== 'object' || header === null || Array.isArray(header)) bad('the header is not a JSON object');
  const data = bytes.subarray(8 + headerLength);
  const tensors = new Map<string, SafeTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('__metadata__ is not an object');
      for (const [key, value] of Object.entries(raw as object)) if (typeof value !== 'string') bad(`__metadata__ entry "${key}" is not a string`);
      metadata = raw as Record<string, string>;
      continue;
    }
    const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t !== 'object' || t === null) bad(`tensor "${name}" is not an object`);
    const dtype = t.dtype as SafetensorsDType;
    if (typeof dtype !== 'string' || !Object.hasOwn(ELEMENT_BYTES, dtype)) bad(`tensor "${name}" has unknown dtype ${brief(t.dtype)}`);
    const shape = t.shape as number[];
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) bad(`tensor "${name}" has a bad shape ${brief(t.shape)}`);
    if (!Array.isArray(t.data_offsets) || t.data_offsets.length !== 2) bad(`tensor "${name}" has data_offsets ${brief(t.data_offsets)}, not [begin, end]`);
    const [begin, end] = t.data_offsets as number[];
    if (!Number.isInteger(begin) || !Number.isInteger(end) || begin < 0 || end < begin || end > data.length) {
      bad(`tensor "${name}" has data_offsets ${brief(t.data_offsets)} outside the ${data.length} data bytes`);
    }
    const expected = shape.reduce((n, d) => n * d, 1) * ELEMENT_BYTES[dtype];
    if (end - begin !== expected) bad(`tensor "${name}" (${dtype} [${shape.join(', ')}]) needs ${expected} bytes; its range holds ${end - begin}`);
    tensors.set(name, { dtype, shape, data: data.subarray(begin, end) });
  }
  return { tensors, metadata };
}
