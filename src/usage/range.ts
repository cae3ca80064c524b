/**
 * Which stored windows a usage query of [from, to) reads: those that **start** in the range (open and
 * closed alike). A range shorter than the meter's window, or one that starts after the window in
 * progress began (`--from now-10m` on an HOUR meter), may hold no window start at all: `emptyRangeNote`
 * says so, rather than leaving an empty answer unexplained.
 */
import type { Meter } from '../meters/index.js';
import { formatIsoUtc, windowOf, windowsBetween } from '../windows/index.js';

/** Starts of the meter's windows in [from, to), in order. */
export function windowStartsIn(meter: Meter, from: number, to: number): number[] {
  const starts: number[] = [];
  for (const w of windowsBetween(meter.window, from, to)) if (w.start >= from) starts.push(w.start);
  return starts;
}

/**
 * Why a query of [from, to) is empty whatever was metered: no window of the meter starts in it.
 * Undefined when some window does (an empty answer then means no usage).
 */
export function emptyRangeNote(meter: Meter, from: number, to: number): string | undefined {
  if (windowStartsIn(meter, from, to).length > 0) return undefined;
  const containing = windowOf(meter.window, from);
  const open = containing.start <= Date.now() && Date.now() < containing.end;
  return (
    `no ${meter.window.label} window of meter ${meter.slug} starts in ${formatIsoUtc(from)} .. ${formatIsoUtc(to)}: ` +
    `rows hold whole windows that start inside the range, and the window ${open ? 'in progress' : 'containing it'} ` +
    `started at ${formatIsoUtc(containing.start)}; use --from ${formatIsoUtc(containing.start)} or earlier`
  );
}
