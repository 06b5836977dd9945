// A HuggingFace tokenizer from its files' contents (tokenizer.json, tokenizer_config.json,
// optionally chat_template.jinja), through @huggingface/tokenizers: encoding, decoding,
// special tokens, the chat template and streaming decode. Reads no files itself (browsers have
// none to read): node.ts reads a model directory for Node.

import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';
import { ChatTemplate, type ChatMessage, type ChatTemplateOptions } from './chat-template';
import { TextError } from './errors';
import { parseJsonObject } from './json';
import { TextStreamDecoder, type StreamDecoderOptions } from './stream';

/** The contents of a tokenizer's files: parsed JSON, JSON text, or the files' bytes. */
export interface TokenizerFiles {
  /** tokenizer.json */
  tokenizer: unknown;
  /** tokenizer_config.json: special tokens, chat template; optional */
  config?: unknown;
  /** chat_template.jinja, which newer checkpoints ship beside tokenizer_config.json; it wins over config.chat_template */
  chatTemplate?: string;
  /** what errors call the files (e.g. their paths); default their usual names */
  names?: { tokenizer?: string; config?: string; chatTemplate?: string };
}

/** A special token: its text and its id. */
export interface SpecialToken {
  readonly text: string;
  readonly id: number;
}

/** A token added on top of the model's vocabulary (tokenizer.json's `added_tokens`). */
export interface AddedToken {
  readonly id: number;
  readonly content: string;
  readonly special: boolean;
}

export interface EncodeOptions {
  /** add what the tokenizer's post-processor adds (e.g. Llama's `<s>`); default true, as in transformers */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** leave special tokens (bos, eos, `<|im_end|>`, ...) out of the text; default false, as in transformers */
  skipSpecialTokens?: boolean;
}

/**
 * A loaded tokenizer.
 *
 *     const tokenizer = loadTokenizer({ tokenizer: tokenizerJson, config: tokenizerConfigJson });
 *     tokenizer.encode('Hello world');                 // Qwen2/3: [9707, 1879]
 *     tokenizer.decode([9707, 1879]);                  // 'Hello world'
 *     tokenizer.encodeChat([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true });
 */
export class Tokenizer {
  /** the beginning-of-sequence token, where tokenizer_config.json names one */
  readonly bos: SpecialToken | null;
  /** the end-of-sequence token, where tokenizer_config.json names one */
  readonly eos: SpecialToken | null;
  readonly pad: SpecialToken | null;
  readonly unk: SpecialToken | null;
  /** tokenizer.json's added tokens, special or not */
  readonly addedTokens: readonly AddedToken[];
  /** ids of the special tokens (skipped by decode with skipSpecialTokens) */
  readonly specialTokenIds: ReadonlySet<number>;
  /** one more than the largest id of the vocabulary and the added tokens */
  readonly vocabSize: number;
  /** the chat template, or null when the files carry none */
  readonly chatTemplate: ChatTemplate | null;

  /** @internal use loadTokenizer */
  constructor(
    private readonly hf: HFTokenizer,
    config: Record<string, unknown>,
    chatTemplate: { source: unknown; file: string } | undefined,
    private readonly configFile = 'tokenizer_config.json',
  ) {
    this.addedTokens = [...hf.get_added_tokens_decoder().values()].map((t) => ({ id: t.id, content: t.content, special: t.special }));
    this.specialTokenIds = new Set(this.addedTokens.filter((t) => t.special).map((t) => t.id));
    let maxId = -1;
    for (const id of hf.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.bos = this.specialToken(config, 'bos_token');
    this.eos = this.specialToken(config, 'eos_token');
    this.pad = this.specialToken(config, 'pad_token');
    this.unk = this.specialToken(config, 'unk_token');
    if (chatTemplate === undefined || chatTemplate.source === undefined || chatTemplate.source === null) {
      this.chatTemplate = null;
    } else {
      const text = (token: SpecialToken | null) => token?.text ?? null;
      const specials = { bos_token: text(this.bos), eos_token: text(this.eos), pad_token: text(this.pad), unk_token: text(this.unk) };
      this.chatTemplate = new ChatTemplate(chatTemplate.source as string, specials, chatTemplate.file);
    }
  }

  /** Token ids of `text`. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TextError('bad-input', `encode takes a string; got ${typeof text}`);
    return this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /** The text of `ids`. Ids outside the vocabulary are refused. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new TextError('bad-input', `token id ${id} is outside the tokenizer's vocabulary [0, ${this.vocabSize})`);
      }
    }
    if (ids.length === 0) return ''; // the library refuses an empty list
    return this.hf.decode(ids as number[], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  /** The id of a token's text (a vocabulary entry, e.g. `Ġworld` or `<|im_end|>`), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /** The vocabulary entry of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /** The conversation rendered by the chat template (see ChatTemplate.render). */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    if (!this.chatTemplate) {
      throw new TextError('no-chat-template', 'has no chat_template: this tokenizer is not set up for chat (give a plain prompt, or a chat_template.jinja)', {
        file: this.configFile,
      });
    }
    return this.chatTemplate.render(messages, options);
  }

  /**
   * Token ids of the rendered conversation. Special tokens are not added again: the
   * template writes them as text (transformers' apply_chat_template(tokenize=True) does the same).
   */
  encodeChat(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecialTokens: false });
  }

  /** A decoder that turns ids arriving one at a time into complete text (stream.ts). */
  streamDecoder(options: StreamDecoderOptions = {}): TextStreamDecoder {
    return new TextStreamDecoder(this, options);
  }

  private specialToken(config: Record<string, unknown>, field: string): SpecialToken | null {
    const value = config[field];
    if (value === undefined || value === null) return null;
    // transformers writes either the text or an AddedToken object { content, ... }
    const text = typeof value === 'string' ? value : typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string' ? (value as { content: string }).content : undefined;
    if (text === undefined) throw new TextError('bad-tokenizer', `${field} must be a string or { "content": string }; got ${JSON.stringify(value)}`, { file: this.configFile });
    const id = this.hf.token_to_id(text);
    if (id === undefined) throw new TextError('bad-tokenizer', `${field} ${JSON.stringify(text)} is not in tokenizer.json's vocabulary`, { file: this.configFile });
    return { text, id };
  }
}

/** A tokenizer from its files' contents; a file that cannot be read is a TextError naming it. */
export function loadTokenizer(files: TokenizerFiles): Tokenizer {
  const names = { tokenizer: 'tokenizer.json', config: 'tokenizer_config.json', chatTemplate: 'chat_template.jinja', ...files.names };
  const tokenizerJson = parseJsonObject(files.tokenizer, names.tokenizer, 'bad-tokenizer');
  if (typeof tokenizerJson.model !== 'object' || tokenizerJson.model === null) {
    throw new TextError('bad-tokenizer', 'has no "model" object: is it a HuggingFace tokenizers file?', { file: names.tokenizer });
  }
  const config = files.config === undefined ? {} : parseJsonObject(files.config, names.config, 'bad-tokenizer');
  let hf: HFTokenizer;
  try {
    hf = new HFTokenizer(tokenizerJson, config);
  } catch (cause) {
    throw new TextError('bad-tokenizer', `cannot be read: ${cause instanceof Error ? cause.message : String(cause)}`, { file: names.tokenizer, cause });
  }
  const chatTemplate =
    files.chatTemplate !== undefined
      ? { source: files.chatTemplate, file: names.chatTemplate }
      : { source: config.chat_template, file: names.config };
  return new Tokenizer(hf, config, chatTemplate, names.config);
}
