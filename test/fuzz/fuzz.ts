// A seeded, bounded mutation fuzzer for the runtime's file readers. A target gives seed
// files, the reader, which errors are its own refusals, and (for formats with a JSON header
// and checksums) a way to apply a JSON mutation and re-encode the file soundly. Each case
// mutates one seed; its outcome is acceptance, an expected refusal (counted by kind), an
// unexpected error, or a broken bound (hashing far more bytes than the file holds, or an
// accepted file that breaks a promise the target states).
import { BYTE_MUTATORS, JSON_MUTATORS, mutateJson, type JsonMutator, type Mutated } from './mutate';
import { caseRandom, type Random } from './random';

export interface FuzzTarget {
  name: string;
  seeds: Uint8Array[];
  /** reads a file the way an application would; resolves on acceptance */
  read(bytes: Uint8Array): Promise<unknown>;
  /** true for the errors the reader is meant to raise (e.g. a PlanError) */
  isExpected(error: unknown): boolean;
  /** the outcome name of an expected error (e.g. its kind) */
  kindOf(error: unknown): string;
  /** decodes the JSON header, lets `edit` change it and re-encodes with checksums recomputed; undefined when the seed has none */
  restructure?(bytes: Uint8Array, edit: (json: unknown) => string): Mutated | undefined;
  /** mutations of the JSON header particular to the format, beside the generic ones */
  jsonMutators?: Record<string, JsonMutator>;
  /** what an accepted file must satisfy; a message when it does not */
  checkAccepted?(value: unknown, bytes: Uint8Array): string | undefined;
}

export interface FuzzOptions {
  cases: number;
  seed: number;
  /** a case fails when the reader hashes more than this many times the file's bytes (+ 64 KiB) */
  hashFactor?: number;
}

export interface Outcome {
  count: number;
  /** the first case with this outcome */
  example?: { index: number; what: string; message: string };
}

export interface FuzzReport {
  target: string;
  cases: number;
  /** 'accepted', 'refused: <kind>', 'UNEXPECTED <Error name>: <first line>', 'BOUND: <what>' */
  outcomes: Map<string, Outcome>;
  /** outcomes that are bugs: unexpected errors and broken bounds */
  failures: number;
  milliseconds: number;
}

/** Counts the bytes given to crypto.subtle.digest (each call copies its input). */
let hashedBytes = 0;
let counting = false;
function countDigests(): void {
  if (counting) return;
  counting = true;
  const subtle = globalThis.crypto.subtle;
  const digest = subtle.digest.bind(subtle);
  subtle.digest = ((algorithm: AlgorithmIdentifier, data: BufferSource) => {
    hashedBytes += data.byteLength;
    return digest(algorithm, data);
  }) as SubtleCrypto['digest'];
}

function mutate(target: FuzzTarget, rng: Random): Mutated {
  const seed = rng.pick(target.seeds);
  const mutators = { ...JSON_MUTATORS, ...target.jsonMutators };
  if (target.restructure && rng.chance(0.5)) {
    const done = target.restructure(seed, (json) => mutateJson(json, rng, mutators));
    if (done) return done;
  }
  const name = rng.pick(Object.keys(BYTE_MUTATORS));
  return BYTE_MUTATORS[name](seed, rng);
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0].slice(0, 160);
}

export async function fuzz(target: FuzzTarget, options: FuzzOptions): Promise<FuzzReport> {
  countDigests();
  const started = performance.now();
  const outcomes = new Map<string, Outcome>();
  let failures = 0;
  const record = (outcome: string, index: number, what: string, message: string, failure: boolean) => {
    const entry = outcomes.get(outcome) ?? { count: 0 };
    if (!entry.example) entry.example = { index, what, message };
    entry.count++;
    outcomes.set(outcome, entry);
    if (failure) failures++;
  };
  const factor = options.hashFactor ?? 2;
  for (let index = 0; index < options.cases; index++) {
    const { bytes, what } = mutate(target, caseRandom(options.seed, index));
    hashedBytes = 0;
    try {
      const value = await target.read(bytes);
      const broken = target.checkAccepted?.(value, bytes);
      if (broken) record(`BOUND: accepted ${broken.split(':')[0]}`, index, what, broken, true);
      else record('accepted', index, what, '', false);
    } catch (error) {
      if (target.isExpected(error)) record(`refused: ${target.kindOf(error)}`, index, what, firstLine(error), false);
      else record(`UNEXPECTED ${error instanceof Error ? error.name : typeof error}: ${firstLine(error).replace(/\d+/g, 'N').slice(0, 60)}`, index, what, firstLine(error), true);
    }
    if (hashedBytes > factor * bytes.length + 65536) {
      record('BOUND: hashed bytes', index, what, `hashed ${hashedBytes} bytes of a ${bytes.length}-byte file`, true);
    }
  }
  return { target: target.name, cases: options.cases, outcomes, failures, milliseconds: performance.now() - started };
}

/** The report as a table: outcome, count, and the first example of each bug. */
export function formatReport(report: FuzzReport): string {
  const rows = [...report.outcomes].sort((a, b) => b[1].count - a[1].count);
  const width = Math.max(...rows.map(([name]) => name.length), 7);
  const lines = [`${report.target}: ${report.cases} cases in ${(report.milliseconds / 1000).toFixed(1)} s, ${report.failures} failures`];
  for (const [name, { count, example }] of rows) {
    lines.push(`  ${name.padEnd(width)}  ${String(count).padStart(6)}`);
    if (example && (name.startsWith('UNEXPECTED') || name.startsWith('BOUND'))) {
      lines.push(`    first: case ${example.index} (${example.what.slice(0, 140)})`, `           ${example.message}`);
    }
  }
  return lines.join('\n');
}
