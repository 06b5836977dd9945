// Who may call the server and how often: API keys checked in constant time (Bearer tokens,
// compared as SHA-256 digests with timingSafeEqual against every key, so neither the length
// nor the first differing byte of a guess shows in the time), and a token bucket per key (or
// per client address when the server has no keys).

import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/** The server's API keys. */
export class ApiKeys {
  private readonly digests: Buffer[];

  constructor(keys: readonly string[]) {
    for (const key of keys) if (key.length === 0 || /\s/.test(key)) throw new RangeError('an API key must be non-empty and hold no whitespace');
    this.digests = keys.map(digest);
  }

  /** true when requests must carry a key */
  get required(): boolean {
    return this.digests.length > 0;
  }

  /**
   * The key's index for an `Authorization: Bearer <key>` header, or -1. Every key is compared,
   * whichever matches.
   */
  check(authorization: string | undefined): number {
    const match = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
    const presented = digest(match?.[1] ?? '');
    let found = -1;
    this.digests.forEach((d, i) => {
      if (timingSafeEqual(d, presented) && found < 0) found = i;
    });
    return match ? found : -1;
  }
}

/** Keys from a keys file's text: one a line; blank lines and lines starting with # are skipped. */
export function parseKeysFile(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

/**
 * Token buckets: each client holds up to `burst` requests and earns `perMinute` a minute.
 *
 *     const limits = new RateLimiter(60, 10);
 *     const verdict = limits.take('key#0');   // { ok: true } or { ok: false, retryAfterSeconds: 1 }
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly perMs: number;
  private lastSweep = 0;

  constructor(
    readonly perMinute: number,
    readonly burst: number = perMinute,
  ) {
    if (!(perMinute > 0) || !(burst >= 1)) throw new RangeError('a rate limit needs perMinute > 0 and burst >= 1');
    this.perMs = perMinute / 60_000;
  }

  take(client: string, now = performance.now()): { ok: true } | { ok: false; retryAfterSeconds: number } {
    this.sweep(now);
    const bucket = this.buckets.get(client) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.at) * this.perMs);
    bucket.at = now;
    this.buckets.set(client, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / this.perMs / 1000)) };
  }

  /** Forgets buckets that have refilled: a full bucket is the same as none (bounds memory with many addresses). */
  private sweep(now: number): void {
    if (now - this.lastSweep < 10_000) return;
    this.lastSweep = now;
    for (const [client, b] of this.buckets) if (b.tokens + (now - b.at) * this.perMs >= this.burst) this.buckets.delete(client);
  }
}
