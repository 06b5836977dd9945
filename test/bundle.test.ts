// The .mnplan format end to end without a GPU: writeBundle's layout and determinism, the
// schema, and readBundle's refusal of every kind of damage with a PlanError of the right kind
// (never a TypeError or RangeError), including a seeded byte-flipping fuzz loop.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Ajv from 'ajv';
import { describe, expect, it, vi } from 'vitest';
import { BundleWriteError, writeBundle, writePlan, type BundleSink } from '../compiler/plan/bundle';
import { readBundle } from '../runtime/bundle';
import { PlanError, type PlanErrorKind } from '../runtime/errors';
import { DEFAULT_MEMORY_BUDGET, checkMemoryBudget, planMemoryBytes } from '../runtime/memory-budget';
import { loadPlan } from '../runtime/session';
import { sha256Chunked } from '../runtime/sha256';
import { MNPLAN_HEADER_BYTES, type Manifest } from '../schemas/manifest';
import { handPlan, handPlanParts, withManifest } from './hand-plan';

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
  it('writes a section given in parts as the same bytes, asking for each part only after writing the one before', () => {
    const { manifest, sections } = handPlanParts();
    const events: string[] = [];
    const parted = sections.map(({ name, bytes }) => ({
      name,
      length: bytes.length,
      *parts() {
        for (let at = 0; at < bytes.length; at += 8) {
          events.push('made');
          yield bytes.subarray(at, at + 8);
        }
      },
    }));
    let file = new Uint8Array(0);
    const sink: BundleSink = {
      open: (length) => void (file = new Uint8Array(length)),
      write: (bytes, position) => {
        events.push('written');
        file.set(bytes, position);
      },
    };
    writePlan(manifest, parted, sink);
    expect(file).toEqual(writeBundle(manifest, sections));
    // each part is written before the next is made: the writer holds one at a time
    expect(events.join(' ')).not.toContain('made made');
  });

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

describe('hostile plans (issue 17): bounded work and typed errors', () => {
  const good = handPlan();
  const dataOf = (bytes: Uint8Array) => bytes.subarray(new DataView(bytes.buffer, bytes.byteOffset).getUint32(20, true));
  const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

  /** Bytes given to crypto.subtle.digest while `work` runs (each call copies its input). */
  async function digested(work: () => Promise<unknown>, what: 'bytes' | 'calls' = 'bytes'): Promise<number> {
    const spy = vi.spyOn(crypto.subtle, 'digest');
    try {
      await work().catch(() => undefined);
      return what === 'calls' ? spy.mock.calls.length : spy.mock.calls.reduce((n, [, data]) => n + (data as ArrayBufferView).byteLength, 0);
    } finally {
      spy.mockRestore();
    }
  }

  it('refuses overlapping sections before hashing them, so a small file cannot make it hash gigabytes', async () => {
    const data = dataOf(good);
    const whole = { offset: 0, length: data.length, sha256: sha(data) };
    const many = withManifest(good, (m) => {
      for (let i = 0; i < 2000; i++) m.sections.push({ name: `copy${i}`, ...whole });
    });
    const error = await expectKind(many, 'bad-manifest');
    expect(error.message).toMatch(/sections\[\d+\] \(bytes 0\.\.\d+\) overlaps sections\[\d+\]/);
    expect(await digested(() => readBundle(many))).toBeLessThan(many.length); // the manifest only
    // empty sections overlap nothing; a good plan still reads with every byte hashed once
    await expect(readBundle(withManifest(good, (m) => m.sections.push({ name: 'empty', offset: 0, length: 0, sha256: sha(new Uint8Array(0)) })))).resolves.toBeDefined();
    expect(await digested(() => readBundle(good))).toBeLessThanOrEqual(good.length);
    // nor does a manifest of many empty sections cost a digest call each
    const empties = withManifest(good, (m) => {
      for (let i = 0; i < 20_000; i++) m.sections.push({ name: `empty${i}`, offset: 0, length: 0, sha256: sha(new Uint8Array(0)) });
    });
    expect((await readBundle(empties)).section('empty19999').length).toBe(0);
    const nonEmpty = (await readBundle(good)).manifest.sections.filter((ref) => ref.length > 0).length;
    expect(await digested(() => readBundle(empties), 'calls')).toBe(1 + nonEmpty); // the manifest and each non-empty section
  });

  it("refuses buffers and arenas larger than the plan's own requiredLimits", async () => {
    const cases: [string, (m: Manifest) => void, RegExp][] = [
      ['a buffer above maxStorageBufferBindingSize', (m) => (m.buffers[3].byteLength = 2 ** 31), /buffers\[3\]\.byteLength \(2147483648\) exceeds requiredLimits\.maxStorageBufferBindingSize \(400\)/],
      [
        'an own buffer above maxBufferSize',
        (m) => Object.assign(m.requiredLimits, { maxBufferSize: 100 }),
        /buffers\[0\]\.byteLength \(400, 400 as a GPUBuffer\) exceeds requiredLimits\.maxBufferSize \(100\)/,
      ],
      ['arenas without maxBufferSize', (m) => (m.arenas = { alignment: 256, byteLengths: [400] }), /requiredLimits\.maxBufferSize must be given when the plan has arenas/],
      [
        'an arena above maxBufferSize',
        (m) => {
          m.arenas = { alignment: 256, byteLengths: [2 ** 31] };
          m.requiredLimits.maxBufferSize = 400;
        },
        /arenas\.byteLengths\[0\] \(2147483648\) exceeds requiredLimits\.maxBufferSize \(400\)/,
      ],
      ['a limit that is not a count', (m) => Object.assign(m.requiredLimits, { maxComputeWorkgroupsPerDimension: 'many' }), /requiredLimits\.maxComputeWorkgroupsPerDimension must be a non-negative integer/],
    ];
    for (const [what, edit, message] of cases) expect((await expectKind(withManifest(good, edit), 'bad-manifest')).message, what).toMatch(message);
  });

  it('checks the memory total against the budget the loader states, before allocating anything', async () => {
    const manifest = (await readBundle(good)).manifest;
    expect(planMemoryBytes(manifest)).toBe(400 + 400 + 16 + 400 + 400 + 4);
    expect(() => checkMemoryBudget(manifest)).not.toThrow(); // DEFAULT_MEMORY_BUDGET
    expect(DEFAULT_MEMORY_BUDGET).toBe(4 * 2 ** 30);
    // a device with no createBuffer: loadPlan must fail before it would call it
    const device = { limits: {}, features: new Set(), adapterInfo: {} } as unknown as GPUDevice;
    const error = await loadPlan(good, device, { memoryBudget: 1000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(PlanError);
    expect((error as PlanError).kind).toBe('out-of-memory');
    expect((error as PlanError).message).toContain('needs 1620 bytes of GPU buffers, more than the loader\'s budget of 1000 bytes');
  });

  it('refuses inherited names and out-of-range numbers with a PlanError, never a TypeError', async () => {
    const training = (entry: string) => (m: Manifest) => {
      m.training = {
        entry,
        loss: 's',
        optimizer: 'sgd',
        hyper: { input: 'a', fields: [], settable: [], defaults: {} },
        parameters: [],
      };
    };
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const error = await expectKind(withManifest(good, training(name)), 'bad-manifest');
      expect(error.message).toContain(`training.entry names entry point "${name}", which the manifest does not list`);
    }
    // an object with an own `toString` cannot be printed: mnc inspect prints these fields
    const printed = await expectKind(withManifest(good, (m) => ((m.generator as unknown as { name: unknown }).name = { toString: 1 })), 'bad-manifest');
    expect(printed.message).toBe('invalid manifest: generator.name must be a string');
    const source = await expectKind(withManifest(good, (m) => ((m.model as unknown as { source: unknown }).source = { toString: 1 })), 'bad-manifest');
    expect(source.message).toBe('invalid manifest: model.source must be a string');
    const version = await expectKind(withManifest(good, (m) => ((m as unknown as { formatVersion: unknown }).formatVersion = { toString: 1 })), 'bad-manifest');
    expect(version.message).toBe('invalid manifest: formatVersion is {"toString":1} but the header says 2');
    const binding = await expectKind(
      withManifest(good, (m) => (m.kernels[0].bindings[2].binding = 2 ** 40)),
      'bad-manifest',
    );
    expect(binding.message).toContain('kernels[0].bindings[2].binding (1099511627776) must be below 1000');
  });

  it('checks the optimizer report that mnc inspect prints, and refuses manifests nested too deep', async () => {
    const phase = { phase: 'forward', nodesBefore: 3, nodesAfter: 2, eNodes: 9, eClasses: 5, iterations: 2, stopReason: 'saturated', rulesFired: { a: 1 }, costBefore: 2, costAfter: 1, fusedKernels: 0 };
    await expect(readBundle(withManifest(good, (m) => (m.optimization = [phase])))).resolves.toBeDefined();
    const cases: [unknown, RegExp][] = [
      ['x', /optimization must be an array/],
      [[{ ...phase, rulesFired: null }], /optimization\[0\]\.rulesFired must be an object/],
      [[{ ...phase, costBefore: 'cheap' }], /optimization\[0\]\.costBefore must be a finite number/],
      [[{ ...phase, rulesFired: { a: 'often' } }], /optimization\[0\]\.rulesFired\.a must be a non-negative integer/],
    ];
    for (const [value, message] of cases) {
      expect((await expectKind(withManifest(good, (m) => ((m as { optimization: unknown }).optimization = value)), 'bad-manifest')).message).toMatch(message);
    }
    // 10,000 levels of an unknown field: JSON.parse copes, but JSON.stringify (inspect --json) overflows
    const nest = (json: string) => json.replace('"DEEP"', `${'['.repeat(10_000)}${']'.repeat(10_000)}`);
    const nested = withManifest(good, (m) => ((m as unknown as Record<string, unknown>).extra = 'DEEP'), nest);
    expect((await expectKind(nested, 'bad-manifest')).message).toBe('manifest nests arrays and objects more than 64 levels deep');
    // brackets inside strings are text, not nesting
    await expect(readBundle(withManifest(good, (m) => (m.model.name = '['.repeat(100))))).resolves.toBeDefined();
  });

  it('hashes large sections in place with its own SHA-256, agreeing with node:crypto', async () => {
    for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, (1 << 20) + 7]) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 255);
      expect(await sha256Chunked(bytes), `${n} bytes`).toBe(sha(bytes));
    }
  });
});
