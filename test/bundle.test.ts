// The .mnplan format end to end without a GPU: writeBundle's layout and determinism, the
// schema, and readBundle's refusal of every kind of damage with a PlanError of the right kind
// (never a TypeError or RangeError), including a seeded byte-flipping fuzz loop.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Ajv from 'ajv';
import { describe, expect, it } from 'vitest';
import { BundleWriteError, writeBundle } from '../compiler/plan/bundle';
import { readBundle } from '../runtime/bundle';
import { PlanError, type PlanErrorKind } from '../runtime/errors';
import { MNPLAN_HEADER_BYTES, MNPLAN_SECTION_ALIGNMENT, type Manifest } from '../schemas/manifest';
import { handPlan, handPlanParts } from './hand-plan';

const schema = JSON.parse(readFileSync(new URL('../schemas/mnplan.schema.json', import.meta.url), 'utf8'));
const validateSchema = new Ajv({ allErrors: true }).compile(schema);

async function readError(bytes: Uint8Array): Promise<PlanError> {
  try {
    await readBundle(bytes);
  } catch (error) {
    if (!(error instanceof PlanError)) throw new Error(`expected a PlanError, got ${String(error)}`, { cause: error });
    return error;
  }
  throw new Error('expected readBundle to fail');
}

async function expectKind(bytes: Uint8Array, kind: PlanErrorKind): Promise<PlanError> {
  const error = await readError(bytes);
  expect(error.kind, error.message).toBe(kind);
  return error;
}

/** Rebuilds a bundle around an edited manifest, keeping its data area (whose offsets are relative). */
function withManifest(bytes: Uint8Array, edit: (m: Manifest) => void): Uint8Array {
  const header = new DataView(bytes.buffer, bytes.byteOffset, MNPLAN_HEADER_BYTES);
  const manifest = JSON.parse(new TextDecoder().decode(bytes.subarray(MNPLAN_HEADER_BYTES, MNPLAN_HEADER_BYTES + header.getUint32(16, true))));
  edit(manifest);
  const data = bytes.subarray(header.getUint32(20, true));
  const json = new TextEncoder().encode(JSON.stringify(manifest));
  const dataOffset = Math.ceil((MNPLAN_HEADER_BYTES + json.length) / MNPLAN_SECTION_ALIGNMENT) * MNPLAN_SECTION_ALIGNMENT;
  const out = new Uint8Array(dataOffset + data.length);
  out.set(bytes.subarray(0, MNPLAN_HEADER_BYTES));
  const view = new DataView(out.buffer);
  view.setUint32(16, json.length, true);
  view.setUint32(20, dataOffset, true);
  view.setBigUint64(24, BigInt(out.length), true);
  out.set(createHash('sha256').update(json).digest(), 32);
  out.set(json, MNPLAN_HEADER_BYTES);
  out.set(data, dataOffset);
  return out;
}

/** mulberry32: a tiny seeded generator, so a fuzz failure reproduces. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('writeBundle', () => {
  it('round-trips the manifest and every section', async () => {
    const { manifest, sections } = handPlanParts();
    const bundle = await readBundle(writeBundle(manifest, sections));
    expect(bundle.manifest).toEqual({ ...manifest, sections: bundle.manifest.sections });
    expect(bundle.manifest.sections.map((s) => s.name)).toEqual(sections.map((s) => s.name));
    for (const { name, bytes } of sections) expect(bundle.section(name)).toEqual(bytes);
    expect(bundle.text('sum.wgsl')).toContain('fn main');
  });

  it('lays the file out as schemas/mnplan-layout.md says', () => {
    const { manifest, sections } = handPlanParts();
    const bytes = writeBundle(manifest, sections);
    const header = new DataView(bytes.buffer, bytes.byteOffset, 64);
    expect([...bytes.subarray(0, 8)]).toEqual([0x89, 0x4d, 0x4e, 0x50, 0x4c, 0x41, 0x4e, 0x0a]);
    expect(header.getUint32(8, true)).toBe(2);
    expect(header.getUint32(12, true)).toBe(64);
    const manifestLength = header.getUint32(16, true);
    const dataOffset = header.getUint32(20, true);
    expect(dataOffset % 256).toBe(0);
    expect(dataOffset - (64 + manifestLength)).toBeLessThan(256);
    expect(header.getBigUint64(24, true)).toBe(BigInt(bytes.length));
    const manifestBytes = bytes.subarray(64, 64 + manifestLength);
    expect(Buffer.from(bytes.subarray(32, 64)).toString('hex')).toBe(createHash('sha256').update(manifestBytes).digest('hex'));
    const written: Manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
    let end = 0;
    written.sections.forEach((ref, i) => {
      expect(ref.offset % 256).toBe(0);
      expect(ref.offset).toBeGreaterThanOrEqual(end);
      expect(bytes.subarray(dataOffset + end, dataOffset + ref.offset).every((b) => b === 0)).toBe(true); // zero padding
      expect(ref.sha256).toBe(createHash('sha256').update(sections[i].bytes).digest('hex'));
      expect(bytes.subarray(dataOffset + ref.offset, dataOffset + ref.offset + ref.length)).toEqual(sections[i].bytes);
      end = ref.offset + ref.length;
    });
    expect(dataOffset + end).toBe(bytes.length);
  });

  it('is deterministic: the same input gives byte-identical output', () => {
    const first = handPlan();
    const second = handPlan();
    expect(Buffer.compare(first, second)).toBe(0);
  });

  it('writes manifests that match mnplan.schema.json', () => {
    const bytes = handPlan();
    const length = new DataView(bytes.buffer).getUint32(16, true);
    const manifest = JSON.parse(new TextDecoder().decode(bytes.subarray(64, 64 + length)));
    expect(validateSchema(manifest), JSON.stringify(validateSchema.errors)).toBe(true);
    // and the schema is strict enough to notice a stray or missing field
    expect(validateSchema({ ...manifest, extra: 1 })).toBe(false);
    const { requiredLimits, ...withoutLimits } = manifest;
    expect(requiredLimits).toBeDefined();
    expect(validateSchema(withoutLimits)).toBe(false);
  });

  it('handles empty sections and a plan with no sections', async () => {
    const { manifest } = handPlanParts();
    const bare = { ...manifest, buffers: [], kernels: [], entryPoints: {} };
    expect((await readBundle(writeBundle(bare, []))).manifest.sections).toEqual([]);
    const withEmpty = await readBundle(writeBundle(bare, [{ name: 'empty', bytes: new Uint8Array(0) }, { name: 'one', bytes: Uint8Array.of(7) }]));
    expect(withEmpty.section('empty').length).toBe(0);
    expect([...withEmpty.section('one')]).toEqual([7]);
  });

  it('rejects duplicate section names and references to sections it was not given', () => {
    const { manifest, sections } = handPlanParts();
    expect(() => writeBundle(manifest, [...sections, { name: 'weights', bytes: new Uint8Array(4) }])).toThrow(/section "weights" is given twice/);
    try {
      writeBundle(manifest, sections.filter((s) => s.name !== 'sum.wgsl'));
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(BundleWriteError);
      expect((error as BundleWriteError).kind).toBe('missing-section');
      expect((error as Error).message).toContain('kernel "sum"');
    }
  });
});

describe('readBundle refuses damaged bundles with a PlanError of the right kind', () => {
  const good = handPlan();
  const header = new DataView(good.buffer, good.byteOffset, 64);
  const dataOffset = header.getUint32(20, true);

  it('truncated at any length', async () => {
    for (let length = 0; length < good.length; length += 7) {
      const error = await expectKind(good.slice(0, length), 'truncated');
      expect(error.message).toMatch(/truncated/);
    }
  });

  it('with trailing bytes, or header fields that disagree', async () => {
    const longer = new Uint8Array(good.length + 3);
    longer.set(good);
    await expectKind(longer, 'bad-header');
    const badDataOffset = good.slice();
    new DataView(badDataOffset.buffer).setUint32(20, dataOffset + 256, true);
    await expectKind(badDataOffset, 'bad-header');
    const badHeaderBytes = good.slice();
    new DataView(badHeaderBytes.buffer).setUint32(12, 128, true);
    await expectKind(badHeaderBytes, 'bad-header');
  });

  it('that is not a bundle', async () => {
    const wrong = good.slice();
    wrong[1] = 'X'.charCodeAt(0);
    await expectKind(wrong, 'bad-magic');
    await expectKind(new TextEncoder().encode('{"format":"mnplan"}'.padEnd(100, ' ')), 'bad-magic');
  });

  it('of another format version, naming both versions', async () => {
    const older = good.slice();
    new DataView(older.buffer).setUint32(8, 1, true);
    const error = await expectKind(older, 'unsupported-version');
    expect(error.message).toContain('format version 1');
    expect(error.message).toContain('format version 2');
  });

  it('with a corrupted manifest byte', async () => {
    const corrupt = good.slice();
    corrupt[MNPLAN_HEADER_BYTES + 10] ^= 0x20;
    const error = await expectKind(corrupt, 'bad-manifest');
    expect(error.message).toContain('checksum');
  });

  it('with a corrupted section byte, naming the section', async () => {
    const corrupt = good.slice();
    corrupt[dataOffset + 5] ^= 0x01; // inside "weights", the first section
    const error = await expectKind(corrupt, 'corrupt-section');
    expect(error.message).toContain('"weights"');
  });

  it('whose manifest is valid JSON but inconsistent', async () => {
    const cases: [string, (m: Manifest) => void, RegExp][] = [
      ['a kernel naming a missing section', (m) => (m.kernels[2].variants[0].wgsl = 'nope.wgsl'), /kernels\[2\]\.variants\[0\]\.wgsl names section "nope\.wgsl"/],
      ['an init slice naming a missing section', (m) => (m.buffers[1].init!.section = 'gone'), /buffers\[1\]\.init\.section/],
      ['an init slice past its section', (m) => (m.buffers[2].init!.offset = 10_000), /buffers\[2\]\.init/],
      ['a dispatch naming an unknown buffer', (m) => (m.entryPoints.run.dispatches[1].buffers[2] = 42), /dispatches\[1\]\.buffers\[2\] names buffer 42/],
      ['a dispatch naming an unknown kernel', (m) => (m.entryPoints.run.dispatches[0].kernel = 9), /dispatches\[0\]\.kernel/],
      ['a dispatch with too few buffers', (m) => m.entryPoints.run.dispatches[0].buffers.pop(), /has 2 entries but kernel 0 has 3 bindings/],
      ['an output naming an unknown buffer', (m) => (m.entryPoints.run.outputs[0].buffer = -1), /outputs\[0\]\.buffer/],
      ['an input larger than its buffer', (m) => (m.entryPoints.run.inputs[0].shape = [1000]), /needs 4000 bytes/],
      ['a section outside the data area', (m) => (m.sections[4].length += 1000), /sections\[4\]/],
      ['a misaligned section', (m) => (m.sections[1].offset += 4), /multiple of 256/],
      ['a duplicated buffer id', (m) => (m.buffers[1].id = 0), /buffers\[1\]\.id/],
      ['a buffer written twice in one dispatch', (m) => (m.entryPoints.run.dispatches[0].buffers = [3, 1, 3]), /twice with write access/],
      ['a wrong field type', (m) => ((m.buffers as unknown[])[0] = 'a'), /buffers\[0\] must be an object/],
      ['a missing field', (m) => delete (m as Partial<Manifest>).kernels, /kernels must be an array/],
      ['manifest formatVersion disagreeing with the header', (m) => (m.formatVersion = 3), /formatVersion/],
      ['an unknown dtype', (m) => ((m.buffers[0] as { dtype: string }).dtype = 'f64'), /buffers\[0\]\.dtype/],
      ['an index range on a float input', (m) => (m.entryPoints.run.inputs[0].range = { min: 0, max: 3 }), /inputs\[0\]\.range is given for a f32 tensor/],
    ];
    for (const [what, edit, message] of cases) {
      const error = await expectKind(withManifest(good, edit), 'bad-manifest');
      expect(error.message, what).toMatch(message);
    }
    await expect(readBundle(withManifest(good, () => {}))).resolves.toBeDefined(); // the rebuild itself is sound
  });

  it('whose manifest is not JSON or not UTF-8', async () => {
    const notJson = good.slice();
    notJson[MNPLAN_HEADER_BYTES] = '['.charCodeAt(0) + 1; // '{' -> '\\' ... any non-JSON start
    const fixHash = (bytes: Uint8Array) => {
      const length = new DataView(bytes.buffer).getUint32(16, true);
      bytes.set(createHash('sha256').update(bytes.subarray(64, 64 + length)).digest(), 32);
      return bytes;
    };
    expect((await expectKind(fixHash(notJson), 'bad-manifest')).message).toContain('JSON');
    const notUtf8 = good.slice();
    notUtf8[MNPLAN_HEADER_BYTES + 1] = 0xff;
    expect((await expectKind(fixHash(notUtf8), 'bad-manifest')).message).toContain('UTF-8');
  });

  it('and names what is missing when asked for an unknown section', async () => {
    const bundle = await readBundle(good);
    expect(() => bundle.section('nope')).toThrow(PlanError);
    try {
      bundle.text('nope');
      expect.unreachable();
    } catch (error) {
      expect((error as PlanError).kind).toBe('missing-section');
      expect((error as PlanError).message).toContain('"nope"');
    }
  });

  it('and never throws anything but a PlanError under random byte flips (seeded fuzz)', async () => {
    const next = random(0x5eed);
    const kinds = new Map<string, number>();
    let accepted = 0;
    for (let round = 0; round < 400; round++) {
      const damaged = good.slice();
      // Half the rounds aim at the header and manifest, where the interesting parsing is.
      const span = round % 2 === 0 ? dataOffset : damaged.length;
      const flips = 1 + Math.floor(next() * 4);
      for (let f = 0; f < flips; f++) damaged[Math.floor(next() * span)] ^= 1 + Math.floor(next() * 255);
      try {
        await readBundle(damaged);
        accepted++; // flips that only touched the zero padding are harmless
      } catch (error) {
        if (!(error instanceof PlanError)) throw new Error(`round ${round}: ${String(error)}`, { cause: error });
        kinds.set(error.kind, (kinds.get(error.kind) ?? 0) + 1);
      }
    }
    expect(kinds.get('bad-manifest')).toBeGreaterThan(0);
    expect(kinds.get('corrupt-section')).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(400);
  });

  it('and fuzzed manifests with a valid checksum still only give PlanErrors', async () => {
    // Byte flips inside the JSON with the checksum fixed up exercise the structural checks.
    const next = random(42);
    const length = header.getUint32(16, true);
    for (let round = 0; round < 300; round++) {
      const damaged = good.slice();
      const at = MNPLAN_HEADER_BYTES + Math.floor(next() * length);
      damaged[at] = '0123456789{}[]",:-ax '.charCodeAt(Math.floor(next() * 21));
      damaged.set(createHash('sha256').update(damaged.subarray(64, 64 + length)).digest(), 32);
      try {
        await readBundle(damaged);
      } catch (error) {
        if (!(error instanceof PlanError)) throw new Error(`round ${round}: ${String(error)}`, { cause: error });
      }
    }
  });

  it('refuses a non-Uint8Array with a PlanError', async () => {
    expect((await readError('not bytes' as unknown as Uint8Array)).kind).toBe('bad-input');
  });
});
