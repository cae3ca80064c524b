/**
 * Pure parts of the dead-letter tools: reading a dead-letter stream entry, naming it (`<partition>/<id>`)
 * and deciding what a replay writes where. No Redis calls here.
 *
 * A dead letter's fields (written by applyBatch.lua and deadLetterEntries.lua): `reason`, `detail`,
 * `entry` (id of the original stream entry, '' when the dead letter is not about one entry), `index`
 * (which event of the entry; -1: the whole entry), `field` ('event' | 'events': where the value was),
 * `payload` (the original entry value, unchanged: for 'events' the whole JSON array), `at` (epoch ms),
 * for poison entries `deliveries`, and `meter` when the event is dead-lettered for that meter alone
 * (it counts in the other meters of its type; a replay counts it in this meter only).
 */
import { TallyConfigError } from '../errors/index.js';
import {
  EVENT_FIELD,
  EVENTS_FIELD,
  jsonArrayElements,
  withTime,
  type DeadLetterReason,
} from '../events/index.js';
import { partitionOf } from '../producer/index.js';

export type EventField = typeof EVENT_FIELD | typeof EVENTS_FIELD;

/** What a dead letter says about its event, when the payload parses (all best effort). */
export interface DeadEventSummary {
  readonly id?: string;
  readonly source?: string;
  readonly subject?: string;
  readonly type?: string;
  readonly time?: string;
}

export interface DeadLetter {
  /** `<partition>/<id>`: how the CLI and `replayDeadLetters({ ids })` name it. */
  readonly ref: string;
  readonly partition: number;
  /** Id of the dead letter in the partition's dead-letter stream. */
  readonly id: string;
  readonly reason: string;
  readonly detail: string;
  /** When it was dead-lettered (epoch ms, Redis's clock), or null if the field is missing. */
  readonly at: number | null;
  /** Id of the original entry in the partition's event stream; null when not about one entry. */
  readonly entry: string | null;
  /** Which event of the entry (position in the `events` array); -1 for the whole entry. */
  readonly index: number;
  readonly field: EventField | null;
  /** The original entry value, unchanged. */
  readonly payload: string;
  /** Deliveries before a poison entry was given up on; null for other reasons. */
  readonly deliveries: number | null;
  /** The one meter this dead letter is for (the event counts in the others), or null for the whole event. */
  readonly meter: string | null;
  /** The event this dead letter is about (for a whole batch entry: its first event), if it parses. */
  readonly event: DeadEventSummary | null;
}

/** Reasons for which the worker rejected a whole entry, not one event in it (see events/entry.ts). */
const WHOLE_ENTRY_REASONS: ReadonlySet<string> = new Set<DeadLetterReason>([
  'poison',
  'too-many-events',
  'unprocessable',
  'oversized',
  'invalid-json',
  'invalid-batch',
]);

/** `[field, value, ...]` as XRANGE returns an entry's fields → record. */
export function fieldsToRecord(flat: readonly unknown[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1]);
  return out;
}

function intOrNull(text: string | undefined): number | null {
  if (text === undefined || text === '') return null;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : null;
}

function tryParse(json: string): unknown {
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function summarize(value: unknown): DeadEventSummary | null {
  if (!isRecord(value)) return null;
  const out: Record<string, string> = {};
  for (const key of ['id', 'source', 'subject', 'type', 'time'] as const) {
    const v = value[key];
    if (typeof v === 'string') out[key] = v;
  }
  return Object.keys(out).length > 0 ? out : null;
}

/** The event a dead letter is about, parsed from its payload (undefined if it does not parse). */
function eventOf(payload: string, field: EventField | null, index: number): unknown {
  const parsed = tryParse(payload);
  if (field === EVENTS_FIELD && Array.isArray(parsed)) return parsed[Math.max(0, index)];
  return parsed;
}

/** Parses one dead-letter stream entry. */
export function parseDeadLetter(partition: number, id: string, flat: readonly unknown[]): DeadLetter {
  const f = fieldsToRecord(flat);
  const field = f.field === EVENT_FIELD || f.field === EVENTS_FIELD ? f.field : null;
  const index = intOrNull(f.index) ?? -1;
  const payload = f.payload ?? '';
  return {
    ref: `${partition}/${id}`,
    partition,
    id,
    reason: f.reason ?? '',
    detail: f.detail ?? '',
    at: intOrNull(f.at),
    entry: f.entry ? f.entry : null,
    index,
    field,
    payload,
    deliveries: intOrNull(f.deliveries),
    meter: f.meter ? f.meter : null,
    event: payload ? summarize(eventOf(payload, field, index)) : null,
  };
}

const STREAM_ID = /^\d+-\d+$/;

/**
 * Parses a dead-letter reference: `<partition>/<id>`, or a bare `<id>` when `partition` is given.
 * Throws TallyConfigError naming `option` and the bad value.
 */
export function parseDeadLetterRef(
  text: string,
  partitions: number,
  partition?: number,
  option = 'ids',
): { partition: number; id: string } {
  const slash = text.indexOf('/');
  const p = slash >= 0 ? Number(text.slice(0, slash)) : partition;
  const id = slash >= 0 ? text.slice(slash + 1) : text;
  if (p === undefined) {
    throw new TallyConfigError(
      option,
      `${JSON.stringify(text)} names no partition: write <partition>/<id> or pass a partition`,
    );
  }
  if (!Number.isInteger(p) || p < 0 || p >= partitions) {
    throw new TallyConfigError(
      option,
      `${JSON.stringify(text)}: partition must be one of 0..${partitions - 1}`,
    );
  }
  if (!STREAM_ID.test(id))
    throw new TallyConfigError(
      option,
      `${JSON.stringify(text)}: ${JSON.stringify(id)} is not a stream id (<ms>-<seq>)`,
    );
  return { partition: p, id };
}

/** What replaying a dead letter writes: `value` under `field` in the event stream of `partition`. */
export type ReplayPlan =
  | {
      readonly replayable: true;
      readonly partition: number;
      readonly field: EventField;
      readonly value: string;
      /** 'event': one event of the entry; 'entry': the whole original entry value. */
      readonly scope: 'event' | 'entry';
      /** The one meter the replay counts in (a dead letter of that meter), written as the entry's `meter` field. */
      readonly meter: string | null;
    }
  | { readonly replayable: false; readonly why: string };

/**
 * Gives an event without `time` the time it had originally: the millisecond part of its original
 * entry id (the worker uses the ingestion time for such events, and a replay is ingested later).
 * The worker pins forwarded events the same way. Everything else is kept byte for byte: the time is
 * added to the JSON text (see events/json-text.ts), never by re-serializing, so this works at any
 * nesting depth. A value that does not parse is returned unchanged.
 */
export function pinEventTime(json: string, entryMs: number | null): string {
  if (entryMs === null) return json;
  const parsed = tryParse(json);
  const time = new Date(entryMs).toISOString();
  const needsTime = (value: unknown) => isRecord(value) && !('time' in value);
  if (!Array.isArray(parsed)) return needsTime(parsed) ? withTime(json, time) : json;
  if (!parsed.some(needsTime)) return json;
  const texts = jsonArrayElements(json);
  if (texts?.length !== parsed.length) return json;
  return `[${texts.map((text, i) => (needsTime(parsed[i]) ? withTime(text, time) : text)).join(',')}]`;
}

function entryMsOf(entryId: string | null): number | null {
  if (entryId === null || !STREAM_ID.test(entryId)) return null;
  const ms = Number(entryId.slice(0, entryId.indexOf('-')));
  return Number.isSafeInteger(ms) ? ms : null;
}

/**
 * Decides what replaying a dead letter re-injects, and into which partition:
 * - one event of a batch entry (`field: events`, `index` ≥ 0, rejected alone): that event, as an
 *   `event` entry in its subject's home partition;
 * - a single-event entry: its value, in the home partition of its subject (or the dead letter's own
 *   partition when it has none: the event is invalid and will be dead-lettered again);
 * - a whole entry (poison, `index` -1, or a reason that rejected the whole entry such as `oversized`):
 *   the original value under its original field, in the dead letter's partition (a worker forwards
 *   any misrouted event in it to its home partition).
 * A dead letter of one meter (`meter`) is replayed for that meter alone: the entry names it, and the
 * worker counts the event in it once, apart from the event's other meters.
 * Not replayable: dead letters that are not about an event (`sum-overflow` of a window total, an entry
 * without an event field), and `sum-overflow` of one event (applied in part and remembered for dedup,
 * so a replay would change nothing).
 */
export function planReplay(dl: DeadLetter, partitions: number): ReplayPlan {
  if (dl.field === null || dl.payload === '') {
    return { replayable: false, why: 'not about one event (no original payload): nothing to re-inject' };
  }
  if (dl.reason === 'sum-overflow') {
    // applyBatch.lua applied the event's other updates and remembered it (docs/semantics.md, known gaps).
    return {
      replayable: false,
      why: 'the event was partly applied and is remembered: a replay would be dropped as a duplicate',
    };
  }
  if (dl.reason === 'no-event-field') {
    return {
      replayable: false,
      why: 'the entry had no event field: fix the producer and send the event again',
    };
  }
  let field: EventField = dl.field;
  let value = dl.payload;
  let event: unknown = field === EVENT_FIELD ? tryParse(value) : undefined;
  const wholeEntry = dl.index < 0 || WHOLE_ENTRY_REASONS.has(dl.reason);
  if (field === EVENTS_FIELD && !wholeEntry) {
    const parsed = tryParse(value);
    const text = Array.isArray(parsed) ? jsonArrayElements(value)?.[dl.index] : undefined;
    if (Array.isArray(parsed) && text !== undefined) {
      event = parsed[dl.index];
      field = EVENT_FIELD;
      value = text;
    }
  }
  const scope = field === EVENT_FIELD ? 'event' : 'entry';
  const partition =
    isRecord(event) && typeof event.subject === 'string'
      ? partitionOf(event.subject, partitions)
      : dl.partition;
  if (partition >= partitions) {
    return {
      replayable: false,
      why: `partition ${partition} is beyond the ${partitions} configured partitions`,
    };
  }
  return {
    replayable: true,
    partition,
    field,
    value: pinEventTime(value, entryMsOf(dl.entry)),
    scope,
    meter: dl.meter,
  };
}
