import { TallyConfigError } from '../errors/index.js';
import { DAY_MS, HOUR_MS, MINUTE_MS, normalizeTimeZone, offsetAt, SECOND_MS } from '../time/index.js';

/**
 * Usage periods: DAY, WEEK, MONTH, YEAR or an ISO 8601 duration, counted from an anchor in an IANA
 * time zone. Period k starts at `anchor + k * interval`, computed on the local calendar for the date
 * part (years, months, weeks, days: so a MONTH period is a calendar month whatever its length, a DAY
 * is 23 or 25 hours across DST) and as exact elapsed time for the time part (PT6H is always 6 hours).
 *
 * - Month arithmetic is from the anchor, clamped to the month's last day: an anchor on the 31st gives
 *   Jan 31, Feb 28/29, Mar 31 (never drifting to the 28th).
 * - A local time that does not exist (DST gap) moves forward by the gap (02:30 on a spring-forward
 *   day becomes 03:30); one that exists twice (fall back) is the first of the two. This is Temporal's
 *   `disambiguation: 'compatible'`.
 */

const MIN_PERIOD_MS = MINUTE_MS;

/** The parsed interval: calendar part (applied to local dates) and exact time part. */
export interface PeriodInterval {
  readonly years: number;
  readonly months: number;
  /** Weeks are folded into days. */
  readonly days: number;
  readonly timeMs: number;
}

export interface UsagePeriod {
  /** Canonical ISO 8601 duration (`P1M`, `P1W`, `PT6H`). */
  readonly interval: string;
  readonly parts: PeriodInterval;
  /** Local date-time of the anchor in `timeZone`, canonical `YYYY-MM-DDTHH:mm:ss.sss`. */
  readonly anchor: string;
  readonly timeZone: string;
  /** Stable identity of the period definition (interval, anchor, zone). */
  readonly id: string;
}

export interface PeriodBounds {
  /** Index k: period 0 starts at the anchor. */
  readonly index: number;
  readonly start: number;
  readonly end: number;
}

const NAMED: Record<string, string> = { DAY: 'P1D', WEEK: 'P1W', MONTH: 'P1M', YEAR: 'P1Y' };
const ISO_DURATION =
  /^P(?:(\d{1,4})Y)?(?:(\d{1,5})M)?(?:(\d{1,5})W)?(?:(\d{1,6})D)?(?:T(?:(\d{1,7})H)?(?:(\d{1,9})M)?(?:(\d{1,10})S)?)?$/;
/** A Monday, the first of a month and of a year: a sensible anchor for every named interval. */
export const DEFAULT_ANCHOR = '2024-01-01T00:00:00.000';

export interface UsagePeriodInputLike {
  readonly interval: string;
  readonly anchor?: string | undefined;
  readonly timeZone?: string | undefined;
}

/** Parses and validates a usage period; errors name `field` and the bad value. */
export function parseUsagePeriod(input: UsagePeriodInputLike, field = 'usagePeriod'): UsagePeriod {
  const timeZone = normalizeTimeZone(input.timeZone ?? 'UTC', `${field}.timeZone`);
  const { canonical, parts } = parseInterval(input.interval, `${field}.interval`);
  const anchorLocal = parseAnchor(input.anchor ?? DEFAULT_ANCHOR, timeZone, `${field}.anchor`);
  const anchor = formatLocal(anchorLocal);
  return Object.freeze({
    interval: canonical,
    parts,
    anchor,
    timeZone,
    id: `${canonical}@${anchor}@${timeZone}`,
  });
}

function parseInterval(value: string, field: string): { canonical: string; parts: PeriodInterval } {
  if (typeof value !== 'string')
    throw new TallyConfigError(
      field,
      `expected DAY, WEEK, MONTH, YEAR or an ISO 8601 duration, got ${typeof value}`,
    );
  const text = NAMED[value.trim().toUpperCase()] ?? value.trim().toUpperCase();
  const m = ISO_DURATION.exec(text);
  const bad = (why: string) => new TallyConfigError(field, `${why}, got ${JSON.stringify(value)}`);
  if (!m || text === 'P' || text.endsWith('T'))
    throw bad('expected DAY, WEEK, MONTH, YEAR or an ISO 8601 duration such as P1M, P2W or PT6H');
  const n = (i: number) => Number(m[i] ?? 0);
  const parts: PeriodInterval = {
    years: n(1),
    months: n(2),
    days: n(3) * 7 + n(4),
    timeMs: n(5) * HOUR_MS + n(6) * MINUTE_MS + n(7) * SECOND_MS,
  };
  if (approxMs(parts) < MIN_PERIOD_MS) throw bad('a usage period must be at least one minute');
  return { canonical: text, parts };
}

function approxMs(p: PeriodInterval): number {
  return p.years * 365.2425 * DAY_MS + p.months * 30.436875 * DAY_MS + p.days * DAY_MS + p.timeMs;
}

/** Local date-time fields (month 1-12). */
interface LocalTime {
  y: number;
  mo: number;
  d: number;
  h: number;
  mi: number;
  s: number;
  ms: number;
}

const ANCHOR =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?)?(Z|[+-]\d{2}:\d{2})?$/;

function parseAnchor(value: string, zone: string, field: string): LocalTime {
  const m = typeof value === 'string' ? ANCHOR.exec(value.trim()) : null;
  if (!m) {
    throw new TallyConfigError(
      field,
      `expected a date-time such as 2024-01-01 or 2024-01-15T09:00 (optionally with Z or an offset), got ${JSON.stringify(value)}`,
    );
  }
  const local: LocalTime = {
    y: Number(m[1]),
    mo: Number(m[2]),
    d: Number(m[3]),
    h: Number(m[4] ?? 0),
    mi: Number(m[5] ?? 0),
    s: Number(m[6] ?? 0),
    ms: Number((m[7] ?? '0').padEnd(3, '0')),
  };
  if (
    local.mo < 1 ||
    local.mo > 12 ||
    local.d < 1 ||
    local.d > daysInMonth(local.y, local.mo) ||
    local.h > 23 ||
    local.mi > 59 ||
    local.s > 59
  ) {
    throw new TallyConfigError(field, `not a valid date-time: ${JSON.stringify(value)}`);
  }
  const offset = m[8];
  if (offset === undefined) return local;
  // An instant: take its local reading in the period's zone.
  let t = localMs(local);
  if (offset !== 'Z') {
    const sign = offset.startsWith('-') ? -1 : 1;
    t -= sign * (Number(offset.slice(1, 3)) * HOUR_MS + Number(offset.slice(4, 6)) * MINUTE_MS);
  }
  return fromLocalMs(t + offsetAt(zone, t));
}

function localMs(l: LocalTime): number {
  const d = new Date(0);
  d.setUTCFullYear(l.y, l.mo - 1, l.d);
  d.setUTCHours(l.h, l.mi, l.s, l.ms);
  return d.getTime();
}

function fromLocalMs(t: number): LocalTime {
  const d = new Date(t);
  return {
    y: d.getUTCFullYear(),
    mo: d.getUTCMonth() + 1,
    d: d.getUTCDate(),
    h: d.getUTCHours(),
    mi: d.getUTCMinutes(),
    s: d.getUTCSeconds(),
    ms: d.getUTCMilliseconds(),
  };
}

function formatLocal(l: LocalTime): string {
  return new Date(localMs(l)).toISOString().slice(0, 23);
}

function daysInMonth(y: number, mo: number): number {
  const d = new Date(0);
  d.setUTCFullYear(y, mo, 0);
  return d.getUTCDate();
}

/**
 * The instant at which the clock of `zone` reads local time `local` (epoch ms of the local reading
 * taken as UTC). Skipped times move forward by the gap; repeated times take the earlier instant.
 */
export function instantOfLocal(zone: string, local: number): number {
  if (zone === 'UTC') return local;
  const before = offsetAt(zone, local - DAY_MS);
  const after = offsetAt(zone, local + DAY_MS);
  let best: number | undefined;
  for (const o of before === after ? [before] : [before, after]) {
    const t = local - o;
    if (offsetAt(zone, t) === o && (best === undefined || t < best)) best = t;
  }
  // In a gap, the offset before the transition puts the reading that far past it.
  return best ?? local - before;
}

/** Start of period k. */
export function periodStart(period: UsagePeriod, k: number): number {
  const a = parseLocal(period.anchor);
  const p = period.parts;
  const totalMonths = a.y * 12 + (a.mo - 1) + k * (p.years * 12 + p.months);
  const y = Math.floor(totalMonths / 12);
  const mo = totalMonths - y * 12 + 1;
  const d = Math.min(a.d, daysInMonth(y, mo));
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d + k * p.days);
  date.setUTCHours(a.h, a.mi, a.s, a.ms);
  return instantOfLocal(period.timeZone, date.getTime()) + k * p.timeMs;
}

const anchors = new Map<string, LocalTime>();
function parseLocal(anchor: string): LocalTime {
  let l = anchors.get(anchor);
  if (l === undefined) {
    l = fromLocalMs(Date.parse(`${anchor}Z`));
    anchors.set(anchor, l);
  }
  return l;
}

// Memo of period bounds by (period id, index): period arithmetic runs for every check and rollup.
const memo = new Map<string, number>();
const MAX_MEMO = 50_000;

function startOf(period: UsagePeriod, k: number): number {
  const key = `${period.id}#${k}`;
  let v = memo.get(key);
  if (v === undefined) {
    v = periodStart(period, k);
    if (memo.size >= MAX_MEMO) memo.clear();
    memo.set(key, v);
  }
  return v;
}

/** The period containing instant t: start <= t < end. */
export function periodAt(period: UsagePeriod, t: number): PeriodBounds {
  const origin = startOf(period, 0);
  let k = Math.floor((t - origin) / approxMs(period.parts));
  while (startOf(period, k) > t) k--;
  while (startOf(period, k + 1) <= t) k++;
  return { index: k, start: startOf(period, k), end: startOf(period, k + 1) };
}
