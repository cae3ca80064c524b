import { TallyValidationError } from '../errors/index.js';
import { alignDown, DAY_MS, HOUR_MS, SECOND_MS } from './units.js';
import { offsetAt } from './zone.js';

/** A half-open interval [start, end) of epoch ms. */
interface Bounds {
  readonly start: number;
  readonly end: number;
}

const zones = new Map<string, ZoneOffsets>();
// Fields of a const object rather than module-level `let`s: measurably cheaper to read on the hot path.
const lastZone: { name: string; zone: ZoneOffsets | undefined } = { name: '', zone: undefined };

/** The memoized offset engine of a zone (one per zone name, shared). */
export function zoneFor(name: string): ZoneOffsets {
  if (name === lastZone.name && lastZone.zone !== undefined) return lastZone.zone;
  let zone = zones.get(name);
  if (zone === undefined) {
    zone = new ZoneOffsets(name);
    zones.set(name, zone);
  }
  lastZone.name = name;
  lastZone.zone = zone;
  return zone;
}

/** Offsets for one UTC day: `offset0` at its start, then `offsets[i]` from `transitions[i]` on. */
interface Chunk {
  readonly offset0: number;
  readonly transitions: readonly number[];
  readonly offsets: readonly number[];
}

/** A constant-offset range; an end that is not a transition is only the limit of what was looked up. */
interface Run {
  readonly start: number;
  readonly end: number;
  readonly offset: number;
  readonly startIsTransition: boolean;
  readonly endIsTransition: boolean;
}

/** Offset samples per UTC day; two transitions closer than this that cancel out would be missed. */
const SAMPLE_MS = 6 * HOUR_MS;
/** A run (constant-offset range) reaches back at least this far from the timestamp it was built for. */
const RUN_BACK_MS = 2 * DAY_MS;
/** ... and forward this far, so a steady stream of events rebuilds it about once a week. */
const RUN_AHEAD_MS = 7 * DAY_MS;
/** Bound the memo maps if timestamps are scattered over centuries; refilling is cheap. */
const MAX_CHUNKS = 20_000;
const MAX_MEMO = 4_096;
/** Intl's year field is unreliable outside years 1..9999 (eras, two-digit Date.UTC years). */
const MIN_SUPPORTED_MS = -62_135_596_800_000 + 10 * DAY_MS;
const MAX_SUPPORTED_MS = 253_402_300_799_999 - 10 * DAY_MS;

/**
 * Memoized UTC offsets of one zone. Offsets come from Intl, sampled per UTC day ("chunks"), with
 * transitions located to the second by bisection (tzdata transitions fall on whole seconds). On top
 * of that sits a "run": a range of constant offset around the last timestamp, whose ends are either
 * real transitions (`*IsTransition`) or just the limit of what was looked up. The hot path is a
 * range check on the run. Out-of-order timestamps (late events, queries) hit two small memos: runs
 * by UTC day (for days without a transition) and day windows by local date.
 */
export class ZoneOffsets {
  /** Result of the last fixedWindow/dayWindow call (out-parameters: the hot path allocates nothing). */
  outStart = 0;
  outEnd = 0;
  private readonly chunks = new Map<number, Chunk>();
  private readonly runsByDay = new Map<number, Run>();
  private readonly daysByDate = new Map<number, Bounds>();
  private runStart = 0;
  private runEnd = 0;
  private runOffset = 0;
  private runStartIsTransition = false;
  private runEndIsTransition = false;
  private dayStart = 0;
  private dayEnd = 0;

  constructor(private readonly timeZone: string) {}

  fixedWindow(t: number, size: number): void {
    if (!(t >= this.runStart && t < this.runEnd)) this.enterRun(t);
    if (!this.tryFixed(t, size)) {
      // The window crosses a lookup limit of the run; a run built around t reaches >= 1 day past t.
      this.buildRun(t);
      this.tryFixed(t, size);
    }
  }

  private tryFixed(t: number, size: number): boolean {
    const offset = this.runOffset;
    let start = alignDown(t + offset, size) - offset;
    let end = start + size;
    if (start < this.runStart) {
      if (!this.runStartIsTransition) return false;
      start = this.runStart;
    }
    if (end > this.runEnd) {
      if (!this.runEndIsTransition) return false;
      end = this.runEnd;
    }
    this.outStart = start;
    this.outEnd = end;
    return true;
  }

  dayWindow(t: number): void {
    if (!(t >= this.dayStart && t < this.dayEnd)) {
      if (!(t >= this.runStart && t < this.runEnd)) this.enterRun(t);
      let day = Math.floor((t + this.runOffset) / DAY_MS);
      const memo = this.daysByDate.get(day);
      if (memo !== undefined && t >= memo.start && t < memo.end) {
        this.dayStart = this.outStart = memo.start;
        this.dayEnd = this.outEnd = memo.end;
        return;
      }
      // local(t) >= midnight(day), so start <= t by construction; end may be <= t only when t is
      // in a repeated hour that began after the next midnight, hence the loop.
      let start = this.firstInstantAtLocal(day * DAY_MS);
      let end = this.firstInstantAtLocal((day + 1) * DAY_MS);
      while (end <= t) {
        day += 1;
        start = end;
        end = this.firstInstantAtLocal((day + 1) * DAY_MS);
      }
      this.dayStart = start;
      this.dayEnd = end;
      if (this.daysByDate.size >= MAX_MEMO) this.daysByDate.clear();
      this.daysByDate.set(day, { start, end });
    }
    this.outStart = this.dayStart;
    this.outEnd = this.dayEnd;
  }

  /** min{u : u + offset(u) >= local}: the first instant the local clock reads `local` or later. */
  private firstInstantAtLocal(local: number): number {
    // Offsets are within +-1 day, so the answer lies in (local - 1 day, local + 1 day).
    const first = Math.floor(local / DAY_MS) - 2;
    let segStart = first * DAY_MS;
    let segOffset = this.chunk(first).offset0;
    for (let k = first; k <= first + 4; k++) {
      const c = this.chunk(k);
      for (let i = 0; i < c.transitions.length; i++) {
        const tr = c.transitions[i]!;
        if (tr > segStart) {
          const candidate = Math.max(segStart, local - segOffset);
          if (candidate < tr) return candidate;
        }
        segStart = tr;
        segOffset = c.offsets[i]!;
      }
    }
    return Math.max(segStart, local - segOffset);
  }

  /** Makes the hot run one containing t, from the per-day memo when possible. */
  private enterRun(t: number): void {
    const k = Math.floor(t / DAY_MS);
    const memo = this.runsByDay.get(k);
    if (memo !== undefined && t >= memo.start && t < memo.end) {
      this.runStart = memo.start;
      this.runEnd = memo.end;
      this.runOffset = memo.offset;
      this.runStartIsTransition = memo.startIsTransition;
      this.runEndIsTransition = memo.endIsTransition;
      return;
    }
    this.buildRun(t);
    // A run built around any t of a day without transitions covers that whole day and reaches >= 1 day
    // beyond every instant of it (back >= 2 days from t, ahead >= 7), so it serves the whole day.
    if (this.chunk(k).transitions.length === 0) {
      if (this.runsByDay.size >= MAX_MEMO) this.runsByDay.clear();
      this.runsByDay.set(k, {
        start: this.runStart,
        end: this.runEnd,
        offset: this.runOffset,
        startIsTransition: this.runStartIsTransition,
        endIsTransition: this.runEndIsTransition,
      });
    }
  }

  /** Rebuilds the run around t: back to the last transition <= t, ahead to the first one > t. */
  private buildRun(t: number): void {
    if (!(t >= MIN_SUPPORTED_MS && t <= MAX_SUPPORTED_MS)) {
      throw new TallyValidationError('timestamp-out-of-range', `timestamp ${t} is outside years 1..9999`);
    }
    const k = Math.floor(t / DAY_MS);
    const c = this.chunk(k);
    let i = c.transitions.length - 1;
    while (i >= 0 && c.transitions[i]! > t) i--;
    this.runOffset = i >= 0 ? c.offsets[i]! : c.offset0;

    if (i >= 0) {
      this.runStart = c.transitions[i]!;
      this.runStartIsTransition = true;
    } else {
      let j = k;
      let start = k * DAY_MS;
      let isTransition = false;
      while (start > t - RUN_BACK_MS) {
        j -= 1;
        const prev = this.chunk(j);
        const last = prev.transitions[prev.transitions.length - 1];
        if (last !== undefined) {
          start = last;
          isTransition = true;
          break;
        }
        start = j * DAY_MS;
      }
      this.runStart = start;
      this.runStartIsTransition = isTransition;
    }

    const next = c.transitions[i + 1];
    if (next !== undefined) {
      this.runEnd = next;
      this.runEndIsTransition = true;
    } else {
      let j = k;
      let end = (k + 1) * DAY_MS;
      let isTransition = false;
      while (end < t + RUN_AHEAD_MS) {
        j += 1;
        const first = this.chunk(j).transitions[0];
        if (first !== undefined) {
          end = first;
          isTransition = true;
          break;
        }
        end = (j + 1) * DAY_MS;
      }
      this.runEnd = end;
      this.runEndIsTransition = isTransition;
    }
  }

  private chunk(k: number): Chunk {
    let c = this.chunks.get(k);
    if (c === undefined) {
      c = this.computeChunk(k);
      if (this.chunks.size >= MAX_CHUNKS) this.chunks.clear();
      this.chunks.set(k, c);
    }
    return c;
  }

  /** Samples the offset every 6 h over [start - 1s, start + 1 day - 1s] and bisects each change. */
  private computeChunk(k: number): Chunk {
    const start = k * DAY_MS;
    const transitions: number[] = [];
    const offsets: number[] = [];
    let prevT = start - SECOND_MS;
    let prevOffset = this.rawOffset(prevT);
    const before = prevOffset;
    for (let at = start + SAMPLE_MS - SECOND_MS; at < start + DAY_MS; at += SAMPLE_MS) {
      const offset = this.rawOffset(at);
      if (offset !== prevOffset) {
        let lo = prevT;
        let hi = at;
        while (hi - lo > SECOND_MS) {
          const mid = lo + Math.floor((hi - lo) / (2 * SECOND_MS)) * SECOND_MS;
          if (this.rawOffset(mid) === prevOffset) lo = mid;
          else hi = mid;
        }
        transitions.push(hi);
        offsets.push(offset);
      }
      prevT = at;
      prevOffset = offset;
    }
    const offset0 = transitions[0] === start ? offsets[0]! : before;
    return { offset0, transitions, offsets };
  }

  /** Offset (local - UTC, ms) at t, straight from Intl. Slow; only called to fill chunks. */
  private rawOffset(t: number): number {
    return offsetAt(this.timeZone, t);
  }
}
