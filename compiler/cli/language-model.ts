// What `mnc generate` and `mnc serve` run: a language-model plan file, or a GGUF model compiled
// in memory (the Llama builder's prefill and decode over the file's weights, kept packed), and
// the text side: a tokenizer directory (--tokenizer DIR), else the tokenizer the GGUF file
// carries in its metadata.
import type { Tokenizer } from '../../runtime/text';
import { isTextError, loadGgufTokenizerFile, loadTokenizerDirectory, readGenerationConfigFile, type GenerationOptions } from '../../runtime/text/node';
import { compileGraph } from '../compile';
import { loadGgufModel } from '../frontends/gguf/load';
import { CompileError } from '../ir/errors';
import { parseTargets } from '../target/targets';
import { readPlanBytes } from './plan-file';

export const isGgufPath = (file: string): boolean => /\.gguf$/i.test(file);

/** How a GGUF model is compiled: --max-sequence, --decode-batch and --target, as `mnc compile` takes them. */
export interface GgufCompileFlags {
  maxSequence?: string;
  decodeBatch?: string;
  target?: string;
}

/** The plan's bytes: read from a plan file, or compiled from a GGUF model. */
export async function languageModelPlan(file: string, weights: string | undefined, flags: GgufCompileFlags = {}): Promise<Uint8Array> {
  if (!isGgufPath(file)) {
    if (flags.maxSequence !== undefined || flags.decodeBatch !== undefined || flags.target !== undefined) {
      throw new CompileError('input', '--max-sequence, --decode-batch and --target apply to a GGUF model (a plan was compiled with its own)');
    }
    return readPlanBytes(file);
  }
  if (weights) throw new CompileError('input', `--weights loads a plan's parameters; ${file} is a GGUF model, which carries its own weights`);
  const maxSequence = flags.maxSequence === undefined ? undefined : Number(flags.maxSequence);
  if (maxSequence !== undefined && (!/^\d+$/.test(flags.maxSequence!) || maxSequence < 1)) throw new CompileError('input', `--max-sequence expects a whole number from 1; got '${flags.maxSequence}'`);
  const decodeBatch = flags.decodeBatch === undefined ? undefined : Number(flags.decodeBatch);
  if (decodeBatch !== undefined && (!/^\d+$/.test(flags.decodeBatch!) || decodeBatch < 1)) throw new CompileError('input', `--decode-batch expects a whole number from 1; got '${flags.decodeBatch}'`);
  const targets = flags.target === undefined ? undefined : parseTargets(flags.target);
  const model = loadGgufModel(file, { ...(maxSequence ? { maxSequence } : {}), ...(decodeBatch ? { decodeBatch } : {}) });
  return (await compileGraph(model.graph, { entries: model.entries, source: file, ...(targets ? { targets } : {}) })).bundle;
}

/** The tokenizer and generation defaults: --tokenizer DIR's files, else the GGUF model's own. */
export async function languageModelText(file: string | undefined, tokenizerDir: string | undefined): Promise<{ tokenizer: Tokenizer; defaults: GenerationOptions; from: string }> {
  try {
    if (tokenizerDir) return { tokenizer: await loadTokenizerDirectory(tokenizerDir), defaults: await readGenerationConfigFile(tokenizerDir), from: tokenizerDir };
    if (file && isGgufPath(file)) return { ...(await loadGgufTokenizerFile(file)), from: `${file}'s tokenizer.ggml.* metadata` };
  } catch (error) {
    if (isTextError(error)) throw new CompileError('io', error.message);
    throw error;
  }
  throw new CompileError('input', '--tokenizer DIR is required: the directory holding tokenizer.json (and tokenizer_config.json for chat); a .gguf model carries its own');
}
