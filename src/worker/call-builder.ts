import type { DeadLetterReason } from '../events/index.js';
import type { Meter, MeterUpdate } from '../meters/index.js';

/**
 * Below this magnitude a sum of scaled values is an exact integer both as a JS number and as a Lua
 * number (both are doubles): a cell whose positive and negative parts each stay below it can be
 * summed here and have any subset of its events subtracted again in Lua, exactly.
 */
const EXACT = 2 ** 52;

/**
 * One (window, group) of one call: the events of the call that land in it, aggregated here so
 * applyBatch.lua writes it once, whatever the number of its events.
 */
interface Cell {
  /** 1-based position in the call's cell table (Lua arrays are 1-based). */
  readonly index: number;
  readonly window: number;
  readonly group: string;
  readonly code: string;
  count: number;
  /** SUM/AVG: sums of the positive and of the negative values, while both stay below EXACT. */
  positive: number;
  negative: number;
  exact: boolean;
  /** MIN/MAX: the extreme value; LATEST: the newest value (`sortKey` the newest key). */
  value: string;
  sortKey: string;
  /** UNIQUE_COUNT: distinct values and how many of the cell's events carry each. */
  values: Map<string, number> | undefined;
}

/** -1, 0 or 1: two canonical decimal integer strings compared exactly (as compareInt.lua does). */
function compareInt(a: string, b: string): number {
  const negA = a.startsWith('-');
  if (negA !== b.startsWith('-')) return negA ? -1 : 1;
  const r = a.length !== b.length ? (a.length < b.length ? -1 : 1) : a === b ? 0 : a < b ? -1 : 1;
  return negA ? -r : r;
}

/** What one event's update costs to send: a number when Lua can do exact arithmetic with it. */
function updateValue(u: MeterUpdate): number | string {
  switch (u.meter.code) {
    case 'C':
      return 0;
    case 'S':
    case 'A': {
      const n = Number(u.value);
      return Math.abs(n) < EXACT ? n : u.value;
    }
    default:
      return u.value;
  }
}

/**
 * Builds the argument of one applyBatch.lua call (see its header for the layout): the call's windows
 * and cells, each sent once and referred to by index, then its entries with their dead letters and
 * events. An event carries its time, where its bytes are, and per update its cell and its own value,
 * which Lua reads only when the event turns out a duplicate or late, or its cell must be replayed.
 */
export class CallBuilder {
  private readonly windows: (string | number)[] = [];
  private readonly windowIndex = new Map<Meter, Map<number, number>>();
  private readonly cells: Cell[] = [];
  private readonly cellIndex: Map<string, Cell>[] = [];
  private readonly entries: (string | number)[] = [];
  private readonly fingerprints: Buffer[] = [];
  private firstId = '';
  private lastId = '';
  private entryCount = 0;
  /** Where the open entry's header is in `entries`, and how many records it has so far. */
  private header = -1;
  private records = 0;
  /** The cells `newCells` found for the updates it was last asked about. */
  private found: { updates: readonly MeterUpdate[]; cells: (Cell | undefined)[] } | undefined;

  get isEmpty(): boolean {
    return this.entryCount === 0;
  }

  /** Records of the open entry so far. */
  get entryRecords(): number {
    return this.records;
  }

  /**
   * How many of `updates` land in cells this call does not have yet (each costs a cell write). The
   * cells found are kept for `addEvent` of the same updates, so each is looked up once.
   */
  newCells(updates: readonly MeterUpdate[]): number {
    let n = 0;
    const found: (Cell | undefined)[] = [];
    for (const u of updates) {
      const w = this.windowIndex.get(u.meter)?.get(u.windowStart);
      const cell = w === undefined ? undefined : this.cellIndex[w - 1]?.get(u.group);
      if (cell === undefined) n++;
      found.push(cell);
    }
    this.found = { updates, cells: found };
    return n;
  }

  /**
   * Opens an entry ('E': acknowledged by this call; set to 'P' by `continueLater`). `scope`: the one
   * meter the entry counts in (a replayed dead letter), else ''.
   */
  startEntry(id: string, epoch: string, scope = ''): void {
    this.closeEntry();
    if (this.entryCount === 0) this.firstId = id;
    this.lastId = id;
    this.entryCount++;
    this.header = this.entries.length;
    this.records = 0;
    this.entries.push('E', id, epoch, 0, scope);
  }

  /** Marks the open entry as continued in a later call (applied here, acknowledged there). */
  continueLater(): void {
    this.entries[this.header] = 'P';
  }

  /** An event rejected whole; `meter`: the meter the dead letter is for ('' for the event). */
  deadLetter(
    index: number,
    reason: DeadLetterReason,
    detail: string,
    payload: string,
    field: string,
    meter = '',
  ): void {
    this.entries.push('D', index, reason, detail, payload, field, meter);
    this.records++;
  }

  addEvent(
    fp: Buffer,
    timeMs: number,
    index: number,
    from: number,
    to: number,
    updates: MeterUpdate[],
    rejections: readonly { meter: string; reason: DeadLetterReason; detail: string }[] = [],
  ): void {
    this.fingerprints.push(fp);
    this.entries.push(timeMs, index, from, to, updates.length, rejections.length);
    const found = this.found?.updates === updates ? this.found.cells : undefined;
    this.found = undefined;
    for (let i = 0; i < updates.length; i++) {
      const u = updates[i] as MeterUpdate;
      const cell = found?.[i] ?? this.cellOf(u);
      cell.count++;
      const value = updateValue(u);
      switch (cell.code) {
        case 'S':
        case 'A':
          if (typeof value === 'number' && cell.exact) {
            if (value >= 0) cell.positive += value;
            else cell.negative += value;
            cell.exact = cell.positive < EXACT && -cell.negative < EXACT;
          } else cell.exact = false;
          break;
        case 'm':
        case 'M': {
          const c = cell.count === 1 ? 0 : compareInt(u.value, cell.value);
          if (cell.count === 1 || (cell.code === 'm' ? c < 0 : c > 0)) cell.value = u.value;
          break;
        }
        case 'L':
          if (cell.count === 1 || u.sortKey > cell.sortKey) {
            cell.value = u.value;
            cell.sortKey = u.sortKey;
          }
          break;
        case 'U': {
          const values = (cell.values ??= new Map());
          values.set(u.value, (values.get(u.value) ?? 0) + 1);
          break;
        }
      }
      this.entries.push(cell.index, value, cell.code === 'L' ? u.sortKey : 0);
    }
    for (const r of rejections) this.entries.push(r.meter, r.reason, r.detail);
    this.records++;
  }

  /** The call's records (one MessagePack array for applyBatch.lua) and its fingerprints. */
  build(): { records: (string | number)[]; fingerprints: Buffer } {
    this.closeEntry();
    const records: (string | number)[] = [this.windows.length / 4, ...this.windows, this.cells.length];
    for (const cell of this.cells) {
      records.push(cell.window, cell.group, cell.count);
      switch (cell.code) {
        case 'S':
        case 'A':
          // An inexact cell (b = 1) is written event by event.
          if (cell.exact) records.push(cell.positive + cell.negative, 0);
          else records.push(0, 1);
          break;
        case 'm':
        case 'M':
          records.push(cell.value, 0);
          break;
        case 'L':
          records.push(cell.value, cell.sortKey);
          break;
        case 'U': {
          const values = cell.values ?? new Map<string, number>();
          records.push(values.size, 0);
          for (const [value, n] of values) records.push(value, n);
          break;
        }
        default:
          records.push(0, 0);
      }
    }
    records.push(this.firstId, this.lastId, this.entryCount);
    for (const r of this.entries) records.push(r);
    return { records, fingerprints: Buffer.concat(this.fingerprints) };
  }

  private closeEntry(): void {
    if (this.header >= 0) this.entries[this.header + 3] = this.records;
  }

  private cellOf(u: MeterUpdate): Cell {
    let byStart = this.windowIndex.get(u.meter);
    if (byStart === undefined) {
      byStart = new Map();
      this.windowIndex.set(u.meter, byStart);
    }
    let w = byStart.get(u.windowStart);
    if (w === undefined) {
      this.windows.push(u.meter.slug, u.meter.code, String(u.windowStart), String(u.windowEnd));
      w = this.windows.length / 4;
      byStart.set(u.windowStart, w);
      this.cellIndex.push(new Map());
    }
    const cells = this.cellIndex[w - 1] as Map<string, Cell>;
    let cell = cells.get(u.group);
    if (cell === undefined) {
      cell = {
        index: this.cells.length + 1,
        window: w,
        group: u.group,
        code: u.meter.code,
        count: 0,
        positive: 0,
        negative: 0,
        exact: true,
        value: '',
        sortKey: '',
        values: undefined,
      };
      this.cells.push(cell);
      cells.set(u.group, cell);
    }
    return cell;
  }
}
