/**
 * Reads the argument of one applyBatch.lua call (the layout in its header) back into objects, written
 * from that header rather than from the builder, so unit tests can check what the worker sends.
 */
export interface CallWindow {
  readonly meter: string;
  readonly agg: string;
  readonly start: string;
  readonly end: string;
}

export interface CallCell {
  readonly window: CallWindow;
  readonly group: string;
  readonly count: number;
  readonly a: string | number;
  readonly b: string | number;
  /** UNIQUE_COUNT cells: value -> number of events carrying it. */
  readonly values: Map<string, number>;
}

export type CallRecord =
  | {
      readonly kind: 'dead';
      readonly index: number;
      readonly reason: string;
      readonly detail: string;
      readonly payload: string;
      readonly field: string;
      readonly meter: string;
    }
  | {
      readonly kind: 'event';
      readonly timeMs: number;
      readonly index: number;
      readonly from: number;
      readonly to: number;
      readonly updates: { cell: CallCell; value: string | number; sortKey: string | number }[];
      readonly rejections: { meter: string; reason: string; detail: string }[];
    };

export interface CallEntry {
  readonly tag: 'E' | 'P';
  readonly id: string;
  readonly epoch: string;
  /** The one meter the entry counts in, or ''. */
  readonly scope: string;
  readonly records: CallRecord[];
}

export interface ReadCall {
  readonly windows: CallWindow[];
  readonly cells: CallCell[];
  readonly range: { first: string; last: string; entries: number };
  readonly entries: CallEntry[];
  /** Events in the call (each has one fingerprint). */
  readonly events: number;
}

export function readCall(r: readonly (string | number)[]): ReadCall {
  let i = 0;
  const next = () => r[i++] as string | number;
  const windows: CallWindow[] = [];
  for (let w = next() as number; w > 0; w--)
    windows.push({
      meter: next() as string,
      agg: next() as string,
      start: next() as string,
      end: next() as string,
    });
  const cells: CallCell[] = [];
  for (let c = next() as number; c > 0; c--) {
    const window = windows[(next() as number) - 1] as CallWindow;
    const group = next() as string;
    const count = next() as number;
    const a = next();
    const b = next();
    const values = new Map<string, number>();
    if (window.agg === 'U')
      for (let v = a as number; v > 0; v--) values.set(next() as string, next() as number);
    cells.push({ window, group, count, a, b, values });
  }
  const range = { first: next() as string, last: next() as string, entries: next() as number };
  const entries: CallEntry[] = [];
  let events = 0;
  while (i < r.length) {
    const tag = next() as 'E' | 'P';
    const id = next() as string;
    const epoch = next() as string;
    const records: CallRecord[] = [];
    const count = next() as number;
    const scope = next() as string;
    for (let n = count; n > 0; n--) {
      if (r[i] === 'D') {
        i++;
        records.push({
          kind: 'dead',
          index: next() as number,
          reason: next() as string,
          detail: next() as string,
          payload: next() as string,
          field: next() as string,
          meter: next() as string,
        });
      } else {
        const timeMs = next() as number;
        const index = next() as number;
        const from = next() as number;
        const to = next() as number;
        const nUpdates = next() as number;
        const nRejections = next() as number;
        const updates: { cell: CallCell; value: string | number; sortKey: string | number }[] = [];
        for (let u = nUpdates; u > 0; u--)
          updates.push({ cell: cells[(next() as number) - 1] as CallCell, value: next(), sortKey: next() });
        const rejections: { meter: string; reason: string; detail: string }[] = [];
        for (let x = nRejections; x > 0; x--)
          rejections.push({ meter: next() as string, reason: next() as string, detail: next() as string });
        records.push({ kind: 'event', timeMs, index, from, to, updates, rejections });
        events++;
      }
    }
    entries.push({ tag, id, epoch, scope, records });
  }
  return { windows, cells, range, entries, events };
}
