// The .mnplan bundle writer: header + JSON manifest + 256-aligned sections, laid out as
// schemas/mnplan-layout.md describes. The last step of the compiler; the runtime's
// readBundle is its inverse. Deterministic: the same manifest and sections give the same bytes.
import { createHash } from 'node:crypto';
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

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Writes one .mnplan file; see writePlanFile for the manifest as laid out. */
export function writeBundle(manifest: Omit<Manifest, 'sections'>, sections: BundleSection[]): Uint8Array {
  return writePlanFile(manifest, sections).bytes;
}

/**
 * Writes one .mnplan file and returns it with the manifest as written. `manifest.sections`
 * is filled here, in the order `sections` are given, so the compiler never computes offsets
 * or hashes itself.
 */
export function writePlanFile(
  manifest: Omit<Manifest, 'sections'>,
  sections: BundleSection[],
): { bytes: Uint8Array; manifest: Manifest } {
  if (manifest.formatVersion !== MNPLAN_FORMAT_VERSION) {
    throw new BundleWriteError(
      'bad-manifest',
      `manifest.formatVersion is ${manifest.formatVersion}, but this writer produces format version ${MNPLAN_FORMAT_VERSION}`,
    );
  }

  const seen = new Set<string>();
  const sectionRefs: SectionRef[] = [];
  let dataLength = 0;
  for (const { name, bytes } of sections) {
    if (seen.has(name)) throw new BundleWriteError('duplicate-section', `section "${name}" is given twice; section names must be unique`);
    seen.add(name);
    const offset = alignUp(dataLength, MNPLAN_SECTION_ALIGNMENT);
    sectionRefs.push({ name, offset, length: bytes.length, sha256: sha256Hex(bytes) });
    dataLength = offset + bytes.length;
  }
  checkSectionReferences(manifest, new Map(sectionRefs.map((s) => [s.name, s])));

  // Spread keeps the caller's key order; `sections` lands last (or where a caller put one).
  const fullManifest: Manifest = { ...manifest, sections: sectionRefs };
  const manifestBytes = new TextEncoder().encode(JSON.stringify(fullManifest));
  const dataOffset = alignUp(MNPLAN_HEADER_BYTES + manifestBytes.length, MNPLAN_SECTION_ALIGNMENT);
  const fileLength = dataOffset + dataLength;
  if (dataOffset > U32_MAX) throw new BundleWriteError('too-large', `manifest is ${manifestBytes.length} bytes; the header's u32 fields cannot address it`);
  if (!Number.isSafeInteger(fileLength)) throw new BundleWriteError('too-large', `bundle would be ${fileLength} bytes`);

  const file = new Uint8Array(fileLength); // zero-filled: all padding is zeros
  const header = new DataView(file.buffer, 0, MNPLAN_HEADER_BYTES);
  file.set(MNPLAN_MAGIC, 0);
  header.setUint32(8, MNPLAN_FORMAT_VERSION, true);
  header.setUint32(12, MNPLAN_HEADER_BYTES, true);
  header.setUint32(16, manifestBytes.length, true);
  header.setUint32(20, dataOffset, true);
  header.setBigUint64(24, BigInt(fileLength), true);
  file.set(createHash('sha256').update(manifestBytes).digest(), 32);
  file.set(manifestBytes, MNPLAN_HEADER_BYTES);
  sections.forEach(({ bytes }, i) => file.set(bytes, dataOffset + sectionRefs[i].offset));
  return { bytes: file, manifest: fullManifest };
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
