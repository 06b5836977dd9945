// Models exported by torch.onnx (fixtures/onnx/torch_export.py: a seeded MLP, a reduced-width
// ResNet-18 and MobileNetV2, a 2-layer GPT-2 and a 2-layer Llama; README.md beside it says how)
// compiled by the ONNX frontend and compared with onnxruntime's outputs saved beside them
// (ONNX's test-data layout: test_data_set_0/{input,output}_<i>.pb): the CPU reference and the
// GPU plan (Dawn; llvmpipe here). Nothing is skipped: a missing fixture fails, naming the script.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { loadOnnxModel } from '../compiler/frontends/onnx/load';
import { decodeTensor, isIntegerType, tensorValues, type TensorValue } from '../compiler/frontends/onnx/proto';
import { interpret, materializeParameters } from '../compiler/ir/interpret';
import { releaseSharedDevice, runOnGpu } from './gpu';

afterAll(releaseSharedDevice);

const DIR = new URL('../fixtures/onnx/torch/', import.meta.url).pathname;
const MODELS = ['mlp', 'resnet18', 'mobilenet_v2', 'gpt2', 'llama'] as const;

interface FixtureManifest {
  versions: Record<string, string | null>;
  models: { name: string; exporter: string; opset: number; bytes: number; inputs: { name: string }[]; outputs: { name: string; shape: number[] }[] }[];
}

function readManifest(): FixtureManifest {
  const path = join(DIR, 'manifest.json');
  if (!existsSync(path)) throw new Error(`${path} is missing: run python3 fixtures/onnx/torch_export.py on a machine with torch and commit fixtures/onnx/torch/`);
  return JSON.parse(readFileSync(path, 'utf8')) as FixtureManifest;
}

/** The saved tensors `kind`_0.pb, `kind`_1.pb, … of a fixture, with their names. */
function readTensors(name: string, kind: 'input' | 'output'): (TensorValue & { name: string })[] {
  const out: (TensorValue & { name: string })[] = [];
  for (let i = 0; ; i++) {
    const file = join(DIR, name, 'test_data_set_0', `${kind}_${i}.pb`);
    if (!existsSync(file)) break;
    const proto = decodeTensor(readFileSync(file), file);
    out.push({ ...tensorValues(proto, file, `${kind} ${i}`), name: proto.name ?? '' });
  }
  if (out.length === 0) throw new Error(`${join(DIR, name, 'test_data_set_0')} holds no ${kind}_0.pb`);
  return out;
}

// Both sides compute in float32 in their own orders (our CPU reference in float64), so the
// bound scales with the outputs: max |ours - onnxruntime| ≤ 2e-6 · max(1, max |onnxruntime|).
// Seen (llvmpipe), GPU plan and CPU reference, at outputs up to 0.14-0.55: mlp 6.0e-8 and
// 3.7e-8, resnet18 3.0e-8 and 1.6e-8, mobilenet_v2 3.0e-8 and 2.3e-8, gpt2 8.9e-8 and 8.2e-8,
// llama 7.5e-8 and 7.5e-8; the bound keeps a 20x margin.
const RELATIVE_TOLERANCE = 2e-6;

describe('torch.onnx exports agree with onnxruntime (fixtures/onnx/torch)', () => {
  test('the fixtures are all there and small', () => {
    const manifest = readManifest();
    expect(manifest.models.map((m) => m.name).sort()).toEqual([...MODELS].sort());
    let total = 0;
    for (const name of MODELS) {
      const bytes = statSync(join(DIR, name, 'model.onnx')).size;
      expect(bytes, `${name}/model.onnx`).toBeLessThan(800_000);
      total += bytes;
    }
    expect(total).toBeLessThan(2_000_000);
  });

  test.each(MODELS)('%s', async (name) => {
    const manifest = readManifest().models.find((m) => m.name === name);
    expect(manifest, `${name} in manifest.json`).toBeDefined();
    const file = join(DIR, name, 'model.onnx');
    const inputs = readTensors(name, 'input');
    const expected = readTensors(name, 'output');
    expect(inputs.map((t) => t.name)).toEqual(manifest!.inputs.map((t) => t.name));
    const loaded = loadOnnxModel(file, { shapes: Object.fromEntries(inputs.map((t) => [t.name, t.shape])) });
    expect(loaded.outputs.map((o) => o.name)).toEqual(expected.map((t) => t.name));
    // int64 token ids are fed to the plan as int32
    const feeds = Object.fromEntries(inputs.map((t) => [t.name, isIntegerType(t.dataType) ? Int32Array.from(t.data) : Float32Array.from(t.data)]));
    const cpu = interpret(loaded.graph, feeds, materializeParameters(loaded.graph, 0));
    const gpu = await runOnGpu((await compileGraph(loaded.graph, { seed: 0 })).bundle, feeds);
    for (const t of expected) {
      const scale = t.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const bound = RELATIVE_TOLERANCE * Math.max(1, scale);
      const error = (got: ArrayLike<number>) => {
        expect(got.length, `${name}: output '${t.name}' length`).toBe(t.data.length);
        let m = 0;
        for (let i = 0; i < got.length; i++) m = Math.max(m, Number.isNaN(got[i]) ? Infinity : Math.abs(got[i] - t.data[i]));
        return m;
      };
      const [cpuError, gpuError] = [error(cpu[t.name]), error(gpu[t.name])];
      console.log(`${name} (${manifest!.exporter}, opset ${manifest!.opset}): '${t.name}' max |output| ${scale.toFixed(3)}, max |mnc - onnxruntime| ${gpuError.toExponential(2)} (GPU plan), ${cpuError.toExponential(2)} (CPU reference)`);
      expect(cpuError, `${name} '${t.name}' (CPU reference)`).toBeLessThanOrEqual(bound);
      expect(gpuError, `${name} '${t.name}' (GPU plan)`).toBeLessThanOrEqual(bound);
    }
  }, 300_000);
});
