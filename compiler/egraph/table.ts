// One function's rows: the storage every constructor, function and relation shares. Rows
// are append-only numeric tuples (arguments then output) stamped with the time they were
// written, so "rows new since time t" is a suffix; a changed row is killed and appended
// anew. A hash index maps argument tuples to their live row, and per-column indexes
// (value → chain of rows) serve joins and rebuilding.
import type { SortName } from './syntax';

/** What a function is: a constructor makes e-nodes, a function maps to values, a relation holds facts. */
export type FunctionKind = 'constructor' | 'function' | 'relation';

const scratchF64 = new Float64Array(1);
const scratchI32 = new Int32Array(scratchF64.buffer);

/** A 32-bit hash of a stored number; equal numbers (0 and -0, every NaN) hash alike. */
export function hashNumber(v: number): number {
  if ((v | 0) === v) return v | 0;
  if (v !== v) return 0x7ff80000;
  scratchF64[0] = v;
  return (scratchI32[0]! * 31) ^ scratchI32[1]!;
}

function mix(h: number, v: number): number {
  h = Math.imul(h ^ hashNumber(v), 0x9e3779b1);
  return h ^ (h >>> 15);
}

/**
 * A column's index: value → the rows holding it, as a chain through `next` (newest row
 * first), so adding a row allocates nothing. Chains may hold dead rows until the table
 * compacts. `count` is the chain's length, dead rows included (a size estimate for joins).
 */
export class ColumnIndex {
  /** next[row]: the previous row in the same chain, or -1 */
  next: Int32Array;
  private keys: Float64Array;
  private heads: Int32Array;
  private counts: Int32Array;
  /** 0 empty, 1 in use, 2 deleted */
  private state: Uint8Array;
  private used = 0;

  constructor(rowCapacity: number) {
    this.next = new Int32Array(rowCapacity);
    this.keys = new Float64Array(16);
    this.heads = new Int32Array(16);
    this.counts = new Int32Array(16);
    this.state = new Uint8Array(16);
  }

  /** The newest row holding `value`, or -1. */
  head(value: number): number {
    const s = this.slot(value);
    return s < 0 ? -1 : this.heads[s]!;
  }

  /** How many rows (dead ones included) hold `value`. */
  count(value: number): number {
    const s = this.slot(value);
    return s < 0 ? 0 : this.counts[s]!;
  }

  add(value: number, row: number): void {
    if (row >= this.next.length) {
      const next = new Int32Array(Math.max(16, row * 2));
      next.set(this.next);
      this.next = next;
    }
    const s = this.slot(value);
    if (s >= 0) {
      this.next[row] = this.heads[s]!;
      this.heads[s] = row;
      this.counts[s]!++;
      return;
    }
    if ((this.used + 1) * 2 > this.state.length) this.resize();
    const mask = this.state.length - 1;
    let i = (hashNumber(value) * 0x9e3779b1) & mask;
    while (this.state[i] === 1) i = (i + 1) & mask;
    if (this.state[i] === 0) this.used++;
    this.state[i] = 1;
    this.keys[i] = value;
    this.heads[i] = row;
    this.counts[i] = 1;
    this.next[row] = -1;
  }

  /** Forgets `value`'s chain. */
  delete(value: number): void {
    const s = this.slot(value);
    if (s >= 0) this.state[s] = 2;
  }

  private slot(value: number): number {
    const state = this.state;
    const keys = this.keys;
    const mask = state.length - 1;
    for (let i = (hashNumber(value) * 0x9e3779b1) & mask; ; i = (i + 1) & mask) {
      const st = state[i]!;
      if (st === 0) return -1;
      if (st === 1) {
        const k = keys[i]!;
        if (k === value || (k !== k && value !== value)) return i;
      }
    }
  }

  private resize(): void {
    const { keys, heads, counts, state } = this;
    let live = 0;
    for (let i = 0; i < state.length; i++) if (state[i] === 1) live++;
    let cap = 16;
    while (cap < (live + 1) * 4) cap *= 2;
    this.keys = new Float64Array(cap);
    this.heads = new Int32Array(cap);
    this.counts = new Int32Array(cap);
    this.state = new Uint8Array(cap);
    this.used = live;
    const mask = cap - 1;
    for (let j = 0; j < state.length; j++) {
      if (state[j] !== 1) continue;
      let i = (hashNumber(keys[j]!) * 0x9e3779b1) & mask;
      while (this.state[i] !== 0) i = (i + 1) & mask;
      this.state[i] = 1;
      this.keys[i] = keys[j]!;
      this.heads[i] = heads[j]!;
      this.counts[i] = counts[j]!;
    }
  }
}

/**
 * A function's table. Values are stored encoded as numbers (see `EGraph.encode`): e-class
 * ids, i64/f64 as themselves, strings as intern ids, bools as 0/1.
 *
 * Rows never change in place: `kill` marks one dead, `append` adds one at the end with the
 * current timestamp. Timestamps therefore never decrease along the rows, which is what
 * lets semi-naive matching treat "new since t" as the row range `[firstRowSince(t), end)`.
 */
export class Table {
  /** number of argument columns; the output is column `arity` */
  readonly arity: number;
  readonly stride: number;
  /** columns holding e-class ids (arguments of a user sort, and the output if it is one) */
  readonly classColumns: readonly number[];
  readonly outputIsClass: boolean;

  data: Float64Array;
  stamps: Int32Array;
  live: Uint8Array;
  /** rows appended so far, live or dead */
  rowCount = 0;
  liveCount = 0;

  private slots: Int32Array;
  private slotsUsed = 0;
  private readonly columnIndexes: (ColumnIndex | undefined)[];

  constructor(
    readonly name: string,
    readonly kind: FunctionKind,
    readonly argSorts: readonly SortName[],
    readonly outputSort: SortName,
    isClassSort: (sort: SortName) => boolean,
    /** extraction cost of one e-node (constructors) */
    readonly cost: number = 1,
  ) {
    this.arity = argSorts.length;
    this.stride = this.arity + 1;
    const columns = [...argSorts, outputSort];
    this.classColumns = columns.flatMap((s, i) => (isClassSort(s) ? [i] : []));
    this.outputIsClass = isClassSort(outputSort);
    this.data = new Float64Array(16 * this.stride);
    this.stamps = new Int32Array(16);
    this.live = new Uint8Array(16);
    this.slots = new Int32Array(32);
    this.columnIndexes = columns.map(() => undefined);
    // rebuilding looks rows up by class id, so those indexes always exist
    for (const c of this.classColumns) this.columnIndexes[c] = new ColumnIndex(16);
  }

  /** The value in `column` of `row`. */
  get(row: number, column: number): number {
    return this.data[row * this.stride + column]!;
  }

  output(row: number): number {
    return this.data[row * this.stride + this.arity]!;
  }

  /** The live row whose arguments equal `key[offset .. offset+arity)`, or -1. */
  findRow(key: ArrayLike<number>, offset = 0): number {
    const n = this.arity;
    let h = 0x2545f491;
    for (let i = 0; i < n; i++) h = mix(h, key[offset + i]!);
    const slots = this.slots;
    const mask = slots.length - 1;
    const data = this.data;
    const stride = this.stride;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const s = slots[i]!;
      if (s === 0) return -1;
      if (s > 0) {
        const base = (s - 1) * stride;
        let same = true;
        for (let c = 0; c < n; c++) {
          const a = data[base + c]!;
          const b = key[offset + c]!;
          if (a !== b && (a === a || b === b)) {
            same = false;
            break;
          }
        }
        if (same) return s - 1;
      }
    }
  }

  /** Appends a row (arguments then output, from `key`) written at `stamp`; the caller made sure no live row has these arguments. */
  append(key: ArrayLike<number>, stamp: number): number {
    const row = this.rowCount;
    const stride = this.stride;
    if (row === this.stamps.length) this.grow(row * 2);
    const base = row * stride;
    for (let c = 0; c < stride; c++) this.data[base + c] = key[c]!;
    this.stamps[row] = stamp;
    this.live[row] = 1;
    this.rowCount++;
    this.liveCount++;
    this.indexRow(row);
    for (let c = 0; c < stride; c++) this.columnIndexes[c]?.add(this.data[base + c]!, row);
    return row;
  }

  /** Marks a row dead and drops it from the argument index (column indexes drop it lazily). */
  kill(row: number): void {
    if (this.live[row] === 0) return;
    this.live[row] = 0;
    this.liveCount--;
    const h = this.rowHash(row);
    const slots = this.slots;
    const mask = slots.length - 1;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const s = slots[i]!;
      if (s === 0) throw new Error(`internal: row ${row} of ${this.name} missing from its index`);
      if (s === row + 1) {
        slots[i] = -1;
        return;
      }
    }
  }

  /**
   * The index of `column` (value → rows, newest first, dead rows included). Built on first
   * use for a column, then kept up to date by `append`.
   */
  columnIndex(column: number): ColumnIndex {
    let idx = this.columnIndexes[column];
    if (idx === undefined) {
      idx = new ColumnIndex(this.stamps.length);
      for (let r = 0; r < this.rowCount; r++) if (this.live[r] !== 0) idx.add(this.data[r * this.stride + column]!, r);
      this.columnIndexes[column] = idx;
    }
    return idx;
  }

  /** Forgets the column-index entry of a value no row will be written with again (a merged-away class id). */
  dropIndexEntry(column: number, value: number): void {
    this.columnIndexes[column]?.delete(value);
  }

  /** The first row written at or after `stamp` (rows are in stamp order). */
  firstRowSince(stamp: number): number {
    let lo = 0;
    let hi = this.rowCount;
    const stamps = this.stamps;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (stamps[mid]! < stamp) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Whether dead rows take enough room to be worth `compact`. */
  get wasteful(): boolean {
    const dead = this.rowCount - this.liveCount;
    return dead > 1024 && dead > this.liveCount;
  }

  /** Drops dead rows, keeping the live ones in order (so stamps stay sorted), and rebuilds the indexes. */
  compact(): void {
    const stride = this.stride;
    let w = 0;
    for (let r = 0; r < this.rowCount; r++) {
      if (this.live[r] === 0) continue;
      if (w !== r) {
        this.data.copyWithin(w * stride, r * stride, (r + 1) * stride);
        this.stamps[w] = this.stamps[r]!;
        this.live[w] = 1;
      }
      w++;
    }
    this.live.fill(0, w, this.rowCount);
    this.rowCount = w;
    this.slots = new Int32Array(this.slotCapacityFor(w));
    this.slotsUsed = 0;
    for (let r = 0; r < w; r++) this.indexRow(r);
    for (let c = 0; c < stride; c++) {
      if (this.columnIndexes[c] === undefined) continue;
      const idx = new ColumnIndex(this.stamps.length);
      for (let r = 0; r < w; r++) idx.add(this.data[r * stride + c]!, r);
      this.columnIndexes[c] = idx;
    }
  }

  private slotCapacityFor(rows: number): number {
    let cap = 32;
    while (cap < rows * 2 + 2) cap *= 2;
    return cap;
  }

  /** The hash of a row's argument columns (the key the index is built on). */
  private rowHash(row: number): number {
    const base = row * this.stride;
    let h = 0x2545f491;
    for (let i = 0; i < this.arity; i++) h = mix(h, this.data[base + i]!);
    return h;
  }

  private indexRow(row: number): void {
    if ((this.slotsUsed + 1) * 2 > this.slots.length) this.rehash();
    const slots = this.slots;
    const mask = slots.length - 1;
    let i = this.rowHash(row) & mask;
    while (slots[i] !== 0) i = (i + 1) & mask;
    slots[i] = row + 1;
    this.slotsUsed++;
  }

  private rehash(): void {
    const old = this.slots;
    this.slots = new Int32Array(this.slotCapacityFor(this.liveCount + 1));
    this.slotsUsed = 0;
    for (let i = 0; i < old.length; i++) {
      const s = old[i]!;
      if (s > 0) this.indexRow(s - 1);
    }
  }

  private grow(rows: number): void {
    const data = new Float64Array(rows * this.stride);
    data.set(this.data);
    this.data = data;
    const stamps = new Int32Array(rows);
    stamps.set(this.stamps);
    this.stamps = stamps;
    const live = new Uint8Array(rows);
    live.set(this.live);
    this.live = live;
  }
}
