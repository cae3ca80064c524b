import { jsonArrayRanges, utf8ByteRanges } from './json-text.js';
import type { DeadLetterReason } from './reasons.js';
import { explainInvalidEvent, parseEventTime, type UsageEvent } from './schema.js';

/** Stream entry field holding one event as JSON. */
export const EVENT_FIELD = 'event';
/** Stream entry field holding a JSON array of events (written by the TypeScript producer's batches). */
export const EVENTS_FIELD = 'events';
/**
 * Stream entry field naming the one meter the entry's events count in: a replayed dead letter of one
 * meter (docs/contract.md). Such an event is deduplicated per (event, meter), apart from the event.
 */
export const METER_FIELD = 'meter';
/**
 * Stream entry field marking a copy a worker forwarded from the partition named in it (an event found
 * in a partition that is not its subject's). A forwarded copy is never forwarded again: found outside
 * its home partition, it is dead-lettered as `misrouted`.
 */
export const FORWARDED_FIELD = 'forwarded';

export interface DecodedEvent {
  readonly event: UsageEvent;
  /** Event time in epoch ms: `time` truncated to the millisecond, or the entry's ingestion time. */
  readonly timeMs: number;
  /** Position inside a batch entry (0 for a single-event entry). */
  readonly index: number;
}

export interface RejectedEvent {
  readonly reason: DeadLetterReason;
  readonly detail: string;
  /**
   * What to replay: the entry's value unchanged, or, for one event of a batch entry, that event's own
   * text cut out of the array (byte for byte, see json-text.ts), so a dead letter does not carry the
   * whole batch. `field` says which of the two it is; `index` is the event's place in the entry.
   */
  readonly payload: string;
  readonly field: typeof EVENT_FIELD | typeof EVENTS_FIELD;
  readonly index: number;
}

export interface DecodeOptions {
  readonly maxEntryBytes: number;
  readonly maxFutureSkewMs: number;
  /** Events a batch entry may hold; a longer one is rejected whole (`too-many-events`). */
  readonly maxEventsPerEntry: number;
}

export interface DecodedEntry {
  readonly events: DecodedEvent[];
  readonly rejected: RejectedEvent[];
  /** The entry's value exactly as stored, and the field it came from (for dead letters). */
  readonly raw: string;
  readonly field: typeof EVENT_FIELD | typeof EVENTS_FIELD;
  /** The one meter the entry counts in (METER_FIELD), if it names one. */
  readonly meter: string | undefined;
  /** The partition this entry was forwarded from (FORWARDED_FIELD), if it is a forwarded copy. */
  readonly forwardedFrom: string | undefined;
  /**
   * The exact JSON text of one event of the entry: the raw value of a single-event entry, or the
   * event's element of a batch entry's array (the array is scanned once, on first use).
   */
  eventText(index: number): string;
  /**
   * Where the event's text lies in the entry's value, as 1-based inclusive UTF-8 byte offsets (what
   * Lua's string.sub takes), so applyBatch.lua can dead-letter one event of a batch entry alone;
   * [0, 0] for a single-event entry (the whole value).
   */
  eventBytes(index: number): readonly [from: number, to: number];
}

/** A batch entry with more events than `streams.maxEventsPerEntry`: dead-lettered whole, once. */
export const TOO_MANY_EVENTS = 'too-many-events';

const WHOLE: readonly [number, number] = [0, 0];

/** Unexpected failures while looking at one event (e.g. a RangeError on a deeply nested value). */
export const UNPROCESSABLE = 'unprocessable';

/** `RangeError: Maximum call stack size exceeded`, cut to a dead letter's detail length. */
export function describeError(err: unknown): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

/** Byte length, computed only when the character count alone cannot decide. */
function tooLarge(raw: string, maxBytes: number): boolean {
  if (raw.length > maxBytes) return true;
  return raw.length * 3 > maxBytes && Buffer.byteLength(raw, 'utf8') > maxBytes;
}

function decodeOne(
  value: unknown,
  ingestedMs: number,
  opts: DecodeOptions,
): { timeMs: number } | { reason: DeadLetterReason; detail: string } {
  try {
    return check(value, ingestedMs, opts);
  } catch (err) {
    return { reason: UNPROCESSABLE, detail: describeError(err) };
  }
}

function check(
  value: unknown,
  ingestedMs: number,
  opts: DecodeOptions,
): { timeMs: number } | { reason: DeadLetterReason; detail: string } {
  const invalid = explainInvalidEvent(value);
  if (invalid) return invalid;
  const time = (value as UsageEvent).time;
  const timeMs = time === undefined ? ingestedMs : (parseEventTime(time) as number);
  if (timeMs > ingestedMs + opts.maxFutureSkewMs) {
    return {
      reason: 'future-time',
      detail: `time ${time} is more than ${opts.maxFutureSkewMs} ms ahead of ingestion ${new Date(ingestedMs).toISOString()}`,
    };
  }
  return { timeMs };
}

/**
 * Decodes one stream entry (its flat field/value list as ioredis returns it) into valid events and
 * rejected ones. Never throws for a malformed event: that becomes a rejection with a reason
 * (`unprocessable` when checking it failed unexpectedly).
 * `ingestedMs` is the millisecond part of the entry id, so the decision is the same on every redelivery.
 */
export function decodeEntry(
  fields: readonly string[],
  ingestedMs: number,
  opts: DecodeOptions,
): DecodedEntry {
  const events: DecodedEvent[] = [];
  const rejected: RejectedEvent[] = [];
  let raw: string | undefined;
  let batch = false;
  const field = () => (batch ? EVENTS_FIELD : EVENT_FIELD);
  // A batch entry's array is scanned once, on first use (jsonArrayRanges never recurses).
  let ranges: [number, number][] | undefined;
  let bytes: [number, number][] | undefined;
  const rangesOf = () => (ranges ??= jsonArrayRanges(raw ?? '') ?? []);
  const eventText = (index: number): string => {
    const range = batch ? rangesOf()[index] : undefined;
    return range ? (raw ?? '').slice(range[0], range[1]) : (raw ?? '');
  };
  const eventBytes = (index: number): readonly [number, number] => {
    if (!batch) return WHOLE;
    bytes ??= utf8ByteRanges(raw ?? '', rangesOf());
    return bytes[index] ?? WHOLE;
  };
  let meter: string | undefined;
  let forwardedFrom: string | undefined;
  const done = (): DecodedEntry => ({
    events,
    rejected,
    raw: raw ?? '',
    field: field(),
    meter,
    forwardedFrom,
    eventText,
    eventBytes,
  });
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i];
    if ((name === EVENT_FIELD || name === EVENTS_FIELD) && raw === undefined) {
      raw = fields[i + 1];
      batch = name === EVENTS_FIELD;
    } else if (name === METER_FIELD) meter = fields[i + 1];
    else if (name === FORWARDED_FIELD) forwardedFrom = fields[i + 1];
  }
  if (raw === undefined) {
    const payload = JSON.stringify(Object.fromEntries(pairs(fields)));
    rejected.push({
      reason: 'no-event-field',
      detail: `entry has neither "${EVENT_FIELD}" nor "${EVENTS_FIELD}"`,
      payload,
      field: EVENT_FIELD,
      index: 0,
    });
    return done();
  }
  if (tooLarge(raw, opts.maxEntryBytes)) {
    rejected.push({
      reason: 'oversized',
      detail: `entry exceeds ${opts.maxEntryBytes} bytes`,
      payload: raw,
      field: field(),
      index: 0,
    });
    return done();
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    rejected.push({
      reason: 'invalid-json',
      detail: (err as Error).message,
      payload: raw,
      field: field(),
      index: 0,
    });
    return done();
  }
  if (!batch) {
    const result = decodeOne(parsed, ingestedMs, opts);
    if ('timeMs' in result) events.push({ event: parsed as UsageEvent, timeMs: result.timeMs, index: 0 });
    else rejected.push({ ...result, payload: raw, field: field(), index: 0 });
    return done();
  }
  if (!Array.isArray(parsed)) {
    rejected.push({
      reason: 'invalid-batch',
      detail: `"${EVENTS_FIELD}" is not a JSON array`,
      payload: raw,
      field: field(),
      index: 0,
    });
    return done();
  }
  if (parsed.length > opts.maxEventsPerEntry) {
    // One dead letter for the entry, not one per event: a small entry of many tiny events must not
    // turn into a dead-letter stream many times its size.
    rejected.push({
      reason: TOO_MANY_EVENTS,
      detail: `entry holds ${parsed.length} events, more than streams.maxEventsPerEntry (${opts.maxEventsPerEntry})`,
      payload: raw,
      field: field(),
      index: 0,
    });
    return done();
  }
  for (let index = 0; index < parsed.length; index++) {
    const value: unknown = parsed[index];
    const result = decodeOne(value, ingestedMs, opts);
    if ('timeMs' in result) events.push({ event: value as UsageEvent, timeMs: result.timeMs, index });
    else rejected.push({ ...result, payload: eventText(index), field: EVENT_FIELD, index });
  }
  return done();
}

function* pairs(fields: readonly string[]): Generator<[string, string]> {
  for (let i = 0; i + 1 < fields.length; i += 2) yield [fields[i] as string, fields[i + 1] as string];
}
