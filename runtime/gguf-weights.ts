// A GGUF file as a weights file for Session.loadWeights: its tensors under the builders' (HF's)
// parameter names (runtime/gguf-llama.ts), llama.cpp's Q/K row permutation undone, and every
// supported type widened or dequantized to the f32 a plan's parameters hold, a tensor at a time
// as the loader writes it. Tensors without a HF name keep their GGUF name (and so are refused
// as unknown unless the caller skips them).
import { PlanError } from './errors';
import { dequantize, isSupportedType, SUPPORTED_TYPES } from './ggml-types';
import { GgufType, parseGguf, tensorBytes, type GgufFile } from './gguf';
import { ggufTensorName, hfParameterName, ropeRowsPermuted, unpermuteRopeRows } from './gguf-llama';
import type { SafeTensor } from './safetensors';
import type { NamedSafetensors } from './weights';

/** True when `bytes` start with GGUF's magic. */
export function isGgufBytes(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x47 && bytes[1] === 0x47 && bytes[2] === 0x55 && bytes[3] === 0x46;
}

/** The heads of attn_q and attn_k, when the file's architecture permuted their rows. */
function permutedHeads(file: GgufFile): { q: number; k: number } | undefined {
  const arch = file.metadata.get('general.architecture');
  if (arch?.type !== GgufType.STRING || !ropeRowsPermuted(arch.value as string)) return undefined;
  const count = (key: string): number | undefined => {
    const e = file.metadata.get(key);
    if (e === undefined) return undefined;
    const n = Number(e.value);
    if (typeof e.value === 'object' || !Number.isSafeInteger(n) || n <= 0) throw new PlanError('bad-input', `${file.source}: metadata "${key}" is ${String(e.value)}, not a head count`);
    return n;
  };
  const q = count(`${arch.value}.attention.head_count`);
  if (q === undefined) throw new PlanError('bad-input', `${file.source}: metadata "${arch.value}.attention.head_count" is missing: the Q and K rows cannot be put back in HF's order without it`);
  return { q, k: count(`${arch.value}.attention.head_count_kv`) ?? q };
}

/** A GGUF file held in memory as f32 tensors by HF name (each made when first read). */
export function ggufWeights(bytes: Uint8Array, source: string): NamedSafetensors {
  const file = parseGguf(bytes, source);
  const heads = permutedHeads(file);
  const tensors = new Map<string, SafeTensor>();
  const origins = new Map<string, string>();
  for (const t of file.tensors.values()) {
    const name = hfParameterName(t.name) ?? t.name;
    const what = `GGUF tensor "${t.name}" (${t.type.name})`;
    if (!isSupportedType(t.type.name)) throw new PlanError('unsupported-type', `${source}: ${what} is of a type this runtime does not dequantize; supported: ${SUPPORTED_TYPES.join(', ')}`);
    const rowHeads = heads && (/\.attn_q\./.test(t.name) ? heads.q : /\.attn_k\./.test(t.name) ? heads.k : 0);
    // made on each read, not kept: the loader reads each tensor once, writes it and drops it
    tensors.set(name, {
      dtype: 'F32',
      shape: t.shape,
      get data(): Uint8Array {
        const values = dequantize(t.type, tensorBytes(bytes, t), t.elements, `${source}: ${what}`);
        const ordered = rowHeads ? unpermuteRopeRows(values, t.shape[0], rowHeads) : values;
        return new Uint8Array(ordered.buffer, ordered.byteOffset, ordered.byteLength);
      },
    });
    origins.set(name, what);
  }
  return { source, file: { tensors, metadata: {} }, origins, nameInFile: ggufTensorName };
}
