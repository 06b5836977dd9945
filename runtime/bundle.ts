// Reads a .mnplan file (layout: schemas/mnplan-layout.md) into its manifest and section views:
// the whole file, or the file up to its native translations, which a WebGPU runtime never uses.
// Everything is checked before use (header, lengths, SHA-256 of manifest and sections, the
// manifest's references), so any damaged or foreign input ends in a PlanError, never a crash,
// and the work it costs is bounded by the file: sections are disjoint, each byte hashed once.
import {
  MNPLAN_FORMAT_VERSION,
  MNPLAN_HEADER_BYTES,
  MNPLAN_MAGIC,
  MNPLAN_SECTION_ALIGNMENT,
  type Manifest,
  type SectionRef,
} from '../schemas/manifest';
import { PlanError } from './errors';
import { parseJson } from './json';
import { checkManifest } from './manifest-check';
import { dispatchOverBound } from '../schemas/dispatch-work';
import { sha256Chunked } from './sha256';

export interface PlanBundle {
  manifest: Manifest;
  /** false when read without the native translations (a prefix up to `translationsOffset`): section() refuses those */
  complete: boolean;
  /** the section's bytes, a view into the bundle (no copy) */
  section(name: string): Uint8Array<ArrayBuffer>;
  /** the section decoded as UTF-8 (shader sources) */
  text(name: string): string;
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  let hex = '';
  for (const byte of digest) hex += byte.toString(16).padStart(2, '0');
  return hex;
}

/**
 * Native digests running at once copy at most about this many bytes together:
 * crypto.subtle.digest copies its input before hashing, and Web Crypto has no streaming form.
 */
const DIGEST_BYTES_IN_FLIGHT = 64 << 20;
/** ...and at most this many digests are pending at once, however small the sections. */
const DIGESTS_IN_FLIGHT = 64;
/** SHA-256 of no bytes: empty sections (any number of which fit the file) need no digest call. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/**
 * Sections this large are hashed in place by sha256Chunked instead: Web Crypto refuses 2 GiB and
 * more, and a copy of a section this size matters. Ours runs about 10x slower than the native digest
 * (bench/sha256.ts), so smaller sections keep the native one.
 */
export const STREAMED_HASH_BYTES = 1 << 30;

/**
 * Checks each section's SHA-256. Sections are disjoint (checkManifest), so this reads each
 * byte of the file at most once; digests run a batch at a time, each batch copying at most
 * DIGEST_BYTES_IN_FLIGHT, or one section of any size below STREAMED_HASH_BYTES.
 */
async function checkSections(refs: readonly SectionRef[], views: Map<string, Uint8Array<ArrayBuffer>>): Promise<void> {
  const check = async (ref: SectionRef, hash: (bytes: Uint8Array<ArrayBuffer>) => Promise<string>) => {
    if ((await hash(views.get(ref.name)!)) !== ref.sha256) {
      throw new PlanError('corrupt-section', `section "${ref.name}" fails its SHA-256 check: the bundle is corrupted`);
    }
  };
  let batch: Promise<void>[] = [];
  let batchBytes = 0;
  for (const ref of refs) {
    if (ref.length === 0) {
      await check(ref, async () => EMPTY_SHA256);
      continue;
    }
    if (ref.length >= STREAMED_HASH_BYTES) {
      await check(ref, sha256Chunked);
      continue;
    }
    if (batch.length > 0 && (batchBytes + ref.length > DIGEST_BYTES_IN_FLIGHT || batch.length === DIGESTS_IN_FLIGHT)) {
      await Promise.all(batch);
      [batch, batchBytes] = [[], 0];
    }
    batch.push(check(ref, sha256Hex));
    batchBytes += ref.length;
  }
  await Promise.all(batch);
}

/** The sections the manifest names as a kernel variant's translations. */
function translationNames(manifest: Manifest): Set<string> {
  return new Set(manifest.kernels.flatMap((k) => k.variants.flatMap((v) => Object.values(v.translations).filter((n): n is string => n !== undefined))));
}

function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

export async function readBundle(input: Uint8Array): Promise<PlanBundle> {
  if (!(input instanceof Uint8Array)) throw new PlanError('bad-input', 'readBundle expects the bundle as a Uint8Array');
  // Web Crypto and writeBuffer refuse views of shared memory; such input is copied once.
  const bytes = (input.buffer instanceof ArrayBuffer ? input : input.slice()) as Uint8Array<ArrayBuffer>;
  if (bytes.length < MNPLAN_HEADER_BYTES) {
    throw new PlanError('truncated', `bundle is ${bytes.length} bytes, shorter than the ${MNPLAN_HEADER_BYTES}-byte header: the file is truncated or empty`);
  }
  if (MNPLAN_MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new PlanError('bad-magic', 'not a .mnplan bundle: the file does not start with the "\\x89MNPLAN\\n" signature');
  }
  const header = new DataView(bytes.buffer, bytes.byteOffset, MNPLAN_HEADER_BYTES);
  const formatVersion = header.getUint32(8, true);
  if (formatVersion !== MNPLAN_FORMAT_VERSION) {
    throw new PlanError(
      'unsupported-version',
      `bundle has format version ${formatVersion}, but this runtime reads only format version ${MNPLAN_FORMAT_VERSION}; ` +
        `recompile the model with a matching mnc or use a matching runtime`,
    );
  }
  const headerBytes = header.getUint32(12, true);
  const manifestLength = header.getUint32(16, true);
  const dataOffset = header.getUint32(20, true);
  const fileLength = header.getBigUint64(24, true);
  const truncated = () =>
    new PlanError('truncated', `bundle is ${bytes.length} bytes but its header says ${fileLength}: the file is truncated (incomplete download or copy?)`);
  // Shorter than the file may still be whole enough: the plan up to its translations (see below).
  const partial = BigInt(bytes.length) < fileLength;
  const headerConsistent = headerBytes === MNPLAN_HEADER_BYTES && dataOffset === Math.ceil((MNPLAN_HEADER_BYTES + manifestLength) / MNPLAN_SECTION_ALIGNMENT) * MNPLAN_SECTION_ALIGNMENT;
  if (partial && !(headerConsistent && bytes.length >= dataOffset)) throw truncated();
  if (BigInt(bytes.length) > fileLength) {
    throw new PlanError('bad-header', `bundle is ${bytes.length} bytes but its header says ${fileLength}: ${BigInt(bytes.length) - fileLength} unexpected trailing bytes`);
  }
  if (headerBytes !== MNPLAN_HEADER_BYTES) throw new PlanError('bad-header', `header size field is ${headerBytes}, expected ${MNPLAN_HEADER_BYTES}`);
  const manifestEnd = MNPLAN_HEADER_BYTES + manifestLength;
  const expectedDataOffset = Math.ceil(manifestEnd / MNPLAN_SECTION_ALIGNMENT) * MNPLAN_SECTION_ALIGNMENT;
  if (dataOffset !== expectedDataOffset || dataOffset > bytes.length) {
    throw new PlanError(
      'bad-header',
      `header fields disagree: manifest of ${manifestLength} bytes implies data at byte ${expectedDataOffset}, header says ${dataOffset} (file is ${bytes.length} bytes)`,
    );
  }

  const manifestBytes = bytes.subarray(MNPLAN_HEADER_BYTES, manifestEnd);
  const expectedHash = Array.from(bytes.subarray(32, 64), (b) => b.toString(16).padStart(2, '0')).join('');
  // a short file whose manifest is damaged too is reported as short, the likelier cause
  const badManifest = (message: string) => (partial ? truncated() : new PlanError('bad-manifest', message));
  if ((await sha256Hex(manifestBytes)) !== expectedHash) throw badManifest('manifest checksum mismatch: the bundle is corrupted');
  const manifestText = decodeUtf8(manifestBytes);
  if (manifestText === undefined) throw badManifest('manifest is not valid UTF-8');
  const parsed = parseJson(manifestText);
  if ('problem' in parsed) throw badManifest(`manifest ${parsed.problem}`);
  const data = bytes.subarray(dataOffset);
  const manifest = checkManifest(parsed.value, formatVersion, Number(fileLength) - dataOffset);
  // A plan read only up to its translations (fetchPlan's default) lacks them and nothing else.
  if (partial && (manifest.translationsOffset === undefined || data.length < manifest.translationsOffset)) throw truncated();
  const absent = partial ? translationNames(manifest) : new Set<string>();
  // no queue can be interrupted once it runs: refuse grids larger than the plan's memory before any submit
  const overBound = dispatchOverBound(manifest);
  if (overBound) throw new PlanError('bad-manifest', `plan "${manifest.model.name}": ${overBound}`);

  const present = manifest.sections.filter((s) => !absent.has(s.name));
  const sections = new Map(present.map((s) => [s.name, data.subarray(s.offset, s.offset + s.length)]));
  // Eager: every section is hashed once here, so later accessors never fail on corruption.
  await checkSections(present, sections);

  const section = (name: string): Uint8Array<ArrayBuffer> => {
    const view = sections.get(name);
    if (absent.has(name)) throw new PlanError('missing-section', `section "${name}" is a native translation, and the bundle was read without its translations`);
    if (!view) throw new PlanError('missing-section', `bundle has no section "${name}" (it has: ${[...sections.keys()].join(', ') || 'none'})`);
    return view;
  };
  return {
    manifest,
    complete: !partial,
    section,
    text(name) {
      const text = decodeUtf8(section(name));
      if (text === undefined) throw new PlanError('corrupt-section', `section "${name}" is not valid UTF-8 text`);
      return text;
    },
  };
}
