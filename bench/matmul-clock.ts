// The GPU's SM clock and power while fp32 4096³ runs back to back, ours then torch.matmul in
// the same call: whether a matmul figure is bound by clock throttling or by the kernel.
// `nvidia-smi` samples every 50 ms through both phases; each phase prints its time per
// product (ours from timestamp queries, torch from CUDA events) and the mean SM clock and
// power over its samples (the first few dropped while the clock settles).
//
//   npx esbuild bench/matmul-clock.ts --bundle --platform=node --format=esm \
//       --external:webgpu --external:naga-wasm --outfile=.device/matmul-clock.mjs
//   # device command (carry [".device"]):
//   source .device/bootstrap.sh; node .device/matmul-clock.mjs [--seconds 4]
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { compileGraph } from '../compiler/compile';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { requestNodeDevice } from '../runtime/index';
import { measureGpuTime, prepareTimedPlan } from './gpu-time';
import { matmulCaseGraph } from './matmul-case';
import { uniform } from './bench-data';

const N = 4096;
const { values } = parseArgs({ options: { seconds: { type: 'string', default: '4' } } });
const seconds = Number(values.seconds);
if (!(seconds > 0)) throw new Error('--seconds needs a positive number');

/** nvidia-smi samples: SM clock and power, with the phase each falls in. */
const samples: { phase: string; mhz: number; watts: number }[] = [];
let phase = 'idle';
const smi = spawn('nvidia-smi', ['--query-gpu=clocks.sm,power.draw,power.limit,clocks.max.sm', '--format=csv,noheader,nounits', '-lms', '50'], { stdio: ['ignore', 'pipe', 'inherit'] });
let limits = '';
smi.stdout.on('data', (chunk: Buffer) => {
  for (const line of String(chunk).split('\n').filter(Boolean)) {
    const [mhz, watts, limit, max] = line.split(',').map((f) => Number(f.trim()));
    limits = `power limit ${limit} W, maximum SM clock ${max} MHz`;
    samples.push({ phase, mhz, watts });
  }
});

/** Mean SM clock and power over a phase's samples, past its first 200 ms. */
function summary(name: string): string {
  const xs = samples.filter((s) => s.phase === name).slice(4);
  if (xs.length === 0) return 'no samples';
  const mean = (f: (s: (typeof xs)[number]) => number) => xs.reduce((a, s) => a + f(s), 0) / xs.length;
  return `SM ${mean((s) => s.mhz).toFixed(0)} MHz (${Math.min(...xs.map((s) => s.mhz))}–${Math.max(...xs.map((s) => s.mhz))}), ${mean((s) => s.watts).toFixed(0)} W over ${xs.length} samples`;
}

const gpu = await requestNodeDevice();
try {
  const { g } = matmulCaseGraph({ m: N, k: N, n: N });
  const next = uniform(3);
  const feeds = { a: Float32Array.from({ length: N * N }, next), b: Float32Array.from({ length: N * N }, next) };
  const timed = await prepareTimedPlan((await compileGraph(g, { targets: [NVIDIA_HOPPER] })).bundle, gpu.device, 'run', feeds);
  await measureGpuTime(timed, { passes: 3, warmupUs: 1_000_000 });
  phase = 'ours';
  const ours = await measureGpuTime(timed, { passes: Math.max(1, Math.round(seconds / 0.2)), targetPassUs: 200_000 });
  phase = 'idle';
  timed.destroy();
  console.log(`ours  4096³: ${ours.medianUs.toFixed(0)} µs, ${((2 * N ** 3) / ours.medianUs / 1e6).toFixed(1)} TFLOP/s; ${summary('ours')}`);
} finally {
  await gpu.destroy();
}

// torch in a child process, awaited asynchronously so the samples keep arriving
const script = `
import time, torch
torch.backends.cuda.matmul.allow_tf32 = False
a = torch.randn(${N}, ${N}, device='cuda'); b = torch.randn(${N}, ${N}, device='cuda')
for _ in range(50): a @ b
torch.cuda.synchronize()
print('start', flush=True)
s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
n = 0; s.record(); t0 = time.time()
while time.time() - t0 < ${seconds}:
    for _ in range(20): a @ b
    n += 20
    torch.cuda.synchronize()
e.record(); torch.cuda.synchronize()
print('us', s.elapsed_time(e) * 1000 / n, flush=True)
`;
const torchUs = await new Promise<number>((resolve, reject) => {
  const py = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let us = NaN;
  py.stdout.on('data', (chunk: Buffer) => {
    for (const line of String(chunk).split('\n')) {
      if (line === 'start') phase = 'torch';
      if (line.startsWith('us ')) us = Number(line.slice(3));
    }
  });
  py.on('error', reject);
  py.on('exit', (code) => (code === 0 ? resolve(us) : reject(new Error(`python3 exited with ${code}`))));
});
phase = 'idle';
smi.kill();
console.log(`torch 4096³: ${torchUs.toFixed(0)} µs, ${((2 * N ** 3) / torchUs / 1e6).toFixed(1)} TFLOP/s; ${summary('torch')}`);
console.log(limits);
