// The runtime's own SHA-256 (runtime/sha256.ts, for sections of 256 MiB and more, hashed in
// place) against crypto.subtle.digest (which copies its input first), in MB/s on this CPU.
// The ratio decides STREAMED_HASH_BYTES in runtime/bundle.ts.
//
//   npx tsx bench/sha256.ts [--mib 64] [--repeat 3]
import { sha256Chunked } from '../runtime/sha256';

function arg(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

const mib = arg('mib', 64);
const repeat = arg('repeat', 3);
const bytes = new Uint8Array(mib << 20).map((_, i) => (i * 131) & 255);
const rate = async (hash: () => Promise<unknown>) => {
  let best = Infinity;
  for (let r = 0; r < repeat; r++) {
    const started = performance.now();
    await hash();
    best = Math.min(best, performance.now() - started);
  }
  return mib / 1.048576 / (best / 1000);
};
const own = await rate(() => sha256Chunked(bytes));
const native = await rate(() => crypto.subtle.digest('SHA-256', bytes));
console.log(`SHA-256 of ${mib} MiB, best of ${repeat}: sha256Chunked ${own.toFixed(0)} MB/s, crypto.subtle.digest ${native.toFixed(0)} MB/s (${(native / own).toFixed(1)}x)`);
