// The TypeScript frontend: type errors and shape errors located at the user's file:line:col,
// model discovery by exported value, --model selection, and user code that throws.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTypeScriptModel, type LoadOptions } from '../compiler/frontends/typescript';
import { CompileError, CompileErrors } from '../compiler/ir/errors';
import { interpret, materializeParameters } from '../compiler/ir/interpret';

const fixture = (name: string) => relative(process.cwd(), join(import.meta.dirname, '..', 'fixtures', 'models', name));

/** 1-based line and column of `needle` in a file (its first occurrence). */
function positionOf(file: string, needle: string): { line: number; column: number } {
  const lines = readFileSync(file, 'utf8').split('\n');
  const index = lines.findIndex((l) => l.includes(needle));
  if (index < 0) throw new Error(`${needle} not in ${file}`);
  return { line: index + 1, column: lines[index].indexOf(needle) + 1 };
}

async function failure(file: string, options?: LoadOptions): Promise<unknown> {
  try {
    await loadTypeScriptModel(file, options);
  } catch (error) {
    return error;
  }
  throw new Error(`${file} loaded without an error`);
}

const scratch = mkdtempSync(join(tmpdir(), 'mnc-frontend-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A model file (and its neighbours) in a scratch directory outside the repository. */
function scratchModel(files: Record<string, string>): string {
  const dir = mkdtempSync(join(scratch, 'model-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return join(dir, Object.keys(files)[0]);
}

describe('type errors', () => {
  it('reports every TypeScript error of the model file, each at its file:line:col', async () => {
    const file = fixture('type-error.ts');
    const error = await failure(file);
    expect(error).toBeInstanceOf(CompileErrors);
    const errors = (error as CompileErrors).errors;
    expect(errors.map((e) => e.kind)).toEqual(['type', 'type']);
    const assign = positionOf(file, 'scale: number');
    const extra = positionOf(file, 'scale)');
    expect(errors.map((e) => e.format())).toEqual([
      `${file}:${assign.line}:${assign.column}: error: Type 'string' is not assignable to type 'number'. (TS2322)`,
      `${file}:${extra.line}:${extra.column}: error: Expected 1 arguments, but got 2. (TS2554)`,
    ]);
    expect(errors[0].loc).toEqual({ file, line: 6, column: 9 });
  });

  it("keeps a chained diagnostic's explanation as the detail under the first line", async () => {
    const model = scratchModel({
      'net.ts': `import { model } from 'mnc';\nconst f: (x: number) => string = (x: string) => x;\nexport const net = model((g) => ({ y: g.relu(g.input('x', [f.length])) }));\n`,
    });
    const [error] = ((await failure(model)) as CompileErrors).errors;
    expect(error.format()).toBe(
      `${model}:2:7: error: Type '(x: string) => string' is not assignable to type '(x: number) => string'. (TS2322)\n` +
        `  Types of parameters 'x' and 'x' are incompatible.\n    Type 'number' is not assignable to type 'string'.`,
    );
  });

  it('checks local imports too, and reports a missing one', async () => {
    const model = scratchModel({
      'net.ts': `import { model } from 'mnc';\nimport { width } from './sizes';\nimport { nothing } from './missing';\nexport const net = model((g) => ({ y: g.relu(g.input('x', [1, width])) }));\n`,
      'sizes.ts': `export const width: number = 'wide';\n`,
    });
    const error = await failure(model);
    expect(error).toBeInstanceOf(CompileErrors);
    const lines = (error as CompileErrors).errors.map((e) => e.format());
    expect(lines).toContainEqual(expect.stringMatching(/net\.ts:3:25: error: Cannot find module '\.\/missing'/));
    expect(lines).toContainEqual(expect.stringMatching(/sizes\.ts:1:14: error: Type 'string' is not assignable to type 'number'\. \(TS2322\)$/));
    // outside the working directory, paths stay absolute
    expect((error as CompileErrors).errors.every((e) => e.loc?.file.startsWith(scratch))).toBe(true);
  });
});

describe('the type check beside the build', () => {
  it('its errors come first, before an error the ill-typed code then runs into', async () => {
    const model = scratchModel({
      'net.ts': `import { model } from 'mnc';\nconst dims: number[] = 'four';\nexport const net = model((g) => ({ y: g.relu(g.input('x', [dims.length, dims[9].valueOf()])) }));\n`,
    });
    for (const deferTypeCheck of [false, true]) {
      const error = await failure(model, { deferTypeCheck });
      expect(error).toBeInstanceOf(CompileErrors);
      expect((error as CompileErrors).errors.map((e) => e.format())).toEqual([`${model}:2:7: error: Type 'string' is not assignable to type 'number[]'. (TS2322)`]);
    }
  });

  it('deferred, it hands back the graph and rejects later with the type errors', async () => {
    const model = scratchModel({
      'net.ts': `import { model } from 'mnc';\nconst width: number = '3' as unknown as string;\nexport const net = model((g) => ({ y: g.relu(g.input('x', [Number(width)])) }));\n`,
    });
    const loaded = await loadTypeScriptModel(model, { deferTypeCheck: true });
    expect(loaded.graph.outputs.map((o) => o.name)).toEqual(['y']);
    const error = await loaded.typeChecked.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CompileErrors);
    expect((error as CompileErrors).errors[0].format()).toMatch(/net\.ts:2:7: error: Type 'string' is not assignable to type 'number'/);
    // a file that checks resolves it
    await expect((await loadTypeScriptModel('examples/mlp.ts', { deferTypeCheck: true })).typeChecked).resolves.toBeUndefined();
  });
});

describe('shape errors', () => {
  it("carry the user's file:line:col of the builder call", async () => {
    const file = fixture('shape-error.ts');
    const error = await failure(file);
    expect(error).toBeInstanceOf(CompileError);
    const { line, column } = positionOf(file, 'matmul(x, w)');
    expect((error as CompileError).kind).toBe('shape');
    expect((error as CompileError).op).toBe('matmul');
    expect((error as CompileError).format()).toBe(
      `${file}:${line}:${column}: error: matmul: inner dimensions differ: a is [2, 3] (K = 3) and b is [4, 5] (K = 4)`,
    );
  });

  it('point into an imported helper file when the bad call is there', async () => {
    const model = scratchModel({
      'net.ts': `import { model } from 'mnc';\nimport { dense } from './lib/layers';\n\nexport const net = model((g) => {\n  const x = g.input('x', [2, 3]);\n  return { y: dense(g, x, 4) };\n});\n`,
      'lib/layers.ts': `import type { Graph, Tensor } from 'mnc';\n\nexport function dense(g: Graph, x: Tensor, n: number): Tensor {\n  const w = g.parameter('w', [n, n]);\n  return g.matmul(x, w);\n}\n`,
    });
    const error = (await failure(model)) as CompileError;
    expect(error.kind).toBe('shape');
    expect(error.loc).toEqual({ file: join(model, '..', 'lib', 'layers.ts'), line: 5, column: 12 });
  });
});

describe('model discovery', () => {
  it('uses the only exported definition and locates every node', async () => {
    const { graph, name, available } = await loadTypeScriptModel('examples/mlp.ts');
    expect(name).toBe('mlp');
    expect(available).toEqual(['mlp']);
    expect(graph.name).toBe('mlp');
    expect(graph.outputs.map((o) => o.name)).toEqual(['probs', 'logits']);
    expect(graph.nodes.every((n) => n.loc?.file === 'examples/mlp.ts')).toBe(true);
    expect(graph.nodes.find((n) => n.name === 'x')?.loc).toEqual({ file: 'examples/mlp.ts', ...positionOf('examples/mlp.ts', "input('x'") });
  });

  it('records a graph the reference interpreter runs', async () => {
    const { graph } = await loadTypeScriptModel('examples/smoke.ts');
    const outputs = interpret(graph, { x: new Float32Array(16).fill(0.25) }, materializeParameters(graph, 0));
    expect(Object.keys(outputs)).toEqual(['out', 'probs', 'rowMax', 'mean', 'norm']);
    expect(outputs.probs[0] + outputs.probs[1] + outputs.probs[2] + outputs.probs[3]).toBeCloseTo(1, 5);
  });

  it('requires --model when a file exports several definitions, and lists them', async () => {
    const file = fixture('two-models.ts');
    const error = (await failure(file)) as CompileError;
    expect(error).toBeInstanceOf(CompileError);
    expect(error.kind).toBe('model');
    expect(error.message).toBe(`${file} exports 2 models ('encoder', 'decoder'); choose one with --model NAME`);
  });

  it('builds the definition --model names, finding definitions by their exported values', async () => {
    const { graph, name, available } = await loadTypeScriptModel(fixture('two-models.ts'), { model: 'decoder' });
    expect(available).toEqual(['encoder', 'decoder']);
    expect(name).toBe('decoder');
    expect(graph.name).toBe('decoder');
    expect(graph.outputs.map((o) => o.name)).toEqual(['x']);
  });

  it('names the available models for an unknown --model', async () => {
    const file = fixture('two-models.ts');
    const error = (await failure(file, { model: 'width' })) as CompileError;
    expect(error.kind).toBe('model');
    expect(error.message).toBe(`${file} has no model named 'width'; it exports 'encoder', 'decoder'`);
  });

  it('says so when the file exports no model', async () => {
    const file = fixture('no-model.ts');
    const error = (await failure(file)) as CompileError;
    expect(error.kind).toBe('model');
    expect(error.message).toMatch(new RegExp(`^${file.replaceAll('.', '\\.')} exports no model definition`));
  });

  it('finds a default export', async () => {
    const model = scratchModel({ 'tiny-net.ts': `import { model } from 'mnc';\nexport default model((g) => ({ y: g.exp(g.input('x', [3])) }));\n` });
    const { graph, name } = await loadTypeScriptModel(model);
    expect(name).toBe('default');
    expect(graph.name).toBe('tiny-net');
  });

  it('refuses a missing file', async () => {
    const error = (await failure('fixtures/models/nope.ts')) as CompileError;
    expect(error.kind).toBe('io');
    expect(error.format()).toBe("error: cannot read model file 'fixtures/models/nope.ts': no such file");
  });
});

describe('user code that fails', () => {
  it('an exception while building becomes a model error at the throw', async () => {
    const file = fixture('throws.ts');
    const error = (await failure(file)) as CompileError;
    expect(error).toBeInstanceOf(CompileError);
    expect(error.kind).toBe('model');
    const { line, column } = positionOf(file, 'new Error');
    expect(error.format()).toBe(`${file}:${line}:${column}: error: model 'deep' threw while building its graph: unsupported depth 3`);
  });

  it('a thrown non-Error value is reported too', async () => {
    const model = scratchModel({ 'net.ts': `import { model } from 'mnc';\nexport const net = model(() => {\n  throw 'not ready';\n});\n` });
    const error = (await failure(model)) as CompileError;
    expect(error.kind).toBe('model');
    expect(error.message).toBe("model 'net' threw while building its graph: not ready");
  });

  it('an exception at module top level is located', async () => {
    const model = scratchModel({
      'net.ts': `import { model } from 'mnc';\nconst table: Record<string, number[]> = {};\nconst dims = table['missing']!.length;\nexport const net = model((g) => ({ y: g.relu(g.input('x', [dims])) }));\n`,
    });
    const error = (await failure(model)) as CompileError;
    expect(error.kind).toBe('model');
    expect(error.loc).toMatchObject({ file: model, line: 3 });
    expect(error.message).toMatch(/^evaluating .*net\.ts threw: Cannot read properties of undefined/);
  });

  it('a model without outputs is reported at its model() call', async () => {
    const model = scratchModel({ 'net.ts': `import { model } from 'mnc';\n\nexport const net = model((g) => {\n  g.input('x', [2]);\n});\n` });
    const error = (await failure(model)) as CompileError;
    expect(error.kind).toBe('model');
    expect(error.loc).toEqual({ file: model, line: 3, column: 20 });
    expect(error.message).toMatch(/^model 'net' has no outputs/);
  });
});
