/**
 * The benchmark's workload and its independent model. Events are deterministic (seeded), shaped like
 * real usage: 3 meters, `subjects` customers, 2 group-by dimensions per meter, a share of exact
 * re-sends (duplicates). The model shares no code with src/: window starts, group keys and
 * micro-unit values are computed here from the documented formats, so a disagreement is a real bug.
 */
import { random } from '../test/support/random.js';
import type { UsageEvent } from '../src/index.js';

export const SOURCE = 'bench';
const MODELS = ['gpt-5', 'claude-4', 'llama-4'] as const;
const ROUTES = ['/v1/chat', '/v1/embed', '/v1/images'] as const;
const GPUS = ['h100', 'a100', 'l4'] as const;
const REGIONS = ['us', 'eu', 'ap'] as const;

/** One meter of the bench config, plus what the model needs to know about it. */
export interface BenchMeter {
  readonly slug: string;
  readonly eventType: string;
  readonly aggregation: 'SUM' | 'COUNT';
  /** Top-level key of `data` holding the value (SUM only). */
  readonly valueKey?: string;
  /** group name → top-level key of `data` (2 dimensions each). */
  readonly groupBy: Readonly<Record<string, string>>;
}

export const BENCH_METERS: readonly BenchMeter[] = [
  {
    slug: 'tokens',
    eventType: 'llm.completion',
    aggregation: 'SUM',
    valueKey: 'tokens',
    groupBy: { model: 'model', region: 'region' },
  },
  {
    slug: 'requests',
    eventType: 'api.request',
    aggregation: 'COUNT',
    groupBy: { route: 'route', region: 'region' },
  },
  {
    slug: 'gpu_seconds',
    eventType: 'gpu.job',
    aggregation: 'SUM',
    valueKey: 'seconds',
    groupBy: { gpu: 'gpu', region: 'region' },
  },
];

/** The `meters:` section of a Tally config for BENCH_METERS with the given window size. */
export function meterConfig(windowSize: string): Record<string, unknown>[] {
  return BENCH_METERS.map((m) => ({
    slug: m.slug,
    eventType: m.eventType,
    aggregation: m.aggregation,
    ...(m.valueKey ? { valueProperty: `$.${m.valueKey}` } : {}),
    groupBy: Object.fromEntries(Object.entries(m.groupBy).map(([name, key]) => [name, `$.${key}`])),
    windowSize,
  }));
}

export interface GeneratorOptions {
  readonly subjects: number;
  /** Share of events that re-send one of the last 1000 distinct events unchanged. */
  readonly duplicateRate: number;
  readonly seed: number;
  /** Event time (epoch ms) of the i-th generated event (duplicates keep their original's time). */
  readonly timeOf: (i: number) => number;
  /** Id prefix, so several generators in one Redis never share ids. */
  readonly idPrefix?: string;
}

/** An endless deterministic event supply; `next()` returns the event and whether it is a duplicate. */
export class EventGenerator {
  private readonly rnd: () => number;
  private readonly recent: UsageEvent[] = [];
  private n = 0;
  private i = 0;

  constructor(private readonly options: GeneratorOptions) {
    this.rnd = random(options.seed);
  }

  next(): { event: UsageEvent; duplicate: boolean } {
    const rnd = this.rnd;
    const i = this.i++;
    if (this.recent.length > 0 && rnd() < this.options.duplicateRate) {
      return { event: this.recent[Math.floor(rnd() * this.recent.length)] as UsageEvent, duplicate: true };
    }
    const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)] as T;
    const subject = `customer-${Math.floor(rnd() * this.options.subjects)}`;
    const kind = rnd();
    const region = pick(REGIONS);
    const base = {
      specversion: '1.0' as const,
      id: `${this.options.idPrefix ?? 'e'}${this.n++}`,
      source: SOURCE,
      subject,
      time: new Date(this.options.timeOf(i)).toISOString(),
    };
    let event: UsageEvent;
    if (kind < 0.6) {
      event = {
        ...base,
        type: 'llm.completion',
        data: { tokens: 1 + Math.floor(rnd() * 4000), model: pick(MODELS), region },
      };
    } else if (kind < 0.9) {
      event = { ...base, type: 'api.request', data: { route: pick(ROUTES), region } };
    } else {
      // Decimal seconds with 3 fractional digits: exact in micro-units.
      event = {
        ...base,
        type: 'gpu.job',
        data: { seconds: Math.floor(rnd() * 3_600_000) / 1000, gpu: pick(GPUS), region },
      };
    }
    if (this.recent.length < 1000) this.recent.push(event);
    else this.recent[Math.floor(rnd() * 1000)] = event;
    return { event, duplicate: false };
  }

  /** The next `count` events. */
  take(count: number): { events: UsageEvent[]; duplicates: number } {
    const events: UsageEvent[] = [];
    let duplicates = 0;
    for (let k = 0; k < count; k++) {
      const { event, duplicate } = this.next();
      events.push(event);
      if (duplicate) duplicates++;
    }
    return { events, duplicates };
  }
}

/** What an event does to its meter, computed independently of src/. */
export interface ModelUpdate {
  readonly meter: BenchMeter;
  readonly windowStart: number;
  /** JSON array `[subject, ...group values in group-name order]` (the documented window-hash group key). */
  readonly group: string;
  /** Micro-units (10^-6) for SUM, 1 for COUNT. */
  readonly micro: bigint;
}

const METER_BY_TYPE = new Map(BENCH_METERS.map((m) => [m.eventType, m]));

/** Exact micro-units of a number with at most 6 fractional digits, via its decimal text. */
export function toMicro(value: unknown): bigint {
  const text = String(value);
  const [int = '0', frac = ''] = text.split('.');
  return BigInt(int) * 1_000_000n + BigInt((frac + '000000').slice(0, 6));
}

export function modelUpdate(event: UsageEvent, windowMs: number): ModelUpdate | undefined {
  const meter = METER_BY_TYPE.get(event.type);
  if (!meter) return undefined;
  const data = (event.data ?? {}) as Record<string, unknown>;
  const t = Date.parse(event.time as string);
  const names = Object.keys(meter.groupBy).sort();
  const group = JSON.stringify([
    event.subject,
    ...names.map((n) => String(data[meter.groupBy[n] as string])),
  ]);
  const micro = meter.valueKey === undefined ? 1n : toMicro(data[meter.valueKey]);
  return { meter, windowStart: Math.floor(t / windowMs) * windowMs, group, micro };
}

export interface CellTotals {
  count: number;
  micro: bigint;
}

export interface MeterTotals {
  count: number;
  micro: bigint;
}

/** Expected totals: per (meter, window, group) cell and per meter; keeps the first of each (source, id). */
export class Model {
  readonly cells = new Map<string, CellTotals>();
  readonly meters = new Map<string, MeterTotals>();
  private readonly seen = new Set<string>();
  events = 0;
  unique = 0;
  duplicates = 0;

  constructor(
    readonly windowMs: number,
    /** Keep per-cell totals (memory grows with the number of cells). */
    private readonly keepCells = true,
  ) {}

  static cellKey(meter: string, windowStart: number, group: string): string {
    return `${meter}\u0000${windowStart}\u0000${group}`;
  }

  add(event: UsageEvent): void {
    this.events++;
    const identity = `${event.source}\u0000${event.id}`;
    if (this.seen.has(identity)) {
      this.duplicates++;
      return;
    }
    this.seen.add(identity);
    this.unique++;
    const u = modelUpdate(event, this.windowMs);
    if (!u) return;
    const value = u.meter.aggregation === 'COUNT' ? 0n : u.micro;
    const m = this.meters.get(u.meter.slug) ?? { count: 0, micro: 0n };
    m.count++;
    m.micro += value;
    this.meters.set(u.meter.slug, m);
    if (!this.keepCells) return;
    const key = Model.cellKey(u.meter.slug, u.windowStart, u.group);
    const cell = this.cells.get(key);
    if (cell) {
      cell.count++;
      cell.micro += value;
    } else {
      this.cells.set(key, { count: 1, micro: value });
    }
  }

  /** Plain-JSON per-meter totals (bigints as strings), e.g. to send over IPC. */
  meterTotals(): Record<string, { count: number; micro: string }> {
    return Object.fromEntries(
      [...this.meters].map(([slug, t]) => [slug, { count: t.count, micro: t.micro.toString() }]),
    );
  }
}
