// The runtime on a real Dawn device (llvmpipe here): a hand-written plan loads, runs, gives
// the values computed in the test, is reused across runs, and refuses bad inputs, devices
// that are too small and broken shaders with PlanErrors that name the culprit.
import { afterAll, describe, expect, it } from 'vitest';
import { writeBundle } from '../compiler/plan/bundle';
import { loadPlan, PlanError, type Session } from '../runtime/index';
import { f16BitsToF32, f32ToF16Bits } from '../runtime/session';
import { MNPLAN_FORMAT_VERSION } from '../schemas/manifest';
import { C, N, expected, handPlan } from './hand-plan';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

const input = (seed: number) => Float32Array.from({ length: N }, (_, i) => Math.sin(i * 0.37 + seed) * 3);

async function planError(promise: Promise<unknown>): Promise<PlanError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PlanError);
  return error as PlanError;
}

function expectClose(actual: Float32Array, wanted: Float32Array, tolerance = 1e-5) {
  expect(actual.length).toBe(wanted.length);
  for (let i = 0; i < wanted.length; i++) {
    expect(Math.abs(actual[i] - wanted[i]), `element ${i}: ${actual[i]} vs ${wanted[i]}`).toBeLessThanOrEqual(tolerance * Math.max(1, Math.abs(wanted[i])));
  }
}

describe('a hand-written plan on Dawn', () => {
  let session: Session;

  it('loads and reports its inputs and outputs', async () => {
    const { device } = await sharedDevice();
    session = await loadPlan(handPlan(), device);
    expect(session.inputs.map((t) => t.name)).toEqual(['a']);
    expect(session.outputs.map((t) => t.name)).toEqual(['y', 'y_again', 's', 't']);
  });

  it('computes the dependent dispatches in order, with uploaded parameters', async () => {
    const a = input(1);
    const out = await session.run({ a });
    const want = expected(a);
    expectClose(out.t, want.t);
    expectClose(out.y, want.y);
    expectClose(out.s, Float32Array.of(want.s), 1e-4);
    expect(out.y_again).toEqual(out.y);
    expect(out.y_again).not.toBe(out.y); // fresh arrays, not views of one buffer
  });

  it('runs queued without awaiting overlap on the host and give each its own outputs, in call order', async () => {
    const inputs = Array.from({ length: 12 }, (_, k) => input(100 + k));
    const finished: number[] = [];
    const outputs = await Promise.all(
      inputs.map((a, k) =>
        session.run({ a }).then((out) => {
          finished.push(k);
          return out;
        }),
      ),
    );
    expect(finished).toEqual(inputs.map((_, k) => k));
    outputs.forEach((out, k) => {
      const want = expected(inputs[k]);
      expectClose(out.t, want.t);
      expectClose(out.y, want.y);
    });
  });

  it('reuses everything across runs: no buffer, bind group or pipeline is created by run()', async () => {
    const { device } = await sharedDevice();
    const creations: string[] = [];
    const spied = ['createBuffer', 'createBindGroup', 'createComputePipeline', 'createComputePipelineAsync', 'createShaderModule'] as const;
    for (const method of spied) {
      const original = device[method].bind(device) as (...args: unknown[]) => unknown;
      Object.defineProperty(device, method, {
        configurable: true,
        value: (...args: unknown[]) => (creations.push(method), original(...args)),
      });
    }
    try {
      for (const seed of [2, 3]) {
        const a = input(seed);
        const out = await session.run({ a });
        expectClose(out.y, expected(a).y);
      }
    } finally {
      for (const method of spied) delete (device as unknown as Record<string, unknown>)[method];
    }
    expect(creations).toEqual([]);
  });

  it('serializes concurrent runs, each getting its own results', async () => {
    const inputs = [4, 5, 6, 7].map(input);
    const outs = await Promise.all(inputs.map((a) => session.run({ a })));
    outs.forEach((out, i) => expectClose(out.y, expected(inputs[i]).y));
  });

  it('refuses bad inputs by name and expected shape, and a failed run does not block the next', async () => {
    const missing = await planError(session.run({}));
    expect(missing.kind).toBe('bad-input');
    expect(missing.message).toContain('"a"');
    expect(missing.message).toContain(`f32[${N}]`);

    const unknown = await planError(session.run({ a: input(0), b: input(0) }));
    expect(unknown.kind).toBe('bad-input');
    expect(unknown.message).toContain('"b"');

    const short = await planError(session.run({ a: new Float32Array(N - 1) }));
    expect(short.kind).toBe('bad-input');
    expect(short.message).toMatch(new RegExp(`${N - 1} elements; expected f32\\[${N}\\]`));

    const wrongType = await planError(session.run({ a: new Int32Array(N) }));
    expect(wrongType.kind).toBe('bad-input');
    expect(wrongType.message).toContain('Float32Array');

    const entry = await planError(session.run({ a: input(0) }, 'step'));
    expect(entry.kind).toBe('bad-input');
    expect(entry.message).toContain('"step"');

    const a = input(8);
    expectClose((await session.run({ a })).y, expected(a).y);
  });

  it('refuses use after destroy()', async () => {
    session.destroy();
    const error = await planError(session.run({ a: input(0) }));
    expect(error.kind).toBe('destroyed');
  });
});

describe('load-time checks against the device', () => {
  it('names the limit a device is too small for', async () => {
    const { device } = await sharedDevice();
    const bytes = handPlan(({ manifest }) => {
      manifest.requiredLimits.maxComputeWorkgroupStorageSize = device.limits.maxComputeWorkgroupStorageSize + 1;
    });
    const error = await planError(loadPlan(bytes, device));
    expect(error.kind).toBe('device-limits');
    expect(error.message).toContain('maxComputeWorkgroupStorageSize');
  });

  it('names the kernel no variant of which fits the device features', async () => {
    const { device } = await sharedDevice();
    const bytes = handPlan(({ manifest }) => {
      manifest.kernels[1].variants[0].features = ['mnrt-test-feature-no-device-has'];
    });
    const error = await planError(loadPlan(bytes, device));
    expect(error.kind).toBe('missing-feature');
    expect(error.message).toContain('"square_offset"');
  });

  it('names the kernel whose shader fails, with the compiler messages', async () => {
    const { device } = await sharedDevice();
    const bytes = handPlan(({ sections }) => {
      const sum = sections.find((s) => s.name === 'sum.wgsl')!;
      sum.bytes = new TextEncoder().encode(new TextDecoder().decode(sum.bytes).replace('total += y[i];', 'total += undefined_thing;'));
    });
    // the load does not wait for pipelines: the run that needs the broken one and session.ready say it
    const session = await loadPlan(bytes, device);
    for (const error of [await planError(session.run({ a: input(3) })), await planError(session.ready)]) {
      expect(error.kind).toBe('pipeline');
      expect(error.message).toContain('"sum"');
      expect(error.message).toContain('undefined_thing');
    }
    session.destroy();
  });

  it('lets an output name the same buffer as an input', async () => {
    const { device } = await sharedDevice();
    const bytes = handPlan(({ manifest }) => {
      manifest.entryPoints.run.outputs.push({ name: 'a_echo', buffer: 0, dtype: 'f32', shape: [N] });
    });
    const session = await loadPlan(bytes, device);
    const a = input(9);
    const out = await session.run({ a });
    expect(out.a_echo).toEqual(a);
    expectClose(out.y, expected(a).y);
    session.destroy();
  });

  it('uses the constant buffer it uploaded (c is visible in y)', async () => {
    const { device } = await sharedDevice();
    const session = await loadPlan(handPlan(), device);
    const a = new Float32Array(N).fill(0);
    const { y } = await session.run({ a });
    // t = b, so y - b*b = -c[i % 4]
    const want = expected(a);
    for (let i = 0; i < 8; i++) expect(y[i] - want.t[i] * want.t[i]).toBeCloseTo(-C[i % 4], 5);
    session.destroy();
  });
});

describe('dtype conversion at the edges of run()', () => {
  it('converts integer inputs and outputs by value', async () => {
    const { device } = await sharedDevice();
    const wgsl = `
      @group(0) @binding(0) var<storage, read> idx: array<i32>;
      @group(0) @binding(1) var<storage, read_write> out: array<u32>;
      @compute @workgroup_size(8)
      fn main(@builtin(global_invocation_id) id: vec3u) {
        if (id.x < 5u) { out[id.x] = u32(abs(idx[id.x]) * 3); }
      }`;
    const bytes = writeBundle(
      {
        format: 'mnplan',
        formatVersion: MNPLAN_FORMAT_VERSION,
        generator: { name: 'test', version: '0', naga: 'none' },
        model: { name: 'ints' },
        target: { name: 'generic', summary: 'any device', match: {} },
        requiredLimits: { maxStorageBufferBindingSize: 20, maxStorageBuffersPerShaderStage: 2, maxComputeWorkgroupStorageSize: 0, maxComputeInvocationsPerWorkgroup: 8 },
        buffers: [
          { id: 0, name: 'idx', role: 'input', byteLength: 20, dtype: 'i32', shape: [5] },
          { id: 1, name: 'out', role: 'output', byteLength: 20, dtype: 'u32', shape: [5] },
        ],
        kernels: [
          {
            name: 'triple_abs',
            ops: ['abs', 'mul'],
            entryPoint: 'main',
            workgroupSize: [8, 1, 1],
            bindings: [{ binding: 0, access: 'read' }, { binding: 1, access: 'read_write' }],
            variants: [{ features: [], wgsl: 'k.wgsl', translations: {}, validatedBy: 'naga' }],
          },
        ],
        entryPoints: {
          run: {
            inputs: [{ name: 'idx', buffer: 0, dtype: 'i32', shape: [5] }],
            outputs: [{ name: 'out', buffer: 1, dtype: 'u32', shape: [5] }],
            dispatches: [{ kernel: 0, buffers: [0, 1], workgroups: [1, 1, 1], node: 'out' }],
          },
        },
      },
      [{ name: 'k.wgsl', bytes: new TextEncoder().encode(wgsl) }],
    );
    const session = await loadPlan(bytes, device);
    expect([...(await session.run({ idx: Int32Array.of(-2, -1, 0, 1, 70000) })).out]).toEqual([6, 3, 0, 3, 210000]);
    expect([...(await session.run({ idx: Float32Array.of(4, 5, 6, 7, 8) })).out]).toEqual([12, 15, 18, 21, 24]);
    session.destroy();
  });

  it('rounds f32 to f16 to nearest even and widens back exactly', () => {
    const cases: [number, number][] = [
      [1, 0x3c00], [-2, 0xc000], [0, 0], [65504, 0x7bff], [65520, 0x7c00], [-Infinity, 0xfc00],
      [2 ** -24, 0x0001], [2 ** -25, 0], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [0.1, 0x2e66],
    ];
    for (const [value, bits] of cases) expect(f32ToF16Bits(value), String(value)).toBe(bits);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
    for (let bits = 0; bits < 0x7c00; bits += 37) expect(f32ToF16Bits(f16BitsToF32(bits))).toBe(bits);
  });
});
