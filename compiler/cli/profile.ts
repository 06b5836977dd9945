// `--trace FILE` of mnc run and mnc train: writes a session's trace records as a
// Chrome/Perfetto trace and prints the per-kernel GPU time table.
import { formatKernelSummary, kernelSummary, toChromeTrace, type TraceRecord } from '../../runtime';
import { writeFileOrFail } from './tensors';

/** Kernel rows printed at most; the rest are summed into one line. */
const SUMMARY_ROWS = 30;

export function writeTrace(file: string, records: readonly TraceRecord[], print: (line: string) => void = console.log): void {
  writeFileOrFail(file, JSON.stringify(toChromeTrace(records)));
  const runs = new Set(records.map((r) => `${r.plan}\0${r.entry}\0${r.run}`)).size;
  print(`wrote ${file}: ${records.length} dispatches of ${runs} traced run${runs === 1 ? '' : 's'} (open it in ui.perfetto.dev or chrome://tracing)`);
  if (records.length === 0) return;
  print(`GPU time per kernel (timestamp queries, one compute pass per dispatch):`);
  print(formatKernelSummary(kernelSummary(records), { limit: SUMMARY_ROWS }));
}
