// The reader fuzzer (test/fuzz/) run for longer than the suite does, printing the outcome
// table: accepted, each PlanError kind, and every unexpected error or broken bound with the
// first case that showed it (rerun with the same --seed to reproduce it).
//
//   npx tsx bench/fuzz.ts [--cases 20000] [--seed 1] [--target plan|safetensors|onnx|nnef|nnef-dat|gguf]
import { formatReport, fuzz, type FuzzTarget } from '../test/fuzz/fuzz';
import { ggufTarget, nnefTarget, nnefTensorTarget, onnxTarget, planTarget, safetensorsTarget } from '../test/fuzz/targets';

function arg(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

const TARGETS: Record<string, () => FuzzTarget | Promise<FuzzTarget>> = { plan: planTarget, safetensors: safetensorsTarget, onnx: onnxTarget, nnef: nnefTarget, 'nnef-dat': nnefTensorTarget, gguf: ggufTarget };

const cases = Number(arg('cases') ?? 20000);
const seed = Number(arg('seed') ?? 1);
const chosen = arg('target');
let failures = 0;
for (const [name, make] of Object.entries(TARGETS)) {
  if (chosen !== undefined && chosen !== name) continue;
  const report = await fuzz(await make(), { cases, seed });
  console.log(formatReport(report));
  failures += report.failures;
}
process.exitCode = failures > 0 ? 1 : 0;
