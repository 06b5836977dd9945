// The README's op table is the op table of compiler/ir/ops.ts: same ops, order, archetypes
// summaries and whether each has a gradient rule. On a mismatch the message holds the table to paste.
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { OPS, type OpDef } from '../compiler/ir/ops';

test("README's op table matches compiler/ir/ops.ts", () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('<!-- ops:');
  expect(start, 'README.md has no "<!-- ops: ... -->" marker before the op table').toBeGreaterThanOrEqual(0);
  const rows = readme
    .slice(start)
    .split('\n')
    .filter((line) => line.startsWith('| `'));
  const gradient = (def: OpDef<unknown>) => (def.grad ? 'yes' : def.arity === 0 ? '—' : 'no');
  const wanted = Object.entries(OPS).map(([name, def]) => `| \`${name}\` | ${def.lowering.archetype} | ${gradient(def as OpDef<unknown>)} | ${def.summary} |`);
  expect(rows.join('\n'), `README.md's op table is out of date; the rows should be:\n${wanted.join('\n')}\n`).toBe(wanted.join('\n'));
});
