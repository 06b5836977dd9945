// Checkpoint weights loaded into a plan compiled without them (Session.loadWeights,
// readWeightsFiles, mnc run --weights): the oracle is the same plan compiled with the weights
// inside, run on the same inputs; the dtype widening is checked against values worked out by
// hand; every mismatch is a PlanError naming the tensor.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { encodeSafetensors, loadPlan, loadTrainingPlan, PlanError, readBundle, readWeightsFiles, tensorAsF32, type SafeTensor } from '../runtime/index';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

function mlp(): Graph {
  const g = new Graph('mlp');
  const x = g.input('x', [4, 6]);
  const h = g.relu(g.add(g.matmul(x, g.parameter('fc1.weight', [6, 5])), g.parameter('fc1.bias', [5])));
  const y = g.add(g.matmul(h, g.parameter('fc2.weight', [5, 3])), g.parameter('fc2.bias', [3]));
  g.output('y', y);
  g.output('loss', g.mseLoss(y, g.input('target', [4, 3])));
  return g;
}

const x = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i * 0.7));
const target = new Float32Array(12);

/** The parameters of a plan compiled with its weights, as a checkpoint would hold them. */
async function checkpointOf(bundle: Uint8Array): Promise<Map<string, SafeTensor>> {
  const { manifest, section } = await readBundle(bundle);
  const tensors = new Map<string, SafeTensor>();
  for (const b of manifest.buffers.filter((b) => b.role === 'parameter')) {
    const init = b.init!;
    tensors.set(b.name, { dtype: 'F32', shape: b.shape, data: section(init.section).slice(init.offset, init.offset + init.length) });
  }
  return tensors;
}

const f32Bytes = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);

describe('loadWeights', async () => {
  const embedded = (await compileGraph(mlp(), { seed: 3 })).bundle;
  const bare = (await compileGraph(mlp(), { seed: 3, weights: 'none' })).bundle;
  const checkpoint = await checkpointOf(embedded);

  it('gives a plan compiled without weights the outputs of the plan compiled with them', async () => {
    const { device } = await sharedDevice();
    const withWeights = await loadPlan(embedded, device);
    const want = (await withWeights.run({ x, target })).y;
    withWeights.destroy();
    const session = await loadPlan(bare, device);
    const zero = (await session.run({ x, target })).y;
    expect([...zero].every((v) => v === 0)).toBe(true);
    const report = session.loadWeights(encodeSafetensors(checkpoint));
    expect(report.loaded.sort()).toEqual(['fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight']);
    expect((await session.run({ x, target })).y).toEqual(want);
    session.destroy();
  });

  it('reads a sharded checkpoint through its index, and a training session starts from it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mnc-weights-'));
    const names = [...checkpoint.keys()];
    const shards = [names.slice(0, 2), names.slice(2)];
    const weightMap: Record<string, string> = {};
    shards.forEach((part, k) => {
      const file = `model-0000${k + 1}-of-00002.safetensors`;
      writeFileSync(join(dir, file), encodeSafetensors(new Map(part.map((n) => [n, checkpoint.get(n)!]))));
      for (const n of part) weightMap[n] = file;
    });
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const files = readWeightsFiles(dir);
    expect(files.map((f) => f.source)).toEqual(shards.map((_, k) => join(dir, `model-0000${k + 1}-of-00002.safetensors`)));

    const { device } = await sharedDevice();
    const trainedEmbedded = (await compileGraph(mlp(), { seed: 3, training: { loss: 'loss', optimizer: { kind: 'sgd', lr: 0.1 } } })).bundle;
    const trainedBare = (await compileGraph(mlp(), { seed: 3, weights: 'none', training: { loss: 'loss', optimizer: { kind: 'sgd', lr: 0.1 } } })).bundle;
    const a = await loadTrainingPlan(trainedEmbedded, device);
    const b = await loadTrainingPlan(trainedBare, device);
    b.loadWeights(files);
    expect(await b.step({ x, target })).toBe(await a.step({ x, target }));
    expect(await b.step({ x, target })).toBe(await a.step({ x, target }));
    a.destroy();
    b.destroy();
  });

  it('widens F16, BF16 and F64 tensors to f32 exactly', () => {
    const half = new Uint8Array(new Uint16Array([0x3c00, 0xc100, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x3555]).buffer);
    expect([...new Float32Array(tensorAsF32({ dtype: 'F16', shape: [7], data: half }, 'h').buffer)]).toEqual([1, -2.5, 65504, 2 ** -24, -0, Infinity, 0.333251953125]);
    const bf16 = new Uint8Array(new Uint16Array([0x3f80, 0xc020, 0x3eab, 0xff80]).buffer);
    expect([...new Float32Array(tensorAsF32({ dtype: 'BF16', shape: [4], data: bf16 }, 'b').buffer)]).toEqual([1, -2.5, 0.333984375, -Infinity]);
    const f64 = new Uint8Array(new Float64Array([0.1, -3]).buffer);
    expect([...new Float32Array(tensorAsF32({ dtype: 'F64', shape: [2], data: f64 }, 'd').buffer)]).toEqual([Math.fround(0.1), -3]);
  });

  it('refuses what does not match, naming the tensor, and writes nothing then', async () => {
    const { device } = await sharedDevice();
    const session = await loadPlan(bare, device);
    const refused = (tensors: Map<string, SafeTensor>, options = {}) => {
      try {
        session.loadWeights(encodeSafetensors(tensors), options);
      } catch (error) {
        expect(error).toBeInstanceOf(PlanError);
        return (error as Error).message;
      }
      throw new Error('accepted');
    };
    const with_ = (name: string, t: SafeTensor) => new Map([...checkpoint, [name, t]]);
    expect(refused(with_('lm_head.weight', { dtype: 'F32', shape: [1], data: f32Bytes([1]) }))).toMatch(/1 tensor\(s\) are not parameters of plan "mlp": "lm_head.weight"/);
    expect(refused(new Map([...checkpoint].filter(([n]) => n !== 'fc2.bias')))).toMatch(/no weights file holds parameter\(s\) "fc2.bias"/);
    expect(refused(with_('fc2.bias', { dtype: 'F32', shape: [1, 3], data: f32Bytes([1, 2, 3]) }))).toMatch(/tensor "fc2.bias" is \[1, 3\]; plan "mlp" declares \[3\]/);
    expect(refused(with_('fc2.bias', { dtype: 'I32', shape: [3], data: new Uint8Array(12) }))).toMatch(/tensor "fc2.bias" is I32/);
    // nothing was written by the refusals
    expect([...(await session.run({ x, target })).y].every((v) => v === 0)).toBe(true);
    // the same files accepted with the options that allow them
    const report = session.loadWeights(encodeSafetensors(with_('lm_head.weight', { dtype: 'F32', shape: [1], data: f32Bytes([1]) })), { unknown: 'ignore' });
    expect(report.skipped).toEqual(['lm_head.weight']);
    session.destroy();
  });

  it('refuses a tensor in two shards and a shard index that names a path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mnc-weights-'));
    const one = encodeSafetensors(new Map([['fc1.bias', checkpoint.get('fc1.bias')!]]));
    writeFileSync(join(dir, 'a.safetensors'), one);
    writeFileSync(join(dir, 'b.safetensors'), one);
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'fc1.bias': 'a.safetensors', x: 'b.safetensors' } }));
    const files = readWeightsFiles(dir);
    const session = await loadPlan(bare, (await sharedDevice()).device);
    expect(() => session.loadWeights(files)).toThrow(/tensor "fc1.bias" is in both .*a.safetensors and .*b.safetensors/);
    session.destroy();
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'fc1.bias': '../a.safetensors' } }));
    expect(() => readWeightsFiles(dir)).toThrow(/weight_map names "..\/a.safetensors"; shards are file names beside the index/);
    expect(() => readWeightsFiles(join(dir, 'nothing'))).toThrow(/no such file or directory/);
  });
});
