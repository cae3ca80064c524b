/**
 * An independent, deliberately simple model of what Tally must produce: it shares no code with src/.
 * Windows are UTC-aligned fixed sizes; values are exact via BigInt micro-units.
 */
export type ModelAggregation = 'SUM' | 'COUNT' | 'MIN' | 'MAX' | 'AVG' | 'UNIQUE_COUNT' | 'LATEST';

export interface ModelMeter {
  slug: string;
  eventType: string;
  aggregation: ModelAggregation;
  /** Top-level key of `data` holding the value. */
  valueKey?: string;
  /** group name → top-level key of `data`. */
  groupBy?: Record<string, string>;
  windowMs: number;
}

export interface ModelEvent {
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  data: Record<string, unknown>;
}

interface Cell {
  meter: string;
  subject: string;
  groupBy: Record<string, string | null>;
  windowStart: number;
  count: number;
  sum: bigint;
  min?: bigint;
  max?: bigint;
  latest?: { t: number; seq: number; v: bigint };
  uniques: Set<string>;
}

/** Whether a meter can count the event: COUNT always; UNIQUE_COUNT a scalar value; the others a number. */
function usableBy(m: ModelMeter, event: ModelEvent): boolean {
  if (m.aggregation === 'COUNT' || m.valueKey === undefined) return true;
  const v = event.data[m.valueKey];
  if (m.aggregation === 'UNIQUE_COUNT') return v !== undefined && v !== null && typeof v !== 'object';
  if (typeof v === 'number') return Number.isFinite(v);
  return typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v));
}

const micro = (v: unknown): bigint => BigInt(Math.round(Number(v) * 1e6));

function decimal(v: bigint): string {
  const neg = v < 0n;
  const abs = neg ? -v : v;
  const int = abs / 1_000_000n;
  const frac = (abs % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${int}${frac ? `.${frac}` : ''}`;
}

/** Feeds events in the order the stream holds them; keeps the first of each (source, id). */
export class TotalsModel {
  private readonly seen = new Set<string>();
  private readonly cells = new Map<string, Cell>();
  private seq = 0;
  duplicates = 0;

  constructor(private readonly meters: ModelMeter[]) {}

  /**
   * Adds an event. Meters are isolated: a meter that cannot use the event (its value is not a number,
   * or missing for UNIQUE_COUNT) skips it, and the others count it. An event no meter of its type can
   * use is not remembered, so a later valid copy of it counts.
   */
  add(event: ModelEvent): void {
    const identity = `${event.source}\u0000${event.id}`;
    if (this.seen.has(identity)) {
      this.duplicates++;
      return;
    }
    const meters = this.meters.filter((m) => m.eventType === event.type);
    const usable = meters.filter((m) => usableBy(m, event));
    if (meters.length > 0 && usable.length === 0) return;
    this.seen.add(identity);
    const t = Date.parse(event.time);
    this.seq++;
    for (const m of usable) {
      const groupBy: Record<string, string | null> = {};
      for (const [name, key] of Object.entries(m.groupBy ?? {})) {
        const v = event.data[key];
        groupBy[name] = v === undefined || v === null ? null : typeof v === 'string' ? v : JSON.stringify(v);
      }
      const windowStart = Math.floor(t / m.windowMs) * m.windowMs;
      const key = JSON.stringify([m.slug, event.subject, groupBy, windowStart]);
      let cell = this.cells.get(key);
      if (!cell) {
        cell = {
          meter: m.slug,
          subject: event.subject,
          groupBy,
          windowStart,
          count: 0,
          sum: 0n,
          uniques: new Set(),
        };
        this.cells.set(key, cell);
      }
      cell.count++;
      const raw = m.valueKey === undefined ? undefined : event.data[m.valueKey];
      if (m.aggregation === 'UNIQUE_COUNT') cell.uniques.add(String(raw));
      else if (raw !== undefined) {
        const v = micro(raw);
        cell.sum += v;
        if (cell.min === undefined || v < cell.min) cell.min = v;
        if (cell.max === undefined || v > cell.max) cell.max = v;
        if (!cell.latest || t >= cell.latest.t) cell.latest = { t, seq: this.seq, v };
      }
    }
  }

  /** Expected rollups keyed by `meter|subject|groupBy json|windowStart ms` → { value (decimal string), eventCount }. */
  expected(): Map<string, { value: string; eventCount: number }> {
    const out = new Map<string, { value: string; eventCount: number }>();
    for (const cell of this.cells.values()) {
      const meter = this.meters.find((m) => m.slug === cell.meter) as ModelMeter;
      let value: string;
      switch (meter.aggregation) {
        case 'COUNT':
          value = String(cell.count);
          break;
        case 'UNIQUE_COUNT':
          value = String(cell.uniques.size);
          break;
        case 'SUM':
          value = decimal(cell.sum);
          break;
        case 'MIN':
          value = decimal(cell.min as bigint);
          break;
        case 'MAX':
          value = decimal(cell.max as bigint);
          break;
        case 'LATEST':
          value = decimal((cell.latest as { v: bigint }).v);
          break;
        case 'AVG': {
          // Half-even rounding at 6 digits of sum / count.
          const scaled = cell.sum;
          const q = scaled / BigInt(cell.count);
          const r = scaled % BigInt(cell.count);
          const twice = 2n * (r < 0n ? -r : r);
          let rounded = q;
          if (twice > BigInt(cell.count) || (twice === BigInt(cell.count) && q % 2n !== 0n))
            rounded += scaled < 0n ? -1n : 1n;
          value = decimal(rounded);
          break;
        }
      }
      out.set(rollupKey(cell.meter, cell.subject, cell.groupBy, cell.windowStart), {
        value,
        eventCount: cell.count,
      });
    }
    return out;
  }
}

export function rollupKey(
  meter: string,
  subject: string,
  groupBy: Record<string, string | null>,
  windowStart: number,
): string {
  const sorted = Object.fromEntries(Object.entries(groupBy).sort(([a], [b]) => a.localeCompare(b)));
  return `${meter}|${subject}|${JSON.stringify(sorted)}|${windowStart}`;
}
