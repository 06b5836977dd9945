// Stop strings over streamed text (OpenAI's `stop`): generation ends where any of them first
// appears, and neither it nor anything after it is released. Text arrives in pieces that may
// split a stop string, so the tail that could still begin one is held back until the next
// piece settles it.

/**
 * Releases streamed text up to the first stop string.
 *
 *     const stops = new StopStrings(['\n\n', 'END']);
 *     stops.push('Hello EN');   // { text: 'Hello ', stopped: false }  ('EN' may begin 'END')
 *     stops.push('D of it');    // { text: '', stopped: true }
 */
export class StopStrings {
  private held = '';
  private stopped = false;

  constructor(private readonly stops: readonly string[]) {
    if (stops.some((s) => typeof s !== 'string' || s.length === 0)) throw new RangeError('stop strings must be non-empty strings');
  }

  /** true once a stop string has appeared */
  get done(): boolean {
    return this.stopped;
  }

  /** Adds a piece of text; returns what may be released now, and whether a stop string has appeared. */
  push(piece: string): { text: string; stopped: boolean } {
    if (this.stopped) return { text: '', stopped: true };
    const text = this.held + piece;
    let first = -1;
    for (const stop of this.stops) {
      const at = text.indexOf(stop);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    if (first >= 0) {
      this.stopped = true;
      this.held = '';
      return { text: text.slice(0, first), stopped: true };
    }
    const keep = this.partialStopLength(text);
    this.held = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep), stopped: false };
  }

  /** The text held back (generation ended without completing a stop string). */
  flush(): string {
    const text = this.stopped ? '' : this.held;
    this.held = '';
    return text;
  }

  /** The length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private partialStopLength(text: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > longest; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}
