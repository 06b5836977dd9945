// The one error type the text layer (tokenizer, chat templates, sampling, generate) throws:
// a kind a program can switch on, the file it concerns where there is one, and a message that
// names the bad field or value. Like the runtime's PlanError, nothing here prints or exits.

export type TextErrorKind =
  /** tokenizer.json or tokenizer_config.json is not JSON, or not a tokenizer the library reads */
  | 'bad-tokenizer'
  /** the tokenizer has no chat template, or none of the requested name */
  | 'no-chat-template'
  /** the chat template does not parse, or it raised an exception while rendering */
  | 'chat-template'
  /** a generation option (or a generation_config.json field) is out of range or of the wrong type */
  | 'bad-option'
  /** a prompt or a token id that cannot be used (empty prompt, id outside the vocabulary) */
  | 'bad-input'
  /** the model returned logits that cannot be sampled (NaN, +Infinity, all masked, length changed) */
  | 'bad-logits';

export class TextError extends Error {
  readonly kind: TextErrorKind;
  /** the file the error concerns (`tokenizer_config.json`, ...), when it concerns one */
  readonly file: string | undefined;

  constructor(kind: TextErrorKind, message: string, options?: { file?: string; cause?: unknown }) {
    super(options?.file ? `${options.file}: ${message}` : message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TextError';
    this.kind = kind;
    this.file = options?.file;
  }
}

/** True for a TextError (also one from another copy of the text layer, e.g. a second bundle). */
export function isTextError(value: unknown): value is TextError {
  return value instanceof TextError || (value instanceof Error && value.name === 'TextError' && 'kind' in value);
}
