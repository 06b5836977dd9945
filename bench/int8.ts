// The int8 matmul's subgroup-matrix kernel in several tilings (compiler/lower/matmul-int8.ts,
// SubgroupMatrixTiling), each timed alone with timestamp queries and checked exactly on
// sampled outputs, against torch._int_mm on the same GPU in the same call.
//
//   npx esbuild bench/int8.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/int8.mjs
//   node .device/int8.mjs [--no-torch]
//
// Needs an adapter with 'chromium-experimental-subgroup-matrix' (the H200 through Dawn's
// unsafe APIs); elsewhere it says so and stops. With $OUT set, the figures also go to
// $OUT/int8.json.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Graph } from '../compiler/ir/graph';
import { describeSubgroupMatrixTiling, SUBGROUP_MATRIX_TILING, subgroupMatrixVariant, type SubgroupMatrixTiling } from '../compiler/lower/matmul-int8';
import { measureDeviceConstants } from '../runtime/device-constants';
import { requestNodeDevice } from '../runtime/index';
import { median, timestampedPasses } from './gpu-time';

const withTorch = !process.argv.includes('--no-torch');
const cases = [
  { m: 4096, k: 4096, n: 4096 },
  { m: 8192, k: 8192, n: 8192 },
  { m: 2048, k: 576, n: 1536 },
];
// the compiler's tiling first; then fragments loaded straight from storage (fewer per subgroup,
// the next step's loaded ahead), and other stagings through workgroup memory
const tilings: SubgroupMatrixTiling[] = [
  SUBGROUP_MATRIX_TILING,
  { fragsM: 4, fragsN: 4, prefetch: false },
  { fragsM: 2, fragsN: 4, prefetch: false },
  { fragsM: 4, fragsN: 4, prefetch: true },
  ...[32, 64].flatMap((stageK) => [false, true].map((prefetch) => ({ fragsM: 4, fragsN: 4, prefetch, staged: true, stageK }))),
  { fragsM: 2, fragsN: 4, prefetch: true, staged: true },
  { fragsM: 4, fragsN: 2, prefetch: true, staged: true },
].filter((t, i, all) => all.findIndex((u) => describeSubgroupMatrixTiling(u) === describeSubgroupMatrixTiling(t)) === i);

const gpu = await requestNodeDevice({ allowUnsafeApis: true });
const { device } = gpu;
if (!device.features.has('chromium-experimental-subgroup-matrix') || !device.features.has('timestamp-query')) {
  console.log(`this adapter offers no subgroup matrices or timestamps (${gpu.backend}: ${gpu.adapter.info.description || gpu.adapter.info.vendor}); nothing to time`);
  await gpu.destroy();
  process.exit(0);
}
const unit = (await measureDeviceConstants(device, ['I8_MATRIX_UNIT'])).get('I8_MATRIX_UNIT');
console.log(`device: ${gpu.backend} ${gpu.adapter.info.description}; I8_MATRIX_UNIT ${unit}`);

function int8Data(length: number, seed: number): Int8Array<ArrayBuffer> {
  let s = (seed * 2654435761) >>> 0 || 1;
  return Int8Array.from({ length }, () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s >>> 24) - 128;
  });
}

interface Row {
  case: string;
  kernel: string;
  us: number;
  tops: number;
  wrong: number;
}
const rows: Row[] = [];

for (const c of cases) {
  const label = `${c.m}x${c.k}x${c.n}`;
  const a = int8Data(c.m * c.k, 1);
  const b = int8Data(c.k * c.n, 2);
  const upload = (data: Int8Array<ArrayBuffer>) => {
    const buffer = device.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(buffer, 0, data);
    return buffer;
  };
  const buffers = [upload(a), upload(b), device.createBuffer({ size: c.m * c.n * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST })];
  const g = new Graph('int8');
  const y = g.matmulInt8(g.input('a', [c.m, c.k], 'i8'), g.input('b', [c.k, c.n], 'i8'));
  const node = g.node(y);
  const operands = node.inputs.map((i) => g.nodes[i].type);
  // 64 sampled outputs, corners first, against the exact integer product
  const samples = Array.from({ length: 64 }, (_, i) => (i < 4 ? [[0, 0], [0, c.n - 1], [c.m - 1, 0], [c.m - 1, c.n - 1]][i] : [(i * 7919) % c.m, (i * 104729) % c.n]));
  const expected = samples.map(([row, col]) => {
    let sum = 0;
    for (let k = 0; k < c.k; k++) sum += a[row * c.k + k] * b[k * c.n + col];
    return sum;
  });
  for (const tiling of tilings) {
    const kernel = `subgroup matrices, ${describeSubgroupMatrixTiling(tiling)}`;
    const variant = subgroupMatrixVariant(node, operands, 'int8', tiling);
    if (!variant) continue;
    try {
      device.pushErrorScope('validation');
      const module = device.createShaderModule({ code: variant.wgsl });
      const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main', constants: { I8_MATRIX_UNIT: unit! } } }).catch(async (e: Error) => {
        const info = await module.getCompilationInfo();
        throw new Error(`${e.message} ${info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join(' | ')}`);
      });
      const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })) });
      const grid = variant.workgroups;
      const record = (reps: number) => (pass: GPUComputePassEncoder) => {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        for (let r = 0; r < reps; r++) pass.dispatchWorkgroups(...grid);
      };
      const encoder = device.createCommandEncoder();
      encoder.clearBuffer(buffers[2]);
      device.queue.submit([encoder.finish()]);
      await timestampedPasses(device, 1, record(1));
      const invalid = await device.popErrorScope();
      if (invalid) throw new Error(invalid.message);
      const staging = device.createBuffer({ size: buffers[2].size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const copy = device.createCommandEncoder();
      copy.copyBufferToBuffer(buffers[2], 0, staging, 0, buffers[2].size);
      device.queue.submit([copy.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const out = new Int32Array(staging.getMappedRange());
      const wrong = samples.filter(([row, col], i) => out[row * c.n + col] !== expected[i]).length;
      staging.unmap();
      staging.destroy();
      // about 40 ms per timed pass, after 0.3 s of warm-up (the clocks drop while the host compiles)
      const once = median(await timestampedPasses(device, 3, record(1)));
      const reps = Math.max(1, Math.round(40_000 / once));
      for (let warmed = 0; warmed < 300_000; ) warmed += (await timestampedPasses(device, 1, record(reps)))[0];
      const us = median(await timestampedPasses(device, 5, record(reps))) / reps;
      const row = { case: label, kernel, us, tops: (2 * c.m * c.n * c.k) / us / 1e6, wrong };
      rows.push(row);
      console.log(`${label.padEnd(16)} ${kernel.padEnd(80)} ${us.toFixed(1).padStart(8)} µs ${row.tops.toFixed(1).padStart(6)} TOPS${wrong ? `  WRONG at ${wrong} of 64 samples` : ''}`);
    } catch (e) {
      console.log(`${label.padEnd(16)} ${kernel.padEnd(80)} FAILED: ${(e as Error).message.split('\n').slice(0, 6).join(' | ')}`);
    }
  }
  for (const buffer of buffers) buffer.destroy();
}

const TORCH = String.raw`
import json, sys, torch
out = []
for c in json.loads(sys.argv[1]):
    a = torch.randint(-128, 128, (c['m'], c['k']), dtype=torch.int8, device='cuda')
    b = torch.randint(-128, 128, (c['k'], c['n']), dtype=torch.int8, device='cuda')
    f = lambda: torch._int_mm(a, b)
    for _ in range(10): f()
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(20): f()
        e.record(); torch.cuda.synchronize()
        times.append(s.elapsed_time(e) * 1000 / 20)
    times.sort()
    out.append({'case': f"{c['m']}x{c['k']}x{c['n']}", 'us': times[2]})
print(json.dumps(out))
`;
let torch: { case: string; us: number }[] = [];
if (withTorch) {
  const child = spawnSync('python3', ['-c', TORCH, JSON.stringify(cases)], { encoding: 'utf8' });
  if (child.status !== 0) console.log(`torch failed: ${child.stderr}`);
  else torch = JSON.parse(child.stdout.trim().split('\n').pop()!);
  for (const t of torch) {
    const c = cases.find((x) => `${x.m}x${x.k}x${x.n}` === t.case)!;
    const best = rows.filter((r) => r.case === t.case && r.wrong === 0).sort((x, y) => x.us - y.us)[0];
    console.log(
      `${t.case.padEnd(16)} torch._int_mm ${t.us.toFixed(1)} µs ${((2 * c.m * c.n * c.k) / t.us / 1e6).toFixed(1)} TOPS | ours best ${best ? `${best.us.toFixed(1)} µs ${best.tops.toFixed(1)} TOPS (${best.kernel})` : '-'}`,
    );
  }
}
if (process.env.OUT) writeFileSync(join(process.env.OUT, 'int8.json'), JSON.stringify({ date: new Date().toISOString(), rows, torch }, null, 2) + '\n');
await gpu.destroy();
