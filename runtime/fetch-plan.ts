// Fetches a .mnplan over HTTP without the bytes a WebGPU runtime never reads: the plan's
// SPIR-V/MSL/HLSL translations lie at the end of the file (from `translationsOffset`,
// schemas/mnplan-layout.md), so two range requests (the header and manifest, then the rest up
// to the translations) get everything loadPlan needs, and the plan stays one file for tools.
// A server that ignores ranges sends the whole file with the first request, which is used as is.
import { MNPLAN_HEADER_BYTES, MNPLAN_MAGIC } from '../schemas/manifest';
import { PlanError } from './errors';

export interface FetchPlanOptions {
  /** fetch the native translations too (the whole file; only tools need them). Default false. */
  translations?: boolean;
  /**
   * Bytes asked for by the first request, which should hold the header and the manifest, else
   * a third request follows (default 32 KiB: the MNIST MLP's inference manifest is 11 KB, its
   * training plan's 40 KB). Asking for more than the plan up to its translations fetches some
   * translations with it.
   */
  firstBytes?: number;
  /** passed to every fetch (credentials, signal, ...); its headers get a Range added */
  init?: RequestInit;
}

const DEFAULT_FIRST_BYTES = 32 << 10;

/**
 * The plan at `url`, up to its translations (or whole with `translations: true`), ready for
 * loadPlan / loadTrainingPlan / readBundle. Fails with PlanError 'fetch-failed' naming the URL
 * and the HTTP status; what the bytes hold is readBundle's to check.
 */
export async function fetchPlan(url: string | URL, options: FetchPlanOptions = {}): Promise<Uint8Array> {
  if (options.translations) return new Uint8Array(await (await get(url, options.init)).arrayBuffer());
  const first = await get(url, options.init, 0, (options.firstBytes ?? DEFAULT_FIRST_BYTES) - 1);
  let bytes: Uint8Array = new Uint8Array(await first.arrayBuffer());
  if (first.status !== 206) return bytes; // no range support: the whole file came
  // A file that is no plan of this layout is passed on as it is; readBundle names the problem.
  if (bytes.length < MNPLAN_HEADER_BYTES || MNPLAN_MAGIC.some((b, i) => bytes[i] !== b)) return bytes;
  const header = new DataView(bytes.buffer, bytes.byteOffset, MNPLAN_HEADER_BYTES);
  const manifestLength = header.getUint32(16, true);
  const dataOffset = header.getUint32(20, true);
  const fileLength = Number(header.getBigUint64(24, true));
  const upTo = async (end: number) => {
    if (bytes.length >= end) return;
    const rest = await get(url, options.init, bytes.length, end - 1);
    const more = new Uint8Array(await rest.arrayBuffer());
    if (rest.status === 200) bytes = more; // the range was ignored this time: the whole file
    else bytes = concat(bytes, more);
  };
  await upTo(Math.min(dataOffset, fileLength));
  let end = fileLength;
  try {
    const manifest = JSON.parse(new TextDecoder().decode(bytes.subarray(MNPLAN_HEADER_BYTES, MNPLAN_HEADER_BYTES + manifestLength))) as { translationsOffset?: unknown };
    if (typeof manifest.translationsOffset === 'number') end = Math.min(fileLength, dataOffset + manifest.translationsOffset);
  } catch {
    // a damaged manifest: fetch all of it, readBundle says what is wrong
  }
  await upTo(end);
  return bytes;
}

async function get(url: string | URL, init: RequestInit | undefined, from?: number, to?: number): Promise<Response> {
  const headers = new Headers(init?.headers);
  if (from !== undefined) headers.set('range', `bytes=${from}-${to}`);
  let response: Response;
  try {
    response = await fetch(url, { ...init, headers });
  } catch (error) {
    throw new PlanError('fetch-failed', `could not fetch the plan at ${String(url)}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
  if (!response.ok) throw new PlanError('fetch-failed', `could not fetch the plan at ${String(url)}: HTTP ${response.status} ${response.statusText}`.trimEnd());
  return response;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
