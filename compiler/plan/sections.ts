// The bundle's sections and kernels as the targets of one compile add them, each distinct
// thing stored once: a kernel that two targets generate alike is one kernel with one set of
// sources, a parameter's values one slice of the weights section.
import { createHash } from 'node:crypto';
import type { KernelDesc, SectionSlice } from '../../schemas/manifest';
import { MNPLAN_SECTION_ALIGNMENT } from '../../schemas/manifest';
import { alignUp, type BundleSection, type PartedSection } from './bundle';

/**
 * A parameter's initial contents as the plan stores them: their length, and the values (f32,
 * or a packed parameter's bytes), asked for when the writer reaches them (drawn from the seed
 * then, so a plan's weights never need to be in memory all at once).
 */
export interface WeightSource {
  byteLength: number;
  values(): StoredValues;
}

/** What a weights slice holds: f32 values, or the bytes of a packed dtype. */
export type StoredValues = Float32Array | Uint8Array;

export class SectionStore {
  private readonly sections: BundleSection[] = [];
  /** section name → sha256 of its bytes */
  private readonly hashes = new Map<string, string>();
  /** the weights section's parts in order: padding, or values */
  private readonly weights: (number | WeightSource)[] = [];
  private weightsLength = 0;
  /** the same values get one slice: the same source (a parameter every target's graph shares), or the same bytes (a constant each target's optimizer made) */
  private readonly slices = new Map<StoredValues | WeightSource, SectionSlice>();
  private readonly slicesByHash = new Map<string, SectionSlice>();
  readonly kernels: KernelDesc[] = [];
  private readonly kernelIndex = new Map<string, number>();

  /**
   * Stores sections named `names` (a kernel's sources: WGSL, SPIR-V, MSL, HLSL) under the
   * first of `prefixes` where either none of the names is taken or all hold these bytes
   * already; returns that prefix.
   */
  addAll(prefixes: readonly string[], files: readonly { suffix: string; bytes: Uint8Array }[]): string {
    const hashed = files.map((f) => ({ ...f, sha: createHash('sha256').update(f.bytes).digest('hex') }));
    for (const prefix of prefixes) {
      const held = hashed.map((f) => this.hashes.get(prefix + f.suffix));
      if (held.every((h, i) => h === hashed[i].sha)) return prefix;
      if (held.every((h) => h === undefined)) {
        for (const f of hashed) {
          this.hashes.set(prefix + f.suffix, f.sha);
          this.sections.push({ name: prefix + f.suffix, bytes: f.bytes });
        }
        return prefix;
      }
    }
    throw new Error(`SectionStore: every name for ${prefixes[0]} is taken by other contents`);
  }

  /**
   * The values' slice of the 'weights' section, 256-aligned so the runtime can view it in
   * place. `byContent`: also reuse a slice of the same bytes (constants, small, which each
   * target's optimizer makes anew); parameters, which may be gigabytes, are matched by source.
   */
  addWeights(data: StoredValues | WeightSource, byContent = false): SectionSlice {
    const known = this.slices.get(data);
    if (known) return known;
    const hash = byContent && !isSource(data) ? createHash('sha256').update(bytesOf(data)).digest('hex') : undefined;
    const alike = hash === undefined ? undefined : this.slicesByHash.get(hash);
    if (alike) {
      this.slices.set(data, alike);
      return alike;
    }
    const offset = alignUp(this.weightsLength, MNPLAN_SECTION_ALIGNMENT);
    if (offset > this.weightsLength) this.weights.push(offset - this.weightsLength);
    this.weights.push(isSource(data) ? data : { byteLength: data.byteLength, values: () => data });
    this.weightsLength = offset + data.byteLength;
    const slice = { section: 'weights', offset, length: data.byteLength };
    this.slices.set(data, slice);
    if (hash !== undefined) this.slicesByHash.set(hash, slice);
    return slice;
  }

  /** The kernel's index in the shared list: an identical description (same sources) is listed once. */
  addKernel(kernel: KernelDesc): number {
    const key = JSON.stringify(kernel);
    let index = this.kernelIndex.get(key);
    if (index === undefined) {
      index = this.kernels.length;
      this.kernels.push(kernel);
      this.kernelIndex.set(key, index);
    }
    return index;
  }

  /** Every section, the weights last, made part by part as the writer reaches them. */
  finish(): (BundleSection | PartedSection)[] {
    if (this.weightsLength === 0) return [...this.sections];
    const parts = this.weights;
    const weights = function* (): Iterable<Uint8Array> {
      for (const part of parts) yield typeof part === 'number' ? new Uint8Array(part) : checkedBytes(part);
    };
    return [...this.sections, { name: 'weights', length: this.weightsLength, parts: weights }];
  }
}

const bytesOf = (data: StoredValues) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
const isSource = (data: StoredValues | WeightSource): data is WeightSource => !ArrayBuffer.isView(data);

function checkedBytes(source: WeightSource): Uint8Array {
  const values = source.values();
  if (values.byteLength !== source.byteLength) throw new Error(`SectionStore: weights of ${values.byteLength} bytes where ${source.byteLength} were announced`);
  return bytesOf(values);
}
