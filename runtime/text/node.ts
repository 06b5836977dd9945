// The text layer for Node: everything runtime/text/index.ts offers, plus reading a
// HuggingFace model directory (tokenizer.json, tokenizer_config.json, chat_template.jinja,
// generation_config.json) or a GGUF file's tokenizer metadata from disk.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TextError } from './errors';
import { isPlanError } from '../errors';
import { readGguf } from '../gguf';
import { openFileSource } from '../hosts/file-source';
import { readGenerationConfig, type GenerationOptions } from './generation-config';
import { loadGgufTokenizer } from './gguf-tokenizer';
import { loadTokenizer, type Tokenizer } from './tokenizer';

export * from './index';

/**
 * The tokenizer of a model directory: tokenizer.json (required), tokenizer_config.json and
 * chat_template.jinja (each where present). Errors name the file with its path.
 */
export async function loadTokenizerDirectory(dir: string): Promise<Tokenizer> {
  const tokenizer = await readOptional(join(dir, 'tokenizer.json'));
  if (tokenizer === undefined) throw new TextError('bad-tokenizer', 'not found: a tokenizer needs its tokenizer.json', { file: join(dir, 'tokenizer.json') });
  const config = await readOptional(join(dir, 'tokenizer_config.json'));
  const chatTemplate = await readOptional(join(dir, 'chat_template.jinja'));
  const names = { tokenizer: join(dir, 'tokenizer.json'), config: join(dir, 'tokenizer_config.json'), chatTemplate: join(dir, 'chat_template.jinja') };
  return loadTokenizer({ tokenizer, config, chatTemplate, names });
}

/**
 * The tokenizer a GGUF file carries in its metadata (gguf-tokenizer.ts), and generate()'s
 * defaults for it; only the file's header is read.
 */
export async function loadGgufTokenizerFile(path: string): Promise<{ tokenizer: Tokenizer; defaults: GenerationOptions }> {
  let source;
  try {
    source = await openFileSource(path);
  } catch (error) {
    throw new TextError('bad-tokenizer', `cannot be read: ${(error as Error).message}`, { file: path, cause: error });
  }
  try {
    return loadGgufTokenizer(await readGguf(source, path));
  } catch (error) {
    // the GGUF reader's errors already name the file
    if (isPlanError(error)) throw new TextError('bad-tokenizer', (error as Error).message, { cause: error });
    throw error;
  } finally {
    await source.close();
  }
}

/** The options of `dir`/generation_config.json ({} when there is none); see readGenerationConfig. */
export async function readGenerationConfigFile(dir: string): Promise<GenerationOptions> {
  const file = join(dir, 'generation_config.json');
  const text = await readOptional(file);
  return text === undefined ? {} : readGenerationConfig(text, file);
}

async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TextError('bad-tokenizer', `cannot be read: ${(error as Error).message}`, { file, cause: error });
  }
}
