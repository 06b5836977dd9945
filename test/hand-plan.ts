// A small plan written by hand (WGSL and manifest), for testing the bundle format and the
// runtime without the compiler: t = a*2 + b; y = t*t - c[i % 4]; s = sum(y).
// b and c are a parameter and a constant with initial values in the "weights" section.
import { createHash } from 'node:crypto';
import { writeBundle, type BundleSection } from '../compiler/plan/bundle';
import { MNPLAN_FORMAT_VERSION, MNPLAN_HEADER_BYTES, MNPLAN_SECTION_ALIGNMENT, type Manifest } from '../schemas/manifest';

export const N = 100;

const SCALE_ADD = /* wgsl */ `
// scale_add: t = a * 2 + b, f32[${N}]
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> t: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < ${N}u) { t[id.x] = a[id.x] * 2.0 + b[id.x]; }
}
`;
const SQUARE_OFFSET = /* wgsl */ `
// square_offset: y = t * t - c[i % 4], f32[${N}]
@group(0) @binding(0) var<storage, read> t: array<f32>;
@group(0) @binding(1) var<storage, read> c: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < ${N}u) { y[id.x] = t[id.x] * t[id.x] - c[id.x % 4u]; }
}
`;
const SUM = /* wgsl */ `
// sum: s = sum(y), one invocation (small on purpose)
@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read_write> s: array<f32>;
@compute @workgroup_size(1)
fn main() {
  var total = 0.0;
  for (var i = 0u; i < ${N}u; i++) { total += y[i]; }
  s[0] = total;
}
`;
/** Listed first for scale_add, behind a feature no device has: must never be compiled. */
const NEVER_CHOSEN = 'this is not WGSL and would fail to compile';

export const B = Float32Array.from({ length: N }, (_, i) => (i % 7) - 3);
export const C = Float32Array.from([0.5, -1, 2, 0]);

/** The values the plan must compute, in f32 like the GPU. */
export function expected(a: Float32Array) {
  const t = new Float32Array(N);
  const y = new Float32Array(N);
  for (let i = 0; i < N; i++) {
    t[i] = Math.fround(a[i] * 2 + B[i]);
    y[i] = Math.fround(Math.fround(t[i] * t[i]) - C[i % 4]);
  }
  let s = 0;
  for (let i = 0; i < N; i++) s = Math.fround(s + y[i]);
  return { t, y, s };
}

const text = (s: string) => new TextEncoder().encode(s);

export function handPlanParts(): { manifest: Omit<Manifest, 'sections'>; sections: BundleSection[] } {
  const weights = new Uint8Array(B.byteLength + C.byteLength);
  weights.set(new Uint8Array(B.buffer), 0);
  weights.set(new Uint8Array(C.buffer), B.byteLength);
  const f32 = (id: number, name: string, role: Manifest['buffers'][number]['role'], n: number) => ({
    id,
    name,
    role,
    byteLength: n * 4,
    dtype: 'f32' as const,
    shape: [n],
  });
  const manifest: Omit<Manifest, 'sections'> = {
    format: 'mnplan',
    formatVersion: MNPLAN_FORMAT_VERSION,
    generator: { name: 'hand-written test plan', version: '0', naga: 'none' },
    model: { name: 'hand-plan' },
    target: { name: 'generic', summary: 'any device', match: {} },
    requiredLimits: {
      maxStorageBufferBindingSize: N * 4,
      maxStorageBuffersPerShaderStage: 3,
      maxComputeWorkgroupStorageSize: 0,
      maxComputeInvocationsPerWorkgroup: 64,
    },
    buffers: [
      f32(0, 'a', 'input', N),
      { ...f32(1, 'b', 'parameter', N), init: { section: 'weights', offset: 0, length: B.byteLength } },
      { ...f32(2, 'c', 'constant', 4), init: { section: 'weights', offset: B.byteLength, length: C.byteLength } },
      f32(3, 't', 'intermediate', N),
      f32(4, 'y', 'output', N),
      f32(5, 's', 'output', 1),
    ],
    kernels: [
      {
        name: 'scale_add',
        ops: ['mul', 'add'],
        entryPoint: 'main',
        workgroupSize: [64, 1, 1],
        bindings: [{ binding: 0, access: 'read' }, { binding: 1, access: 'read' }, { binding: 2, access: 'read_write' }],
        variants: [
          { features: ['mnrt-test-feature-no-device-has'], wgsl: 'scale_add.never.wgsl', translations: {}, validatedBy: 'dawn' },
          { features: [], wgsl: 'scale_add.wgsl', translations: {}, validatedBy: 'naga' },
        ],
      },
      {
        name: 'square_offset',
        ops: ['mul', 'sub'],
        entryPoint: 'main',
        workgroupSize: [64, 1, 1],
        bindings: [{ binding: 0, access: 'read' }, { binding: 1, access: 'read' }, { binding: 2, access: 'read_write' }],
        variants: [{ features: [], wgsl: 'square_offset.wgsl', translations: {}, validatedBy: 'naga' }],
      },
      {
        name: 'sum',
        ops: ['sum'],
        entryPoint: 'main',
        workgroupSize: [1, 1, 1],
        bindings: [{ binding: 0, access: 'read' }, { binding: 1, access: 'read_write' }],
        variants: [{ features: [], wgsl: 'sum.wgsl', translations: {}, validatedBy: 'naga' }],
      },
    ],
    entryPoints: {
      run: {
        inputs: [{ name: 'a', buffer: 0, dtype: 'f32', shape: [N] }],
        outputs: [
          { name: 'y', buffer: 4, dtype: 'f32', shape: [N] },
          { name: 'y_again', buffer: 4, dtype: 'f32', shape: [N] }, // two outputs, one buffer
          { name: 's', buffer: 5, dtype: 'f32', shape: [1] },
          { name: 't', buffer: 3, dtype: 'f32', shape: [N] },
        ],
        dispatches: [
          { kernel: 0, buffers: [0, 1, 3], workgroups: [Math.ceil(N / 64), 1, 1], node: 't' },
          { kernel: 1, buffers: [3, 2, 4], workgroups: [Math.ceil(N / 64), 1, 1], node: 'y' },
          { kernel: 2, buffers: [4, 5], workgroups: [1, 1, 1], node: 's' },
        ],
      },
    },
  };
  const sections: BundleSection[] = [
    { name: 'weights', bytes: weights },
    { name: 'scale_add.never.wgsl', bytes: text(NEVER_CHOSEN) },
    { name: 'scale_add.wgsl', bytes: text(SCALE_ADD) },
    { name: 'square_offset.wgsl', bytes: text(SQUARE_OFFSET) },
    { name: 'sum.wgsl', bytes: text(SUM) },
  ];
  return { manifest, sections };
}

export function handPlan(edit?: (parts: ReturnType<typeof handPlanParts>) => void): Uint8Array {
  const parts = handPlanParts();
  edit?.(parts);
  return writeBundle(parts.manifest, parts.sections);
}

/** Rebuilds a bundle around an edited manifest (`text` edits its JSON text), keeping its data area (whose offsets are relative). */
export function withManifest(bytes: Uint8Array, edit: (m: Manifest) => void, text = (json: string) => json): Uint8Array {
  const header = new DataView(bytes.buffer, bytes.byteOffset, MNPLAN_HEADER_BYTES);
  const manifest = JSON.parse(new TextDecoder().decode(bytes.subarray(MNPLAN_HEADER_BYTES, MNPLAN_HEADER_BYTES + header.getUint32(16, true))));
  edit(manifest);
  return reassemble(bytes, new TextEncoder().encode(text(JSON.stringify(manifest))), bytes.subarray(header.getUint32(20, true)));
}

/** A bundle of `json` as its manifest and `data` as its data area, with `model`'s header fields and the header's lengths, offsets and manifest SHA-256 made right. */
export function reassemble(model: Uint8Array, json: Uint8Array, data: Uint8Array): Uint8Array {
  const dataOffset = Math.ceil((MNPLAN_HEADER_BYTES + json.length) / MNPLAN_SECTION_ALIGNMENT) * MNPLAN_SECTION_ALIGNMENT;
  const out = new Uint8Array(dataOffset + data.length);
  out.set(model.subarray(0, MNPLAN_HEADER_BYTES));
  const view = new DataView(out.buffer);
  view.setUint32(16, json.length, true);
  view.setUint32(20, dataOffset, true);
  view.setBigUint64(24, BigInt(out.length), true);
  out.set(createHash('sha256').update(json).digest(), 32);
  out.set(json, MNPLAN_HEADER_BYTES);
  out.set(data, dataOffset);
  return out;
}
