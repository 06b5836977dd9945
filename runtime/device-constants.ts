// Constants a kernel variant needs from the device it runs on, which the compiler cannot know
// (manifest `deviceConstants`): the runtime measures each once per device, with a tiny kernel
// whose answer it checks, and sets it as a pipeline override. A constant it cannot measure
// (unknown name, or the probe fails) rules the variant out; a later variant runs instead.
//
// I8_MATRIX_UNIT: what the offset and stride of an i8 subgroup-matrix load count. The
// extension's text says bytes; the Dawn of webgpu 0.6.2 counts 32-bit words (measured on an
// H200). The probe multiplies a 16×32 by a 32×16 i8 matrix with each unit and keeps the one
// that gives the right product.

import { BUFFER_COPY_DST, BUFFER_COPY_SRC, BUFFER_MAP_READ, BUFFER_STORAGE, MAP_MODE_READ } from './gpu-flags';

const SUBGROUP_MATRIX = 'chromium-experimental-subgroup-matrix';
const measured = new WeakMap<GPUDevice, Map<string, Promise<number | undefined>>>();

/** The device's value of each named constant; names it cannot measure are absent. */
export async function measureDeviceConstants(device: GPUDevice, names: Iterable<string>): Promise<Map<string, number>> {
  let cache = measured.get(device);
  if (!cache) measured.set(device, (cache = new Map()));
  const values = new Map<string, number>();
  for (const name of new Set(names)) {
    let value = cache.get(name);
    if (!value) cache.set(name, (value = measure(device, name)));
    const v = await value;
    if (v !== undefined) values.set(name, v);
  }
  return values;
}

function measure(device: GPUDevice, name: string): Promise<number | undefined> {
  if (name === 'I8_MATRIX_UNIT') return i8MatrixUnit(device);
  return Promise.resolve(undefined);
}

const PROBE_WGSL = `enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> a: array<i32>;
@group(0) @binding(1) var<storage, read> b: array<i32>;
@group(0) @binding(2) var<storage, read_write> c: array<i32>;
override I8_MATRIX_UNIT: u32 = 1u;
@compute @workgroup_size(32)
fn main() {
  let l = subgroupMatrixLoad<subgroup_matrix_left<i8, 32, 16>, row_major>(&a, 32u / I8_MATRIX_UNIT, 32u / I8_MATRIX_UNIT);
  let r = subgroupMatrixLoad<subgroup_matrix_right<i8, 16, 32>, row_major>(&b, 0u, 16u / I8_MATRIX_UNIT);
  let acc = subgroupMatrixMultiplyAccumulate(l, r, subgroup_matrix_result<i32, 16, 16>());
  subgroupMatrixStore<row_major>(&c, 0u, acc, 16u);
}`;

/** 1 or 4 where the probe's product is right with that unit; undefined without the feature or when neither is. */
async function i8MatrixUnit(device: GPUDevice): Promise<number | undefined> {
  if (!device.features.has(SUBGROUP_MATRIX)) return undefined;
  // A is rows 1..16 of a 17×32 matrix (offset 32 bytes tells the units apart too), B is 32×16
  const a = Int8Array.from({ length: 17 * 32 }, (_, i) => ((i * 7) % 23) - 11);
  const b = Int8Array.from({ length: 32 * 16 }, (_, i) => ((i * 5) % 19) - 9);
  const expected = new Int32Array(16 * 16);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 16; j++) {
      let acc = 0;
      for (let k = 0; k < 32; k++) acc += a[(i + 1) * 32 + k] * b[k * 16 + j];
      expected[i * 16 + j] = acc;
    }
  }
  const usage = BUFFER_STORAGE | BUFFER_COPY_DST | BUFFER_COPY_SRC;
  const buffers: GPUBuffer[] = [];
  const upload = (bytes: Int8Array<ArrayBuffer>) => {
    const buffer = device.createBuffer({ label: 'mnrt/i8-matrix-unit probe', size: bytes.byteLength, usage });
    device.queue.writeBuffer(buffer, 0, bytes);
    buffers.push(buffer);
    return buffer;
  };
  device.pushErrorScope('validation');
  try {
    const bufA = upload(a);
    const bufB = upload(b);
    const module = device.createShaderModule({ label: 'mnrt/i8-matrix-unit probe', code: PROBE_WGSL });
    for (const unit of [1, 4]) {
      const c = device.createBuffer({ label: 'mnrt/i8-matrix-unit probe', size: expected.byteLength, usage });
      const readback = device.createBuffer({ label: 'mnrt/i8-matrix-unit probe', size: expected.byteLength, usage: BUFFER_MAP_READ | BUFFER_COPY_DST });
      buffers.push(c, readback);
      const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main', constants: { I8_MATRIX_UNIT: unit } } });
      const bindGroup = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [bufA, bufB, c].map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(1);
      pass.end();
      encoder.copyBufferToBuffer(c, 0, readback, 0, expected.byteLength);
      device.queue.submit([encoder.finish()]);
      await readback.mapAsync(MAP_MODE_READ);
      const got = new Int32Array(readback.getMappedRange().slice(0));
      readback.unmap();
      if (got.every((v, i) => v === expected[i])) return unit;
    }
    return undefined;
  } catch {
    // the device refused the probe (no such matrix shape, say): no variant relies on it
    return undefined;
  } finally {
    await device.popErrorScope();
    for (const buffer of buffers) buffer.destroy();
  }
}
