// Chat templates: the Jinja template a HuggingFace tokenizer_config.json carries under
// `chat_template` (one string, or a list of named ones) or a chat_template.jinja file, rendered
// with @huggingface/jinja the way transformers' apply_chat_template renders it: `messages`,
// `add_generation_prompt`, the special tokens' text (`bos_token`, `eos_token`, ...), `tools`,
// `documents`, and the engine's helpers `raise_exception` and `strftime_now`.

import { Template } from '@huggingface/jinja';
import { TextError } from './errors';

/** One turn of a conversation. Templates may read further fields (tool_calls, name, ...). */
export interface ChatMessage {
  role: string;
  content: string;
  [field: string]: unknown;
}

export interface ChatTemplateOptions {
  /** end with the opening of an assistant turn (transformers' add_generation_prompt); default false */
  addGenerationPrompt?: boolean;
  /** tool (function) descriptions, for templates that render them */
  tools?: readonly unknown[];
  /** documents for retrieval-augmented templates */
  documents?: readonly unknown[];
  /** which of a named list of templates; default `tool_use` when tools are given and there is one, else `default` */
  templateName?: string;
  /** further variables the template reads (e.g. Qwen3's `enable_thinking`) */
  variables?: Record<string, unknown>;
}

/**
 * The chat template(s) of one tokenizer. Templates are parsed on first use, so a tokenizer
 * whose template our Jinja engine cannot read still loads and encodes.
 *
 *     const chat = new ChatTemplate("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}", { eos_token: '</s>' });
 *     chat.render([{ role: 'user', content: 'Hi' }]);   // '<|user|>Hi'
 */
export class ChatTemplate {
  private readonly sources: ReadonlyMap<string, string>;
  private readonly parsed = new Map<string, Template>();

  /**
   * @param template a template string, or transformers' list form `[{ name, template }]`, or a name → template map
   * @param specialTokens the text of the special tokens the template may use (`bos_token`, `eos_token`, ...)
   * @param file where the template came from, named in errors
   */
  constructor(
    template: string | readonly { name: string; template: string }[] | Readonly<Record<string, string>>,
    private readonly specialTokens: Readonly<Record<string, string | null>> = {},
    readonly file = 'tokenizer_config.json',
  ) {
    const sources = new Map<string, string>();
    if (typeof template !== 'string' && (typeof template !== 'object' || template === null)) {
      throw new TextError('chat-template', `chat_template must be a string or a list of { "name", "template" }; got ${JSON.stringify(template)}`, { file });
    }
    if (typeof template === 'string') sources.set('default', template);
    else if (Array.isArray(template)) {
      for (const entry of template) {
        if (typeof entry?.name !== 'string' || typeof entry?.template !== 'string') {
          throw new TextError('chat-template', `chat_template must be a string or a list of { "name", "template" }; got ${JSON.stringify(entry)} in the list`, { file });
        }
        sources.set(entry.name, entry.template);
      }
    } else {
      for (const [name, source] of Object.entries(template)) {
        if (typeof source !== 'string') throw new TextError('chat-template', `chat template ${name} is not a string`, { file });
        sources.set(name, source);
      }
    }
    if (sources.size === 0) throw new TextError('no-chat-template', 'chat_template is an empty list', { file });
    this.sources = sources;
  }

  /** The template names (`default` for a single template). */
  get names(): string[] {
    return [...this.sources.keys()];
  }

  /** The template's text. */
  source(name = 'default'): string | undefined {
    return this.sources.get(name);
  }

  /** The conversation as the model expects its prompt text (special tokens as text: encode it without adding more). */
  render(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    checkMessages(messages);
    const name = options.templateName ?? (options.tools && this.sources.has('tool_use') ? 'tool_use' : 'default');
    const template = this.template(name);
    const variables: Record<string, unknown> = {
      ...this.specialTokens,
      ...options.variables,
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? false,
    };
    if (options.tools) variables.tools = options.tools;
    if (options.documents) variables.documents = options.documents;
    try {
      return template.render(variables);
    } catch (cause) {
      // raise_exception('…') (the engine's own helper) and the engine's errors both land here
      const message = cause instanceof Error ? cause.message : String(cause);
      throw new TextError('chat-template', `the chat template${name === 'default' ? '' : ` ${name}`} failed while rendering: ${message}`, { file: this.file, cause });
    }
  }

  private template(name: string): Template {
    const cached = this.parsed.get(name);
    if (cached) return cached;
    const source = this.sources.get(name);
    if (source === undefined) {
      throw new TextError('no-chat-template', `has no chat template named ${name}; it has ${this.names.join(', ')}`, { file: this.file });
    }
    let template: Template;
    try {
      template = new Template(source);
    } catch (cause) {
      const message = cause instanceof Error ? cause.message : String(cause);
      throw new TextError('chat-template', `the chat template${name === 'default' ? '' : ` ${name}`} does not parse: ${message}`, { file: this.file, cause });
    }
    this.parsed.set(name, template);
    return template;
  }
}

function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages)) throw new TextError('bad-input', 'chat messages must be an array of { role, content }');
  messages.forEach((m, i) => {
    if (typeof m !== 'object' || m === null || typeof m.role !== 'string') {
      throw new TextError('bad-input', `chat message ${i} must be an object with a string role; got ${JSON.stringify(m)}`);
    }
  });
}
