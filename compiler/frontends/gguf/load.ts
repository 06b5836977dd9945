// A GGUF model file as a graph: its metadata as the Llama builder's config (config.ts), its
// tensors as the builder's parameters under HF's names. Linear weights stay as the file
// stores them (packed parameters the kernels dequantize as they read; F32 ones as ordinary
// parameters), and so does an F16 or BF16 token embedding (gathered in-kernel); other
// embeddings, norms and biases are dequantized to the f32 the builder needs.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { llama, llamaEntries, type HfLlamaConfig, type LlamaOptions, type LlamaParameterRole } from '../../../models/llama';
import { dequantize, isSupportedType } from '../../../runtime/ggml-types';
import { parseGguf, tensorBytes, type GgufFile, type GgufTensorInfo } from '../../../runtime/gguf';
import { ggufTensorName, ropeRowsPermuted, unpermuteRopeRows as unpermuteRows } from '../../../runtime/gguf-llama';
import { isPlanError } from '../../../runtime/errors';
import type { EntrySpec } from '../../api';
import { CompileError } from '../../ir/errors';
import { Graph, type Tensor } from '../../ir/graph';
import { weightDTypeOfGgml } from '../../ir/types';
import { ggufModelConfig, type GgufArchitecture } from './config';

const HF_ARCHITECTURES: Record<GgufArchitecture, string> = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM' };

/** The KV cache's rows when the caller gives none: the file's context length, at most this. */
export const GGUF_DEFAULT_MAX_SEQUENCE = 2048;

export interface GgufModel {
  graph: Graph;
  name: string;
  entries: EntrySpec;
}

/** The graph of a GGUF file's model: the builder's entries `options` asks for (default: prefill and decode). */
export function loadGgufModel(path: string, options: Omit<LlamaOptions, 'parameter' | 'init'> = {}): GgufModel {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (error) {
    throw new CompileError('io', `cannot read ${path}: ${(error as Error).message}`);
  }
  return ggufModel(bytes, path, options);
}

/** As loadGgufModel, from the file's bytes in memory (tensors are views of them, not copies). */
export function ggufModel(bytes: Uint8Array, source: string, options: Omit<LlamaOptions, 'parameter' | 'init'> = {}): GgufModel {
  let file: GgufFile;
  try {
    file = parseGguf(bytes, source);
  } catch (error) {
    // the reader's errors already name the file and the field
    if (isPlanError(error)) throw new CompileError('model', (error as Error).message);
    throw error;
  }
  const config = ggufModelConfig(file);
  const hf: HfLlamaConfig = { ...config, architectures: [HF_ARCHITECTURES[config.model_type]] };
  const built: LlamaOptions = { ...options };
  if (!built.forward && !built.maxSequence) built.maxSequence = Math.min(config.max_position_embeddings, GGUF_DEFAULT_MAX_SEQUENCE);
  const name = String(file.metadata.get('general.name')?.value ?? basename(source).replace(/\.gguf$/i, ''));
  const graph = new Graph(name.replace(/[^A-Za-z0-9_]+/g, '_'));
  const fail = (message: string): never => {
    throw new CompileError('model', `${source}: ${message}`);
  };
  // llama.cpp rotates adjacent pairs: its converter reordered the Q and K rows of each head
  const permutedHeads = ropeRowsPermuted(config.model_type)
    ? (tensor: string) => (/\.attn_q\./.test(tensor) ? config.num_attention_heads : /\.attn_k\./.test(tensor) ? config.num_key_value_heads : 0)
    : () => 0;

  const parameter = (hfName: string, shape: number[], role: LlamaParameterRole): Tensor => {
    const tensorName = ggufTensorName(hfName) ?? fail(`no GGUF tensor name for the builder's parameter ${hfName}`);
    const t: GgufTensorInfo = file.tensors.get(tensorName) ?? fail(`tensor "${tensorName}" is missing (the model's ${hfName}, ${config.model_type} needs it)`);
    if (t.shape.join() !== shape.join()) fail(`tensor "${tensorName}" is [${t.shape.join(', ')}] (ne [${t.ne.join(', ')}]); the model's ${hfName} is [${shape.join(', ')}]`);
    if (!isSupportedType(t.type.name)) fail(`tensor "${tensorName}" is ${t.type.name}, a type this compiler does not read`);
    const heads = permutedHeads(tensorName);
    const stored = tensorBytes(bytes, t);
    const sixteenBit = t.type.name === 'F16' || t.type.name === 'BF16';
    // (as a tied head the embedding is read four values at a time, as any packed product's weight)
    if ((role === 'linear' && t.type.name !== 'F32') || (role === 'embedding' && sixteenBit && shape[1] % 4 === 0)) {
      // whole rows of blocks move: the permutation works on the packed bytes
      const packed = heads ? unpermuteRows(stored, shape[0], heads) : stored;
      return graph.packedParameter(hfName, shape, weightDTypeOfGgml(t.type.name)!, packed);
    }
    const values = dequantize(t.type, stored, t.elements, `${source}: tensor "${tensorName}"`);
    return graph.parameter(hfName, shape, { init: heads ? unpermuteRows(values, shape[0], heads) : values });
  };
  const outputs = llama(graph, hf, { ...built, parameter });
  for (const [output, t] of Object.entries(outputs)) graph.output(output, t);
  return { graph, name, entries: llamaEntries(built) };
}
