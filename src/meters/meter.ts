import { hasLoneSurrogate, type DeadLetterReason, type UsageEvent } from '../events/index.js';
import { TallyConfigError } from '../errors/index.js';
import { parseWindowSize, windowOf, type WindowSpec } from '../windows/index.js';
import { toScaledString } from './decimal.js';
import { compileJsonPath } from './json-path.js';
import type { Aggregation, MeterInput } from './schema.js';

/** One-letter aggregation codes used in Redis (window index members, outbox entries, Lua). */
export const AggregationCode = {
  SUM: 'S',
  COUNT: 'C',
  MIN: 'm',
  MAX: 'M',
  AVG: 'A',
  UNIQUE_COUNT: 'U',
  LATEST: 'L',
} as const satisfies Record<Aggregation, string>;

export type AggregationCode = (typeof AggregationCode)[Aggregation];

const AGGREGATION_BY_CODE = Object.fromEntries(
  Object.entries(AggregationCode).map(([name, code]) => [code, name as Aggregation]),
) as Record<string, Aggregation>;

export function aggregationOfCode(code: string): Aggregation | undefined {
  return AGGREGATION_BY_CODE[code];
}

type Accessor = (root: unknown) => unknown;

/** A meter from the config, compiled for the hot path. */
export interface Meter {
  readonly slug: string;
  readonly eventType: string;
  readonly aggregation: Aggregation;
  readonly code: AggregationCode;
  readonly window: WindowSpec;
  /** Group-by names, sorted: the order of values in a group key. */
  readonly groupKeys: readonly string[];
  readonly groupAccessors: readonly Accessor[];
  readonly value: Accessor | undefined;
  /** The JSONPath `value` reads (`$.tokens`), for messages. */
  readonly valueProperty?: string | undefined;
}

/** What one event does to one meter: the window and group it lands in and the value to aggregate. */
export interface MeterUpdate {
  readonly meter: Meter;
  readonly windowStart: number;
  readonly windowEnd: number;
  /** JSON array `[subject, ...groupValues]`: the group's identity inside the window. */
  readonly group: string;
  /** Scaled integer (SUM, AVG, MIN, MAX, LATEST), the distinct value (UNIQUE_COUNT), or '' (COUNT). */
  readonly value: string;
  /** LATEST only: fixed-width (event time, entry id, index) so the newest event wins deterministically. */
  readonly sortKey: string;
}

export interface MeterRejection {
  readonly reason: DeadLetterReason;
  readonly detail: string;
}

function windowSpec(input: MeterInput, field: string): WindowSpec {
  try {
    return parseWindowSize(input.windowSize, input.timeZone, `${field}.windowSize`);
  } catch (err) {
    if (err instanceof TallyConfigError && err.field === 'timeZone') {
      throw new TallyConfigError(`${field}.timeZone`, err.message.replace(/^timeZone: /, ''), { cause: err });
    }
    throw err;
  }
}

/** Compiles and cross-checks the configured meters; errors name the meter's field. */
export function compileMeters(inputs: readonly MeterInput[]): Meter[] {
  const seen = new Set<string>();
  return inputs.map((input, i) => {
    const field = `meters[${i}]`;
    if (seen.has(input.slug))
      throw new TallyConfigError(`${field}.slug`, `duplicate meter slug ${JSON.stringify(input.slug)}`);
    seen.add(input.slug);
    if (input.aggregation === 'COUNT' && input.valueProperty !== undefined) {
      throw new TallyConfigError(
        `${field}.valueProperty`,
        'COUNT meters count events and take no valueProperty',
      );
    }
    if (input.aggregation !== 'COUNT' && input.valueProperty === undefined) {
      throw new TallyConfigError(`${field}.valueProperty`, `required for ${input.aggregation} meters`);
    }
    const groupKeys = Object.keys(input.groupBy ?? {}).sort();
    return {
      slug: input.slug,
      eventType: input.eventType,
      aggregation: input.aggregation,
      code: AggregationCode[input.aggregation],
      window: windowSpec(input, field),
      groupKeys,
      groupAccessors: groupKeys.map((k) =>
        compileJsonPath(input.groupBy?.[k] as string, `${field}.groupBy.${k}`),
      ),
      value:
        input.valueProperty === undefined
          ? undefined
          : compileJsonPath(input.valueProperty, `${field}.valueProperty`),
      valueProperty: input.valueProperty,
    };
  });
}

/** A scalar as a string; objects and arrays as JSON. */
function scalarString(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v);
}

function groupValue(v: unknown): string | null {
  return v === undefined || v === null ? null : scalarString(v);
}

const pad = (n: number | string, width: number) => String(n).padStart(width, '0');

/** The LATEST tie-break key; entry ids are `ms-seq`. */
function latestSortKey(timeMs: number, entryId: string, index: number): string {
  const dash = entryId.indexOf('-');
  return `${pad(timeMs, 15)}.${pad(entryId.slice(0, dash), 15)}.${pad(entryId.slice(dash + 1), 10)}.${pad(index, 6)}`;
}

const NUMERIC_TEXT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Why toScaledString refused a value: a number too large to keep, or no number at all. */
function whyNotScaled(raw: unknown): string {
  const numeric =
    (typeof raw === 'number' && Number.isFinite(raw)) ||
    typeof raw === 'bigint' ||
    (typeof raw === 'string' && NUMERIC_TEXT.test(raw));
  return numeric ? 'is out of range (values are kept within ±9,223,372,036,854.775807)' : 'is not a number';
}

/** A value as JSON for a dead letter's detail, at most 64 characters (never throws). */
function preview(raw: unknown): string {
  let text: string;
  try {
    text = typeof raw === 'bigint' ? raw.toString() : (JSON.stringify(raw) ?? 'undefined');
  } catch {
    text = Array.isArray(raw) ? '[...]' : '{...}';
  }
  return text.length > 64 ? `${text.slice(0, 61)}...` : text;
}

/** A value with an unpaired surrogate: it would merge with others once UTF-8 encoded (see hasLoneSurrogate). */
function notUnicode(meter: Meter, what: string): MeterRejection {
  return {
    reason: 'invalid-value',
    detail: `${meter.slug}: ${what} contains an unpaired UTF-16 surrogate (not valid Unicode text)`,
  };
}

/** The update one event makes to one meter, or why the event is invalid for it. */
export function meterUpdate(
  meter: Meter,
  event: UsageEvent,
  timeMs: number,
  entryId: string,
  index: number,
): MeterUpdate | MeterRejection {
  const data = event.data;
  let value = '';
  if (meter.value !== undefined) {
    const raw = meter.value(data);
    if (meter.code === 'U') {
      if (raw === undefined || raw === null || typeof raw === 'object') {
        return { reason: 'invalid-value', detail: `${meter.slug}: value is missing or not a scalar` };
      }
      value = scalarString(raw);
      if (hasLoneSurrogate(value)) return notUnicode(meter, 'value');
    } else {
      const scaled = toScaledString(raw);
      if (scaled === undefined) {
        return {
          reason: 'invalid-value',
          detail:
            raw === undefined
              ? `${meter.slug}: value is missing (${meter.valueProperty ?? 'valueProperty'} is not in the event's data)`
              : `${meter.slug}: value ${preview(raw)} ${whyNotScaled(raw)}`,
        };
      }
      value = scaled;
    }
  }
  const values: (string | null)[] = [event.subject];
  for (let g = 0; g < meter.groupAccessors.length; g++) {
    const v = groupValue((meter.groupAccessors[g] as Accessor)(data));
    // Objects are serialized with escapes; a raw string must be Unicode to stay itself in Redis.
    if (v !== null && hasLoneSurrogate(v)) return notUnicode(meter, `groupBy ${meter.groupKeys[g] ?? g}`);
    values.push(v);
  }
  const { start, end } = windowOf(meter.window, timeMs);
  return {
    meter,
    windowStart: start,
    windowEnd: end,
    group: JSON.stringify(values),
    value,
    sortKey: meter.code === 'L' ? latestSortKey(timeMs, entryId, index) : '',
  };
}

/**
 * Meters by the event type they count (the active ones) and by slug (deleted ones too: their windows
 * still close, emit and answer queries). A process following the registry updates its index in place
 * (`reset`), so every component holding it sees the change.
 */
export class MeterIndex {
  private byType = new Map<string, Meter[]>();
  private all = new Map<string, Meter>();
  private active: readonly Meter[] = [];
  /** Goes up by one with every `reset`: what was derived from the meters before is stale. */
  revision = 0;

  constructor(meters: readonly Meter[], inactive: readonly Meter[] = []) {
    this.reset(meters, inactive);
  }

  /** The active meters. */
  get meters(): readonly Meter[] {
    return this.active;
  }

  /** Replaces the meters (active, and deleted ones kept for their windows). */
  reset(meters: readonly Meter[], inactive: readonly Meter[] = []): void {
    const byType = new Map<string, Meter[]>();
    for (const meter of meters) {
      const list = byType.get(meter.eventType) ?? [];
      list.push(meter);
      byType.set(meter.eventType, list);
    }
    this.byType = byType;
    this.all = new Map([...inactive, ...meters].map((m) => [m.slug, m]));
    this.active = meters;
    this.revision++;
  }

  forType(type: string): readonly Meter[] | undefined {
    return this.byType.get(type);
  }

  /** A meter by slug, active or deleted. */
  bySlug(slug: string): Meter | undefined {
    return this.all.get(slug);
  }

  /** Whether the meter is active (counts new events). */
  isActive(slug: string): boolean {
    return this.active.some((m) => m.slug === slug);
  }
}
