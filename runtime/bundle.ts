// Reads a .mnplan file (layout: schemas/mnplan-layout.md) into its manifest and section views.
// Everything is checked before use (header, lengths, SHA-256 of manifest and sections, the
// manifest's references), so any damaged or foreign input ends in a PlanError, never a crash.
import {
  MNPLAN_FORMAT_VERSION,
  MNPLAN_HEADER_BYTES,
  MNPLAN_MAGIC,
  MNPLAN_SECTION_ALIGNMENT,
  type Manifest,
} from '../schemas/manifest';
import { PlanError } from './errors';
import { checkManifest } from './manifest-check';
import { dispatchOverBound } from '../schemas/dispatch-work';

export interface PlanBundle {
  manifest: Manifest;
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
  if (BigInt(bytes.length) < fileLength) {
    throw new PlanError('truncated', `bundle is ${bytes.length} bytes but its header says ${fileLength}: the file is truncated (incomplete download or copy?)`);
  }
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
  if ((await sha256Hex(manifestBytes)) !== expectedHash) {
    throw new PlanError('bad-manifest', 'manifest checksum mismatch: the bundle is corrupted');
  }
  const manifestText = decodeUtf8(manifestBytes);
  if (manifestText === undefined) throw new PlanError('bad-manifest', 'manifest is not valid UTF-8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(manifestText);
  } catch (error) {
    throw new PlanError('bad-manifest', `manifest is not valid JSON: ${(error as Error).message}`);
  }
  const data = bytes.subarray(dataOffset);
  const manifest = checkManifest(parsed, formatVersion, data.length);
  // no queue can be interrupted once it runs: refuse grids larger than the plan's memory before any submit
  const overBound = dispatchOverBound(manifest);
  if (overBound) throw new PlanError('bad-manifest', `plan "${manifest.model.name}": ${overBound}`);

  const sections = new Map(manifest.sections.map((s) => [s.name, data.subarray(s.offset, s.offset + s.length)]));
  // Eager: every section is hashed once here, so later accessors never fail on corruption.
  await Promise.all(
    manifest.sections.map(async (s) => {
      if ((await sha256Hex(sections.get(s.name)!)) !== s.sha256) {
        throw new PlanError('corrupt-section', `section "${s.name}" fails its SHA-256 check: the bundle is corrupted`);
      }
    }),
  );

  const section = (name: string): Uint8Array<ArrayBuffer> => {
    const view = sections.get(name);
    if (!view) throw new PlanError('missing-section', `bundle has no section "${name}" (it has: ${[...sections.keys()].join(', ') || 'none'})`);
    return view;
  };
  return {
    manifest,
    section,
    text(name) {
      const text = decodeUtf8(section(name));
      if (text === undefined) throw new PlanError('corrupt-section', `section "${name}" is not valid UTF-8 text`);
      return text;
    },
  };
}
