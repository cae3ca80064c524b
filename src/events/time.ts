/**
 * Event time: RFC 3339 `date-time`, parsed strictly. `Date.parse` is lenient in ways that move usage
 * to another day without a word (`2026-11-31` is read as December 1st, `24:00:00` as the next day)
 * and refuses a valid leap second (`23:59:60`), so the fields are checked one by one here.
 */

import { DAY_MS } from '../time/index.js';

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

function daysInMonth(year: number, month: number): number {
  return month === 2
    ? isLeapYear(year)
      ? 29
      : 28
    : month === 4 || month === 6 || month === 9 || month === 11
      ? 30
      : 31;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil), any year. */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/** The number written by `n` ASCII digits of `s` from `at`, or -1 if one of them is not a digit. */
function digits(s: string, at: number, n: number): number {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

/**
 * Epoch milliseconds of an RFC 3339 timestamp, or undefined when it is not one or names no real
 * instant (day 31 of a 30-day month, February 29th of a common year, hour 24, offset +24:00).
 * Fractions below the millisecond are truncated. A leap second (`23:59:60` UTC, on the last day of
 * a month) is counted at `23:59:59.999`: JavaScript time, like Unix time, has no 61st second, and
 * this keeps it in the day, hour and minute it belongs to. On the hot path: no regular expression,
 * no Date object, no allocation.
 */
export function parseEventTime(time: string): number | undefined {
  // YYYY-MM-DDTHH:MM:SS, then [.fraction], then Z or +HH:MM / -HH:MM
  if (time.length < 20) return undefined;
  const year = digits(time, 0, 4);
  const month = digits(time, 5, 2);
  const day = digits(time, 8, 2);
  const hour = digits(time, 11, 2);
  const minute = digits(time, 14, 2);
  const second = digits(time, 17, 2);
  const sep = time.charCodeAt(10);
  if (
    year < 0 ||
    month < 0 ||
    day < 0 ||
    hour < 0 ||
    minute < 0 ||
    second < 0 ||
    time.charCodeAt(4) !== 45 ||
    time.charCodeAt(7) !== 45 || // '-'
    (sep !== 84 && sep !== 116 && sep !== 32) || // 'T', 't', ' '
    time.charCodeAt(13) !== 58 ||
    time.charCodeAt(16) !== 58 // ':'
  ) {
    return undefined;
  }
  let i = 19;
  let ms = 0;
  if (time.charCodeAt(i) === 46) {
    // '.' then at least one digit; the first three are the milliseconds
    const start = ++i;
    while (i < time.length) {
      const c = time.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      if (i - start < 3) ms = ms * 10 + c;
      i++;
    }
    if (i === start) return undefined;
    for (let k = Math.min(i - start, 3); k < 3; k++) ms *= 10;
  }
  let offsetMinutes = 0;
  const z = time.charCodeAt(i);
  if (z === 90 || z === 122) {
    // 'Z', 'z'
    if (i + 1 !== time.length) return undefined;
  } else if (z === 43 || z === 45) {
    // '+', '-'
    if (i + 6 !== time.length || time.charCodeAt(i + 3) !== 58) return undefined;
    const oh = digits(time, i + 1, 2);
    const om = digits(time, i + 4, 2);
    if (oh < 0 || om < 0 || oh > 23 || om > 59) return undefined;
    offsetMinutes = (z === 45 ? -1 : 1) * (oh * 60 + om);
  } else {
    return undefined;
  }
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 60) return undefined;
  const local = daysFromCivil(year, month, day) * DAY_MS + hour * 3_600_000 + minute * 60_000;
  if (second === 60) {
    // Only the last second of a UTC day, at the end of a month, can be a leap second.
    const utc = local + 59_000 - offsetMinutes * 60_000;
    const utcDay = Math.floor(utc / DAY_MS);
    if (utc - utcDay * DAY_MS !== DAY_MS - 1_000) return undefined; // 23:59:59 UTC
    const next = new Date((utcDay + 1) * DAY_MS);
    if (next.getUTCDate() !== 1) return undefined; // the next UTC day starts a month
    return utc + 999;
  }
  return local + second * 1_000 + ms - offsetMinutes * 60_000;
}
