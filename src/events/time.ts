/**
 * Event time: RFC 3339 `date-time`, parsed strictly. `Date.parse` is lenient in ways that move usage
 * to another day without a word (`2026-11-31` is read as December 1st, `24:00:00` as the next day)
 * and refuses a valid leap second (`23:59:60`), so the fields are checked one by one here.
 */

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

function daysInMonth(year: number, month: number): number {
  return month === 2 ? (isLeapYear(year) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Epoch ms of a UTC calendar time (years 0-99 too, which Date.UTC maps to 1900-1999). */
function utcMs(
  year: number,
  month: number,
  day: number,
  hour: number,
  minute: number,
  second: number,
  ms: number,
): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, ms);
  return d.getTime();
}

/**
 * Epoch milliseconds of an RFC 3339 timestamp, or undefined when it is not one or names no real
 * instant (day 31 of a 30-day month, February 29th of a common year, hour 24, offset +24:00).
 * Fractions below the millisecond are truncated. A leap second (`23:59:60` UTC, on the last day of
 * a month) is counted at `23:59:59.999`: JavaScript time, like Unix time, has no 61st second, and
 * this keeps it in the day, hour and minute it belongs to.
 */
export function parseEventTime(time: string): number | undefined {
  const m = RFC3339.exec(time);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const fraction = m[7] ?? '';
  const offsetMinutes = m[8] ? 0 : (m[9] === '-' ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11]));
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 60) return undefined;
  if (Number(m[10] ?? 0) > 23 || Number(m[11] ?? 0) > 59) return undefined;
  if (second === 60) {
    // Only the last second of a UTC day, at the end of a month, can be a leap second.
    const utc = new Date(utcMs(year, month, day, hour, minute, 59, 0) - offsetMinutes * 60_000);
    const lastDay = daysInMonth(utc.getUTCFullYear(), utc.getUTCMonth() + 1);
    if (utc.getUTCHours() !== 23 || utc.getUTCMinutes() !== 59 || utc.getUTCDate() !== lastDay)
      return undefined;
    return utc.getTime() + 999;
  }
  const ms = Number(fraction.slice(0, 3).padEnd(3, '0'));
  const result = utcMs(year, month, day, hour, minute, second, ms) - offsetMinutes * 60_000;
  return Number.isFinite(result) ? result : undefined;
}
