import { TallyConfigError, TallyValidationError } from '../errors/index.js';
import type { Meter } from '../meters/index.js';
import { parseWindowSize, windowOf, type WindowBounds, type WindowSpec } from '../windows/index.js';

/** The windows a usage query's rows are cut into. */
export interface RowWindows {
  readonly label: string;
  /** The row window containing a stored window's start. */
  boundsOf(windowStart: number): WindowBounds;
  /** Rows are the meter's own stored windows (each row reads one stored window). */
  readonly isMeterWindow: boolean;
}

/**
 * The row windows of a query: `MONTH` (calendar months in the zone), or any size `parseWindowSize`
 * accepts that is at least the meter's; undefined (one row over [from, to)) without a size.
 */
export function rowWindows(
  meter: Meter,
  windowSize: string | undefined,
  timeZone: string | undefined,
): RowWindows | undefined {
  if (windowSize === undefined) return undefined;
  const zone = timeZone ?? meter.window.timeZone;
  let spec: WindowSpec;
  try {
    spec = parseWindowSize(
      windowSize.trim().toUpperCase() === 'MONTH' ? 'DAY' : windowSize,
      zone,
      'windowSize',
    );
  } catch (err) {
    if (err instanceof TallyConfigError)
      throw new TallyValidationError('invalid-window-size', err.message, { cause: err });
    throw err;
  }
  if (windowSize.trim().toUpperCase() === 'MONTH') return monthRows(spec);
  if (spec.sizeMs < meter.window.sizeMs) {
    throw new TallyValidationError(
      'invalid-window-size',
      `windowSize ${spec.label} is finer than meter ${meter.slug}'s windows (${meter.window.label}): stored windows cannot be split`,
    );
  }
  const isMeterWindow = spec.sizeMs === meter.window.sizeMs && spec.timeZone === meter.window.timeZone;
  const rowSpec = isMeterWindow ? meter.window : spec;
  return { label: spec.label, isMeterWindow, boundsOf: (ws) => windowOf(rowSpec, ws) };
}

/** Calendar months in the zone of `day` (a DAY spec): from the local 1st's midnight to the next one's. */
function monthRows(day: WindowSpec): RowWindows {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: day.timeZone,
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
  });
  const local = (t: number) => {
    const p = Object.fromEntries(parts.formatToParts(t).map((x) => [x.type, Number(x.value)]));
    return { year: p.year as number, month: p.month as number, day: p.day as number };
  };
  /** The first instant of the local 1st of a month (month may be 13: January of the next year). */
  const firstOf = (year: number, month: number) => {
    // Noon UTC on the 1st is the 1st or the 2nd locally (offsets are -12 h to +14 h).
    let start = windowOf(day, Date.UTC(year, month - 1, 1, 12)).start;
    if (local(start).day !== 1) start = windowOf(day, start - 1).start;
    return start;
  };
  return {
    label: 'MONTH',
    isMeterWindow: false,
    boundsOf(ws) {
      const { year, month } = local(ws);
      return { start: firstOf(year, month), end: firstOf(year, month + 1) };
    },
  };
}

/**
 * The default bounds of a query (OpenMeter's: from the beginning, to now): `from` is the start of the
 * first row window (or stored window, without a size) wholly inside the retention horizon, `to` the
 * end of the one containing `now`, so windows still open are included whole.
 */
export function defaultRange(
  meter: Meter,
  rows: RowWindows | undefined,
  retentionMs: number,
  now: number = Date.now(),
): { from: number; to: number } {
  const bounds = (t: number) => (rows ? rows.boundsOf(t) : windowOf(meter.window, t));
  return { from: bounds(now - retentionMs).end, to: bounds(now).end };
}
