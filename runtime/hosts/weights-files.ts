// Safetensors checkpoints from disk as HuggingFace lays them out: one file, a directory with
// model.safetensors, or a sharded checkpoint's model.safetensors.index.json (its weight_map
// names the shard of every tensor). For Session.loadWeights; Node only.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { PlanError } from '../errors';
import { parseJson } from '../json';
import { ggufWeights, isGgufBytes } from '../gguf-weights';
import { decodeSafetensors } from '../safetensors';
import type { NamedSafetensors } from '../weights';

/** Node reads a file into one buffer of at most this many bytes. */
const LARGEST_FILE = 2 ** 31 - 1;

function readFile(path: string): Uint8Array {
  const size = statSync(path).size;
  if (size > LARGEST_FILE) throw new PlanError('bad-input', `${path}: ${size} bytes; weight files are read whole, up to 2 GiB each (shard the checkpoint)`);
  const bytes = readFileSync(path);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The files of a shard index, in the order the index first names them. */
function shardsOf(indexPath: string): string[] {
  const parsed = parseJson(readFileSync(indexPath, 'utf8'));
  if ('problem' in parsed) throw new PlanError('bad-input', `${indexPath}: not a shard index (${parsed.problem})`);
  const index = parsed.value;
  const map = typeof index === 'object' && index !== null && Object.hasOwn(index, 'weight_map') ? (index as { weight_map: unknown }).weight_map : undefined;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new PlanError('bad-input', `${indexPath}: has no "weight_map" object`);
  const files = [...new Set(Object.values(map))];
  const bad = files.find((f) => typeof f !== 'string' || f.includes('/') || f.includes('\\') || f === '..');
  if (bad !== undefined) throw new PlanError('bad-input', `${indexPath}: weight_map names ${JSON.stringify(bad)}; shards are file names beside the index`);
  return files as string[];
}

/**
 * Reads the checkpoint at `path` (a .safetensors file, a GGUF file (runtime/gguf-weights.ts), a
 * shard index, or a directory holding either model.safetensors or model.safetensors.index.json).
 */
export function readWeightsFiles(path: string): NamedSafetensors[] {
  if (!existsSync(path)) throw new PlanError('bad-input', `${path}: no such file or directory`);
  let files: string[];
  if (statSync(path).isDirectory()) {
    const index = join(path, 'model.safetensors.index.json');
    const single = join(path, 'model.safetensors');
    if (existsSync(index)) files = shardsOf(index).map((f) => join(path, f));
    else if (existsSync(single)) files = [single];
    else throw new PlanError('bad-input', `${path}: holds neither model.safetensors nor model.safetensors.index.json`);
  } else if (basename(path).endsWith('.index.json')) {
    files = shardsOf(path).map((f) => join(dirname(path), f));
  } else {
    files = [path];
  }
  return files.map((file) => {
    if (!existsSync(file)) throw new PlanError('bad-input', `${file}: missing (named by the checkpoint's shard index)`);
    const bytes = readFile(file);
    return isGgufBytes(bytes) ? ggufWeights(bytes, file) : { source: file, file: decodeSafetensors(bytes, file) };
  });
}
