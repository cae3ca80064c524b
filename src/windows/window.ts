import { TallyConfigError, TallyValidationError } from '../errors/index.js';

/**
 * Tumbling-window arithmetic. Everything here except `parseWindowSize` sits on the per-event hot
 * path: UTC is pure arithmetic, other zones read a memoized offset (one range check in the common
 * case) and only call `Intl` when a timestamp leaves the cached range.
 */

/** A tumbling window size in a time zone. Build it with {@link parseWindowSize}. */
export interface WindowSpec {
  /** Canonical size label: `MINUTE`, `HOUR`, `DAY` or `<n>s|m|h` (e.g. `30s`, `5m`, `6h`). */
  readonly label: string;
  /** `day`: local midnight to next local midnight. `fixed`: a sub-day size, see {@link windowOf}. */
  readonly kind: 'fixed' | 'day';
  /** Nominal size; a `day` window or one cut by an offset change can be shorter or longer. */
  readonly sizeMs: number;
  /** IANA zone the windows are aligned in (`UTC` for every UTC alias). */
  readonly timeZone: string;
}

/** A half-open interval [start, end) of epoch milliseconds. */
export interface WindowBounds {
  readonly start: number;
  readonly end: number;
}

const SECOND_MS = 1_000;
const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/**
 * Parses `MINUTE`, `HOUR`, `DAY` (any case) or `<n>s|m|h|d` (lower-case unit; `1d`, `24h`, `1440m`
 * all mean DAY). Sub-day sizes must be at least 1s and divide 24h exactly, so windows tile each day.
 * Throws TallyConfigError naming `field` (or `timeZone`) and the bad value.
 */
export function parseWindowSize(input: string, timeZone = 'UTC', field = 'windowSize'): WindowSpec {
  const sizeMs = parseSizeMs(input, field);
  const zone = normalizeTimeZone(timeZone);
  if (sizeMs === DAY_MS) return Object.freeze({ label: 'DAY', kind: 'day', sizeMs, timeZone: zone });
  return Object.freeze({ label: sizeLabel(sizeMs), kind: 'fixed', sizeMs, timeZone: zone });
}

const UNIT_MS: Readonly<Record<string, number>> = { s: SECOND_MS, m: MINUTE_MS, h: HOUR_MS, d: DAY_MS };
const DURATION = /^([0-9]{1,9})([smhd])$/;

function parseSizeMs(input: unknown, field: string): number {
  if (typeof input !== 'string') {
    throw new TallyConfigError(
      field,
      `expected a window size string such as "5m" or "HOUR", got ${typeof input}`,
    );
  }
  const text = input.trim();
  switch (text.toUpperCase()) {
    case 'MINUTE':
      return MINUTE_MS;
    case 'HOUR':
      return HOUR_MS;
    case 'DAY':
      return DAY_MS;
  }
  const bad = `invalid window size ${JSON.stringify(input)}`;
  const match = DURATION.exec(text);
  const unitMs = match?.[2] === undefined ? undefined : UNIT_MS[match[2]];
  if (match === null || unitMs === undefined) {
    throw new TallyConfigError(
      field,
      `${bad}: expected MINUTE, HOUR, DAY or <n>s|m|h|d (e.g. 30s, 5m, 1h, 1d)`,
    );
  }
  const ms = Number(match[1]) * unitMs;
  if (ms < SECOND_MS) throw new TallyConfigError(field, `${bad}: must be at least 1s`);
  if (ms > DAY_MS) throw new TallyConfigError(field, `${bad}: windows longer than one day are not supported`);
  if (DAY_MS % ms !== 0) {
    throw new TallyConfigError(field, `${bad}: must divide 24h exactly so windows tile each day`);
  }
  return ms;
}

function sizeLabel(ms: number): string {
  if (ms === MINUTE_MS) return 'MINUTE';
  if (ms === HOUR_MS) return 'HOUR';
  if (ms % HOUR_MS === 0) return `${ms / HOUR_MS}h`;
  if (ms % MINUTE_MS === 0) return `${ms / MINUTE_MS}m`;
  return `${ms / SECOND_MS}s`;
}

/**
 * Validates an IANA zone. Every UTC alias (`utc`, `Etc/UTC`, `GMT`...) becomes `UTC` so it takes the
 * arithmetic fast path. Other names keep the caller's spelling unless ICU's canonical name differs
 * only in case (ICU maps some current names to legacy ones, e.g. Asia/Kolkata to Asia/Calcutta, and
 * we do not want to surprise the user with that).
 */
function normalizeTimeZone(timeZone: unknown): string {
  if (typeof timeZone !== 'string' || timeZone === '') {
    throw new TallyConfigError(
      'timeZone',
      `expected an IANA time zone name, got ${JSON.stringify(timeZone)}`,
    );
  }
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone }).resolvedOptions().timeZone;
  } catch (err) {
    throw new TallyConfigError('timeZone', `unknown IANA time zone ${JSON.stringify(timeZone)}`, {
      cause: err,
    });
  }
  if (resolved === 'UTC') return 'UTC';
  return resolved.toLowerCase() === timeZone.toLowerCase() ? resolved : timeZone;
}

/**
 * The window containing `tMs` (an integer epoch ms): start <= tMs < end.
 *
 * Alignment rules, chosen so that windows always tile the timeline (windowOf(end).start === end,
 * windowOf(start).start === start, no gaps, no overlaps) in every zone:
 *
 * - `day`: from the first instant the local clock reads >= 00:00 of a date to the first instant it
 *   reads >= 00:00 of the next date. A DST day is 23 h or 25 h (23.5/24.5 h on Lord Howe); a
 *   repeated hour stays inside its day; where midnight is skipped (e.g. America/Havana) the day
 *   starts at the transition.
 * - `fixed` (sub-day): local wall-clock multiples of the size, i.e. floor(t + offset) - offset,
 *   computed with the offset in force at t, then cut at UTC-offset transitions: a window never spans
 *   an offset change, so the window straddling one ends at the transition and the next one starts
 *   there (it may be shorter than sizeMs, e.g. 30 min for a 1h window on Lord Howe). No window is
 *   ever longer than sizeMs, and a repeated hour yields two sets of windows rather than one window
 *   twice as long. Where the offset change is a multiple of the size (1 h DST, hourly windows) no
 *   window is cut at all.
 *
 * Outside UTC, a timestamp that is not in years 1..9999 (or NaN) throws TallyValidationError
 * `timestamp-out-of-range`; events should be validated before they get here.
 */
export function windowOf(spec: WindowSpec, tMs: number): WindowBounds {
  const size = spec.sizeMs;
  if (spec.timeZone === 'UTC') {
    const start = alignDown(tMs, size);
    return { start, end: start + size };
  }
  const zone = zoneFor(spec.timeZone);
  if (spec.kind === 'day') zone.dayWindow(tMs);
  else zone.fixedWindow(tMs, size);
  return { start: zone.outStart, end: zone.outEnd };
}

/** Like {@link windowOf} but returns only the start, without allocating. */
export function windowStartOf(spec: WindowSpec, tMs: number): number {
  const size = spec.sizeMs;
  if (spec.timeZone === 'UTC') return alignDown(tMs, size);
  const zone = zoneFor(spec.timeZone);
  if (spec.kind === 'day') zone.dayWindow(tMs);
  else zone.fixedWindow(tMs, size);
  return zone.outStart;
}

/**
 * The windows intersecting [fromMs, toMs), in order; the first may start before fromMs and the last
 * may end after toMs. Lazy, so a long range at a small size costs only what the caller consumes.
 */
export function* windowsBetween(
  spec: WindowSpec,
  fromMs: number,
  toMs: number,
): Generator<WindowBounds, void> {
  if (!(fromMs < toMs)) return;
  let w = windowOf(spec, fromMs);
  while (w.start < toMs) {
    yield w;
    w = windowOf(spec, w.end);
  }
}

/** `2026-11-26T10:00:00.000Z`. */
export function formatIsoUtc(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * The largest multiple of `size` <= x. floor(x / size) is exact for integer |x| < 2^53 (a quotient
 * just below an integer k is at least 1/size below it, more than half an ulp of k), and is 2x faster
 * than `%` on doubles (fmod). The guard covers a fractional x within rounding distance of a boundary.
 */
function alignDown(x: number, size: number): number {
  const start = Math.floor(x / size) * size;
  return start > x ? start - size : start;
}

const zones = new Map<string, ZoneOffsets>();
// Fields of a const object rather than module-level `let`s: measurably cheaper to read on the hot path.
const lastZone: { name: string; zone: ZoneOffsets | undefined } = { name: '', zone: undefined };

function zoneFor(name: string): ZoneOffsets {
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
class ZoneOffsets {
  /** Result of the last fixedWindow/dayWindow call (out-parameters: the hot path allocates nothing). */
  outStart = 0;
  outEnd = 0;
  private readonly dtf: Intl.DateTimeFormat;
  private readonly chunks = new Map<number, Chunk>();
  private readonly runsByDay = new Map<number, Run>();
  private readonly daysByDate = new Map<number, WindowBounds>();
  private runStart = 0;
  private runEnd = 0;
  private runOffset = 0;
  private runStartIsTransition = false;
  private runEndIsTransition = false;
  private dayStart = 0;
  private dayEnd = 0;

  constructor(timeZone: string) {
    this.dtf = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
  }

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
    const whole = Math.floor(t / SECOND_MS) * SECOND_MS;
    let year = 0;
    let month = 0;
    let day = 0;
    let hour = 0;
    let minute = 0;
    let second = 0;
    for (const part of this.dtf.formatToParts(whole)) {
      if (part.type === 'year') year = Number(part.value);
      else if (part.type === 'month') month = Number(part.value);
      else if (part.type === 'day') day = Number(part.value);
      else if (part.type === 'hour') hour = Number(part.value);
      else if (part.type === 'minute') minute = Number(part.value);
      else if (part.type === 'second') second = Number(part.value);
    }
    const local = new Date(0);
    local.setUTCFullYear(year, month - 1, day);
    local.setUTCHours(hour, minute, second, 0);
    return local.getTime() - whole;
  }
}
