// A plan's parameters from safetensors files: the checkpoints HuggingFace ships (one file, or
// shards), matched to the plan's parameter buffers by name. A plan compiled with --no-weights
// carries no parameter bytes; this fills them at load time, so rebuilding a plan never
// rewrites gigabytes. A parameter stored as f16 or bf16 (a plan compiled with weightStorage)
// gets each tensor rounded to that storage, to nearest even. Names and layouts are the model builder's business (it names its
// parameters as the checkpoint does and reads them in the checkpoint's layout): nothing here
// transposes or renames, so a mismatch is an error rather than a silent guess.
import type { BufferDesc, Manifest } from '../schemas/manifest';
import { PlanError } from './errors';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from './f16';
import type { SafeTensor, SafetensorsFile } from './safetensors';

export interface WeightsOptions {
  /** tensors in the files that are not parameters of the plan: refused ('error', the default) or skipped ('ignore') */
  unknown?: 'error' | 'ignore';
  /** parameters no file holds: refused ('error', the default) or left as they are ('keep') */
  missing?: 'error' | 'keep';
}

/** What loadWeights did, for messages and logs. */
export interface WeightsReport {
  /** parameters written, in plan order */
  loaded: string[];
  /** file tensors skipped with unknown: 'ignore' */
  skipped: string[];
  /** parameters left as they were with missing: 'keep' */
  kept: string[];
}

/** One file, named for messages. */
export interface NamedSafetensors {
  source: string;
  file: SafetensorsFile;
  /** what the file itself calls a tensor, for messages (a GGUF file: 'GGUF tensor "blk.0.attn_q.weight" (Q8_0)') */
  origins?: ReadonlyMap<string, string>;
  /** the file's own name for a parameter it lacks, for messages */
  nameInFile?: (parameter: string) => string | undefined;
}

/** The dtypes tensorAsF32 converts. */
const F32_CONVERTIBLE = new Set(['F32', 'F16', 'BF16', 'F64']);

/** f32 bytes (little-endian) of a tensor stored as F32, F16, BF16 or F64. */
export function tensorAsF32(t: SafeTensor, what: string): Uint8Array {
  const count = t.shape.reduce((n, d) => n * d, 1);
  const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  switch (t.dtype) {
    case 'F32':
      return t.data;
    case 'F16': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = f16BitsToF32(view.getUint16(2 * i, true));
      return new Uint8Array(out.buffer);
    }
    case 'BF16': {
      // bfloat16 is the top half of an f32
      const out = new Uint32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getUint16(2 * i, true) << 16;
      return new Uint8Array(out.buffer);
    }
    case 'F64': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(8 * i, true);
      return new Uint8Array(out.buffer);
    }
    default:
      throw new PlanError('bad-input', `${what} is ${t.dtype}; parameters read F32, F16, BF16 or F64`);
  }
}

/**
 * A tensor stored as F32, F16, BF16 or F64, as the bytes of a 16-bit parameter (`storage`
 * f16 or bf16): the same type's bytes as they are, any other rounded to nearest even.
 */
export function tensorAs16Bit(t: SafeTensor, storage: 'f16' | 'bf16', what: string): Uint8Array {
  if (t.dtype === storage.toUpperCase()) return t.data;
  const widened = t.dtype === 'F16' || t.dtype === 'BF16' ? null : tensorAsF32(t, what);
  const count = t.shape.reduce((n, d) => n * d, 1);
  const out = new Uint16Array(count);
  const round = storage === 'f16' ? f32ToF16Bits : f32ToBf16Bits;
  if (widened) {
    const values = new Float32Array(widened.buffer, widened.byteOffset, count);
    for (let i = 0; i < count; i++) out[i] = round(values[i]);
  } else {
    // the other 16-bit type: through its exact f32 value
    const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const value = t.dtype === 'F16' ? f16BitsToF32 : bf16BitsToF32;
    for (let i = 0; i < count; i++) out[i] = round(value(view.getUint16(2 * i, true)));
  }
  return new Uint8Array(out.buffer);
}

/**
 * Which bytes go into which parameter buffer, checked against the plan before anything is
 * written: every name at most once across the files, shapes equal, dtypes convertible.
 */
export function matchWeights(manifest: Manifest, files: readonly NamedSafetensors[], options: WeightsOptions = {}): { writes: { buffer: BufferDesc; bytes: () => Uint8Array }[]; report: WeightsReport } {
  const plan = manifest.model.name;
  const parameters = manifest.buffers.filter((b) => b.role === 'parameter');
  const byName = new Map(parameters.map((b) => [b.name, b]));
  const found = new Map<string, { source: string; tensor: SafeTensor; origin?: string }>();
  const skipped: string[] = [];
  const unknown: string[] = [];
  for (const { source, file } of files) {
    for (const [name, tensor] of file.tensors) {
      const earlier = found.get(name);
      if (earlier) throw new PlanError('bad-input', `tensor "${name}" is in both ${earlier.source} and ${source}`);
      if (!byName.has(name)) {
        (options.unknown === 'ignore' ? skipped : unknown).push(name);
        continue;
      }
      found.set(name, { source, tensor });
    }
  }
  for (const { origins } of files) for (const [name, origin] of origins ?? []) if (found.has(name)) found.get(name)!.origin = origin;
  const listed = (items: string[]) => `${items.slice(0, 8).join(', ')}${items.length > 8 ? ` and ${items.length - 8} more` : ''}`;
  const list = (names: string[]) => listed(names.map((n) => `"${n}"`));
  if (unknown.length > 0) {
    throw new PlanError('bad-input', `${files.map((f) => f.source).join(', ')}: ${unknown.length} tensor(s) are not parameters of plan "${plan}": ${list(unknown)} (its parameters: ${list(parameters.map((p) => p.name))}; pass unknown: 'ignore' to skip them)`);
  }
  const missing = parameters.filter((p) => !found.has(p.name)).map((p) => p.name);
  if (missing.length > 0 && options.missing !== 'keep') {
    const inFile = (name: string) => files.map((f) => f.nameInFile?.(name)).find((n) => n !== undefined);
    const named = missing.map((name) => (inFile(name) ? `"${name}" (the file's "${inFile(name)}")` : `"${name}"`));
    throw new PlanError('bad-input', `plan "${plan}": no weights file holds parameter(s) ${listed(named)} (pass missing: 'keep' to leave them as the plan has them)`);
  }
  const writes = parameters.flatMap((buffer) => {
    const hit = found.get(buffer.name);
    if (!hit) return [];
    const what = `${hit.source}: tensor "${buffer.name}"${hit.origin ? ` (${hit.origin})` : ''}`;
    const storage = buffer.dtype;
    if (storage !== 'f32' && storage !== 'f16' && storage !== 'bf16') {
      throw new PlanError('bad-input', `${what}: parameter is ${storage}; weights are loaded into f32, f16 or bf16 parameters (a GGUF file's quantized blocks come with compiling the .gguf itself)`);
    }
    if (hit.tensor.shape.join() !== buffer.shape.join()) {
      throw new PlanError('bad-input', `${what} is [${hit.tensor.shape.join(', ')}]; plan "${plan}" declares [${buffer.shape.join(', ')}]`);
    }
    if (!F32_CONVERTIBLE.has(hit.tensor.dtype)) throw new PlanError('bad-input', `${what} is ${hit.tensor.dtype}; parameters read F32, F16, BF16 or F64`);
    // made when written: one tensor's converted copy at a time
    return [{ buffer, bytes: () => (storage === 'f32' ? tensorAsF32(hit.tensor, what) : tensorAs16Bit(hit.tensor, storage, what)) }];
  });
  return { writes, report: { loaded: writes.map((w) => w.buffer.name), skipped, kept: missing } };
}
