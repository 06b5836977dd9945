// Prints the ONNX frontend's conformance on ONNX's own node tests (libonnx-testdata):
// per supported op, the cases passed, then every failure with its reason.
//   npx tsx bench/onnx-conformance.ts [--markdown]
import { conformanceCases, NODE_TESTS, runCase, summarize } from '../test/onnx-conformance';

const cases = conformanceCases();
if (cases.length === 0) {
  console.error(`no node tests under ${NODE_TESTS}: install Debian's libonnx-testdata (scripts/setup.sh does)`);
  process.exit(1);
}
const results = cases.map((c) => runCase(c.name, c.op));
const table = summarize(results);
const passed = results.filter((r) => r.passed).length;
console.log(`| op | passed | cases | rate |\n|---|---|---|---|`);
for (const row of table) console.log(`| ${row.op} | ${row.passed} | ${row.total} | ${((100 * row.passed) / row.total).toFixed(0)}% |`);
console.log(`\n${passed} of ${results.length} cases pass (${((100 * passed) / results.length).toFixed(1)}%)\n\nfailures:`);
for (const r of results.filter((x) => !x.passed)) console.log(`- ${r.name} (${r.op}): ${r.reason}`);
