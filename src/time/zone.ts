import { TallyConfigError } from '../errors/index.js';
import { SECOND_MS } from './units.js';

/**
 * Time-zone basics shared by window alignment (windows/) and usage periods (entitlements/): one way to
 * validate and spell a zone name, one way to read a UTC offset from Intl. The memoized hot-path
 * engine on top of it is zone-offsets.ts.
 */

/**
 * Validates an IANA zone. Every UTC alias (`utc`, `Etc/UTC`, `GMT`...) becomes `UTC` so it takes the
 * arithmetic fast path. Other names keep the caller's spelling unless ICU's canonical name differs
 * only in case (ICU maps some current names to legacy ones, e.g. Asia/Kolkata to Asia/Calcutta, and
 * we do not want to surprise the user with that).
 */
export function normalizeTimeZone(timeZone: unknown, field = 'timeZone'): string {
  if (typeof timeZone !== 'string' || timeZone === '') {
    throw new TallyConfigError(field, `expected an IANA time zone name, got ${JSON.stringify(timeZone)}`);
  }
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone }).resolvedOptions().timeZone;
  } catch (err) {
    throw new TallyConfigError(field, `unknown IANA time zone ${JSON.stringify(timeZone)}`, {
      cause: err,
    });
  }
  if (resolved === 'UTC') return 'UTC';
  return resolved.toLowerCase() === timeZone.toLowerCase() ? resolved : timeZone;
}

const formats = new Map<string, Intl.DateTimeFormat>();

function formatFor(zone: string): Intl.DateTimeFormat {
  let dtf = formats.get(zone);
  if (dtf === undefined) {
    dtf = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formats.set(zone, dtf);
  }
  return dtf;
}

/**
 * UTC offset (local - UTC, ms) of `zone` at instant t, straight from Intl (tzdata offsets are whole
 * seconds). Slow: the window hot path memoizes it (zone-offsets.ts).
 */
export function offsetAt(zone: string, t: number): number {
  if (zone === 'UTC') return 0;
  const whole = Math.floor(t / SECOND_MS) * SECOND_MS;
  let year = 0;
  let month = 0;
  let day = 0;
  let hour = 0;
  let minute = 0;
  let second = 0;
  for (const part of formatFor(zone).formatToParts(whole)) {
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
