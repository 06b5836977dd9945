// The .mnplan bundle writer: header + JSON manifest + 256-aligned sections, laid out as
// schemas/mnplan-layout.md describes. The last step of the compiler; the runtime's
// readBundle is its inverse. Deterministic: the same manifest and sections give the same bytes.
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { CompileError } from '../ir/errors';
import {
  MNPLAN_FORMAT_VERSION,
  MNPLAN_HEADER_BYTES,
  MNPLAN_MAGIC,
  MNPLAN_SECTION_ALIGNMENT,
  type Manifest,
  type SectionRef,
} from '../../schemas/manifest';

export interface BundleSection {
  name: string;
  bytes: Uint8Array;
}

/**
 * A section given by its length and the parts that make it, produced in order when the
 * writer reaches it (parameters' values drawn from the seed), so the writer holds one part
 * at a time.
 */
export interface PartedSection {
  name: string;
  length: number;
  parts: () => Iterable<Uint8Array>;
}

type AnySection = BundleSection | PartedSection;

/** Where a bundle's bytes go: `open` once with the file's length, then writes at positions (gaps read as zeros). */
export interface BundleSink {
  open(length: number): void;
  write(bytes: Uint8Array, position: number): void;
}

export type BundleWriteErrorKind = 'duplicate-section' | 'missing-section' | 'bad-manifest' | 'too-large';

/** A bundle that cannot be written: a bug in an earlier compiler stage, named precisely. */
export class BundleWriteError extends Error {
  readonly kind: BundleWriteErrorKind;
  constructor(kind: BundleWriteErrorKind, message: string) {
    super(message);
    this.name = 'BundleWriteError';
    this.kind = kind;
  }
}

const U32_MAX = 0xffff_ffff;
/** Node's hash and write calls refuse more than 2 GiB at once; a tensor may be larger. */
const CHUNK_BYTES = 1 << 28;

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

const sectionLength = (s: AnySection) => ('bytes' in s ? s.bytes.length : s.length);

/** A sink that collects the bundle in one array. */
export function memorySink(): BundleSink & { bytes(): Uint8Array } {
  let file: Uint8Array | undefined;
  return {
    open: (length) => void (file = new Uint8Array(length)), // zero-filled: all padding is zeros
    write: (bytes, position) => file!.set(bytes, position),
    bytes: () => file!,
  };
}

/**
 * A sink that writes the file at `path` as the bundle is made; `close` ends it. The file is
 * sized at open, so the padding the writer skips reads as zeros.
 */
export function fileSink(path: string): BundleSink & { length(): number; close(): void } {
  let fd: number | undefined;
  let fileLength = 0;
  const io = <T>(work: () => T): T => {
    try {
      return work();
    } catch (error) {
      throw new CompileError('io', `cannot write '${path}': ${(error as Error).message}`);
    }
  };
  return {
    open(length) {
      fd = io(() => openSync(path, 'w'));
      io(() => ftruncateSync(fd!, length));
      fileLength = length;
    },
    write(bytes, position) {
      for (let done = 0; done < bytes.length; ) done += io(() => writeSync(fd!, bytes, done, bytes.length - done, position + done));
    },
    length: () => fileLength,
    close() {
      if (fd !== undefined) io(() => closeSync(fd!));
      fd = undefined;
    },
  };
}

/** Writes one .mnplan file in memory; see writePlanFile for the manifest as laid out. */
export function writeBundle(manifest: Omit<Manifest, 'sections'>, sections: AnySection[]): Uint8Array {
  return writePlanFile(manifest, sections).bytes;
}

/** Writes one .mnplan file in memory and returns it with the manifest as written (see writePlan). */
export function writePlanFile(manifest: Omit<Manifest, 'sections'>, sections: AnySection[]): { bytes: Uint8Array; manifest: Manifest } {
  const sink = memorySink();
  const written = writePlan(manifest, sections, sink);
  return { bytes: sink.bytes(), manifest: written };
}

/**
 * Writes one .mnplan file to `sink` and returns the manifest as written. `manifest.sections`
 * is filled here, in the order `sections` are given but with the naga translations moved after
 * the rest (`translationsOffset` says where they begin), so the compiler never computes offsets
 * or hashes itself. One pass: a SHA-256 is always 64 hex digits, so the manifest's length,
 * and with it every section's place, is known before any section is hashed; sections are
 * hashed as they are written and the manifest goes in last.
 */
export function writePlan(manifest: Omit<Manifest, 'sections'>, sections: AnySection[], sink: BundleSink): Manifest {
  if (manifest.formatVersion !== MNPLAN_FORMAT_VERSION) {
    throw new BundleWriteError(
      'bad-manifest',
      `manifest.formatVersion is ${manifest.formatVersion}, but this writer produces format version ${MNPLAN_FORMAT_VERSION}`,
    );
  }

  // The translations go last, after the WGSL and the weights: a WebGPU runtime reads the file
  // only up to where they begin (`translationsOffset`), tools read all of it.
  const translations = translationSections(manifest);
  sections = [...sections.filter((s) => !translations.has(s.name)), ...sections.filter((s) => translations.has(s.name))];
  const seen = new Set<string>();
  const sectionRefs: SectionRef[] = [];
  let dataLength = 0;
  let translationsOffset: number | undefined;
  for (const section of sections) {
    const { name } = section;
    if (seen.has(name)) throw new BundleWriteError('duplicate-section', `section "${name}" is given twice; section names must be unique`);
    seen.add(name);
    const offset = alignUp(dataLength, MNPLAN_SECTION_ALIGNMENT);
    if (translations.has(name)) translationsOffset ??= offset;
    sectionRefs.push({ name, offset, length: sectionLength(section), sha256: '0'.repeat(64) });
    dataLength = offset + sectionLength(section);
  }
  checkSectionReferences(manifest, new Map(sectionRefs.map((s) => [s.name, s])));

  // Spread keeps the caller's key order; `sections` lands last (or where a caller put one).
  const { translationsOffset: _given, ...rest } = manifest as Omit<Manifest, 'sections'> & { translationsOffset?: number };
  const fullManifest: Manifest = { ...rest, ...(translationsOffset === undefined ? {} : { translationsOffset }), sections: sectionRefs };
  const manifestLength = new TextEncoder().encode(JSON.stringify(fullManifest)).length;
  const dataOffset = alignUp(MNPLAN_HEADER_BYTES + manifestLength, MNPLAN_SECTION_ALIGNMENT);
  const fileLength = dataOffset + dataLength;
  if (dataOffset > U32_MAX) throw new BundleWriteError('too-large', `manifest is ${manifestLength} bytes; the header's u32 fields cannot address it`);
  if (!Number.isSafeInteger(fileLength)) throw new BundleWriteError('too-large', `bundle would be ${fileLength} bytes`);

  sink.open(fileLength);
  sections.forEach((section, i) => {
    const hash = createHash('sha256');
    let at = dataOffset + sectionRefs[i].offset;
    for (const part of 'bytes' in section ? [section.bytes] : section.parts()) {
      for (let from = 0; from < part.length; from += CHUNK_BYTES) {
        const chunk = part.subarray(from, from + CHUNK_BYTES);
        hash.update(chunk);
        sink.write(chunk, at);
        at += chunk.length;
      }
    }
    if (at !== dataOffset + sectionRefs[i].offset + sectionRefs[i].length) {
      throw new BundleWriteError('bad-manifest', `section "${section.name}" gave ${at - dataOffset - sectionRefs[i].offset} bytes, not the ${sectionRefs[i].length} it announced`);
    }
    sectionRefs[i].sha256 = hash.digest('hex');
  });

  const manifestBytes = new TextEncoder().encode(JSON.stringify(fullManifest));
  if (manifestBytes.length !== manifestLength) throw new BundleWriteError('bad-manifest', 'the manifest changed length when its section hashes were filled in');
  const header = new Uint8Array(MNPLAN_HEADER_BYTES);
  const fields = new DataView(header.buffer);
  header.set(MNPLAN_MAGIC, 0);
  fields.setUint32(8, MNPLAN_FORMAT_VERSION, true);
  fields.setUint32(12, MNPLAN_HEADER_BYTES, true);
  fields.setUint32(16, manifestBytes.length, true);
  fields.setUint32(20, dataOffset, true);
  fields.setBigUint64(24, BigInt(fileLength), true);
  header.set(createHash('sha256').update(manifestBytes).digest(), 32);
  sink.write(header, 0);
  sink.write(manifestBytes, MNPLAN_HEADER_BYTES);
  return fullManifest;
}

/** The sections the manifest names as naga translations of a kernel variant (none is also a variant's WGSL). */
function translationSections(manifest: Omit<Manifest, 'sections'>): Set<string> {
  const names = new Set<string>();
  for (const kernel of manifest.kernels) {
    for (const variant of kernel.variants) for (const name of Object.values(variant.translations)) if (name !== undefined) names.add(name);
  }
  for (const kernel of manifest.kernels) {
    for (const variant of kernel.variants) {
      if (names.has(variant.wgsl)) throw new BundleWriteError('bad-manifest', `kernel "${kernel.name}": section "${variant.wgsl}" is named both as WGSL and as a translation`);
    }
  }
  return names;
}

/** Every section the manifest names must be written, and every init slice must fit in it. */
function checkSectionReferences(manifest: Omit<Manifest, 'sections'>, byName: Map<string, SectionRef>): void {
  const need = (name: string, where: string): SectionRef => {
    const ref = byName.get(name);
    if (!ref) throw new BundleWriteError('missing-section', `${where} names section "${name}", which is not among the sections written`);
    return ref;
  };
  for (const buffer of manifest.buffers) {
    if (!buffer.init) continue;
    const where = `buffer ${buffer.id} ("${buffer.name}") init`;
    const section = need(buffer.init.section, where);
    if (buffer.init.offset < 0 || buffer.init.offset + buffer.init.length > section.length) {
      throw new BundleWriteError(
        'bad-manifest',
        `${where}: bytes ${buffer.init.offset}..${buffer.init.offset + buffer.init.length} lie outside section "${section.name}" (${section.length} bytes)`,
      );
    }
    if (buffer.init.length > buffer.byteLength) {
      throw new BundleWriteError('bad-manifest', `${where}: ${buffer.init.length} bytes of initial data for a ${buffer.byteLength}-byte buffer`);
    }
  }
  for (const kernel of manifest.kernels) {
    kernel.variants.forEach((variant, v) => {
      need(variant.wgsl, `kernel "${kernel.name}" variant ${v} wgsl`);
      for (const [target, name] of Object.entries(variant.translations)) {
        if (name !== undefined) need(name, `kernel "${kernel.name}" variant ${v} ${target} translation`);
      }
    });
  }
}
