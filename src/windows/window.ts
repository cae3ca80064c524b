import { TallyConfigError } from '../errors/index.js';
import {
  alignDown,
  DAY_MS,
  HOUR_MS,
  MINUTE_MS,
  normalizeTimeZone,
  SECOND_MS,
  zoneFor,
} from '../time/index.js';

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
