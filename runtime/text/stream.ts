// Streaming decode: token ids arrive one at a time; text is released only once it is complete.
// A byte-level BPE token or a SentencePiece byte-fallback token (<0xF0>) may hold part of a
// UTF-8 character, and a SentencePiece decoder turns `▁` into a space only between pieces (it
// strips it at the start of the text), so decoding each id alone is wrong twice over.
// The method is text-generation-inference's: decode a short window of ids twice, once without
// and once with the ids not yet released; release the difference when the window's text grew
// and does not end in U+FFFD (an incomplete character).

import type { Tokenizer } from './tokenizer';

export interface StreamDecoderOptions {
  /** leave special tokens out of the text; default true (a stream should not show `</s>`) */
  skipSpecialTokens?: boolean;
  /**
   * ids that come before the stream (the prompt): the last few seed the window so the first
   * generated piece gets its leading space (`▁Paris` after "The capital of France is" is
   * " Paris"); they are never released
   */
  context?: readonly number[];
}

/** Ids of the context kept in the window: enough for a piece's spacing and a split character. */
const CONTEXT_TOKENS = 4;

/**
 * Turns ids into text as they arrive.
 *
 *     const stream = tokenizer.streamDecoder();
 *     for (const id of [28705, 243, 162, 169, 156]) out += stream.push(id);  // Mistral's "🦙": '', '', '', '', '🦙'
 *     out += stream.flush();
 */
export class TextStreamDecoder {
  private readonly ids: number[] = [];
  private prefixOffset = 0; // window start
  private readOffset = 0; // ids before it have been released
  private readonly skipSpecialTokens: boolean;

  constructor(
    private readonly tokenizer: Tokenizer,
    options: StreamDecoderOptions = {},
  ) {
    this.skipSpecialTokens = options.skipSpecialTokens ?? true;
    const context = (options.context ?? []).slice(-CONTEXT_TOKENS);
    this.ids.push(...context);
    this.readOffset = this.ids.length;
  }

  /** Adds one id; returns the text it completes ('' while a character or piece is unfinished). */
  push(id: number): string {
    this.ids.push(id);
    const before = this.decode(this.prefixOffset, this.readOffset);
    const after = this.decode(this.prefixOffset, this.ids.length);
    if (after.length > before.length && !after.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return after.slice(before.length);
    }
    return '';
  }

  /** The text still held back (e.g. an unfinished character at the end: U+FFFD); the stream starts over from here. */
  flush(): string {
    const before = this.decode(this.prefixOffset, this.readOffset);
    const after = this.decode(this.prefixOffset, this.ids.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return after.length > before.length ? after.slice(before.length) : '';
  }

  private decode(from: number, to: number): string {
    // ids the model may produce beyond the tokenizer's vocabulary (padded embeddings) have no text
    const ids = this.ids.slice(from, to).filter((id) => id < this.tokenizer.vocabSize);
    return this.tokenizer.decode(ids, { skipSpecialTokens: this.skipSpecialTokens });
  }
}
