// Plans read without their native translations (issue 22): the writer puts the SPIR-V, MSL
// and HLSL sections after everything else and records where they begin (translationsOffset);
// readBundle accepts the file up to there; fetchPlan gets exactly that prefix with range
// requests (and the whole file from a server without ranges). No GPU needed.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import Ajv from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { readBundle } from '../runtime/bundle';
import { PlanError } from '../runtime/errors';
import { fetchPlan } from '../runtime/fetch-plan';
import { MNPLAN_HEADER_BYTES } from '../schemas/manifest';
import { handPlan, withManifest } from './hand-plan';

function mlp(): Graph {
  const g = new Graph('tiny_mlp');
  const x = g.input('x', [2, 16]);
  const h = g.relu(g.biasAdd(g.matmul(x, g.parameter('w1', [16, 32])), g.parameter('b1', [32])));
  g.output('y', g.biasAdd(g.matmul(h, g.parameter('w2', [32, 4])), g.parameter('b2', [4])));
  return g;
}

let plan: Uint8Array;
const dataOffsetOf = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset).getUint32(20, true);

async function refusal(bytes: Uint8Array): Promise<PlanError> {
  const error = await readBundle(bytes).then(() => undefined, (e: unknown) => e);
  if (!(error instanceof PlanError)) throw new Error(`expected a PlanError, got ${String(error)}`);
  return error;
}

beforeAll(async () => {
  plan = (await compileGraph(mlp(), { seed: 1 })).bundle;
}, 60_000);

describe('the translations lie last', () => {
  it('after every WGSL and weights section, from translationsOffset on', async () => {
    const { manifest } = await readBundle(plan);
    const translations = new Set(manifest.kernels.flatMap((k) => k.variants.flatMap((v) => Object.values(v.translations))));
    expect(translations.size).toBeGreaterThan(0);
    const at = manifest.translationsOffset!;
    expect(at).toBeGreaterThan(0);
    for (const s of manifest.sections) {
      if (translations.has(s.name)) expect(s.offset, s.name).toBeGreaterThanOrEqual(at);
      else expect(s.offset + s.length, s.name).toBeLessThanOrEqual(at);
    }
    expect(manifest.sections.some((s) => s.name === 'weights')).toBe(true);
    const schema = JSON.parse(readFileSync(new URL('../schemas/mnplan.schema.json', import.meta.url), 'utf8'));
    const validate = new Ajv({ allErrors: true }).compile(schema);
    expect(validate(manifest), JSON.stringify(validate.errors)).toBe(true);
  });

  it('readBundle reads the file up to the translations, and refuses the translations by name', async () => {
    const { manifest } = await readBundle(plan);
    const end = dataOffsetOf(plan) + manifest.translationsOffset!;
    const prefix = await readBundle(plan.slice(0, end));
    expect(prefix.complete).toBe(false);
    expect(prefix.manifest).toEqual(manifest);
    const kernel = manifest.kernels[0].variants.at(-1)!;
    expect(prefix.text(kernel.wgsl)).toContain('fn ');
    expect(() => prefix.section(kernel.translations.spirv!)).toThrow(/native translation/);
    expect((await readBundle(plan)).complete).toBe(true);
    // anything between the prefix and the whole file is fine too; shorter is truncated
    expect((await readBundle(plan.slice(0, end + 100))).complete).toBe(false);
    expect((await refusal(plan.slice(0, end - 1))).kind).toBe('truncated');
    expect((await refusal(plan.slice(0, dataOffsetOf(plan)))).kind).toBe('truncated');
  });

  it('a plan without translationsOffset (written before it) is read whole only', async () => {
    const older = withManifest(plan, (m) => delete m.translationsOffset);
    expect((await readBundle(older)).complete).toBe(true);
    const at = (await readBundle(plan)).manifest.translationsOffset!;
    expect((await refusal(older.slice(0, dataOffsetOf(older) + at))).kind).toBe('truncated');
    // hand-written plans have no translations, so no offset
    expect((await readBundle(handPlan())).manifest.translationsOffset).toBeUndefined();
  });

  it('a translationsOffset that does not split the sections so is refused', async () => {
    const { manifest } = await readBundle(plan);
    for (const wrong of [manifest.translationsOffset! - 256, manifest.translationsOffset! + 256]) {
      const error = await refusal(withManifest(plan, (m) => void (m.translationsOffset = wrong)));
      expect(error.kind).toBe('bad-manifest');
      expect(error.message).toMatch(/translationsOffset/);
    }
  });
});

describe('fetchPlan', () => {
  let server: Server;
  let base: string;
  const sent: { path: string; range?: string; bytes: number }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (path === '/ranged.mnplan' && range) {
        const [from, to] = [Number(range[1]), Math.min(Number(range[2]), plan.length - 1)];
        const body = plan.subarray(from, to + 1);
        sent.push({ path, range: req.headers.range, bytes: body.length });
        res.writeHead(206, { 'content-range': `bytes ${from}-${to}/${plan.length}`, 'content-length': body.length }).end(body);
      } else if (path === '/ranged.mnplan' || path === '/plain.mnplan') {
        sent.push({ path, bytes: plan.length });
        res.writeHead(200, { 'content-length': plan.length }).end(plan);
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('fetches the plan up to its translations in two range requests', async () => {
    const { manifest } = await readBundle(plan);
    const end = dataOffsetOf(plan) + manifest.translationsOffset!;
    sent.length = 0;
    const first = dataOffsetOf(plan); // header and manifest; the default (32 KiB) is more than all this small plan needs
    const bytes = await fetchPlan(`${base}/ranged.mnplan`, { firstBytes: first });
    expect(bytes.length).toBe(end);
    expect(bytes).toEqual(plan.subarray(0, end));
    expect(sent.map((s) => s.range)).toEqual([`bytes=0-${first - 1}`, `bytes=${first}-${end - 1}`]);
    expect((await readBundle(bytes)).complete).toBe(false);
    console.log(`[fetch-plan] ${plan.length}-byte plan: ${end} bytes fetched, ${plan.length - end} bytes of translations left on the server`);
  });

  it('needs a third request when the first holds less than the manifest', async () => {
    sent.length = 0;
    const bytes = await fetchPlan(`${base}/ranged.mnplan`, { firstBytes: MNPLAN_HEADER_BYTES });
    expect(sent.length).toBe(3);
    expect((await readBundle(bytes)).complete).toBe(false);
  });

  it('takes the whole file from a server without ranges, or when asked for the translations', async () => {
    sent.length = 0;
    expect(await fetchPlan(`${base}/plain.mnplan`)).toEqual(plan);
    expect(await fetchPlan(`${base}/ranged.mnplan`, { translations: true })).toEqual(plan);
    expect(sent.map((s) => s.bytes)).toEqual([plan.length, plan.length]);
  });

  it('names the URL and status when the fetch fails', async () => {
    await expect(fetchPlan(`${base}/missing.mnplan`)).rejects.toMatchObject({ kind: 'fetch-failed', message: expect.stringMatching(/missing\.mnplan: HTTP 404/) });
  });
});
