import type { TallyConfig } from '../config/index.js';
import { epochOf, fingerprint } from '../dedup/index.js';
import {
  decodeEntry,
  describeError,
  EVENT_FIELD,
  EVENTS_FIELD,
  UNPROCESSABLE,
  withTime,
  type DecodedEntry,
  type DecodedEvent,
  type DecodeOptions,
  type RejectedEvent,
  type UsageEvent,
} from '../events/index.js';
import { meterUpdate, type Meter, type MeterIndex, type MeterUpdate } from '../meters/index.js';
import { partitionOf } from '../producer/index.js';

/** A stream entry as XREADGROUP / XCLAIM return it: [id, [field, value, ...]]. */
export type StreamEntry = [id: string, fields: string[]];

/** A valid event found in the wrong partition, to be re-sent to its home partition (as an `event` entry). */
export interface Forward {
  readonly partition: number;
  /** The event's JSON text, its event time pinned. */
  readonly json: string;
}

/** Events per applyBatch call, at most (whole entries are never split): keeps each script call short. */
export const MAX_EVENTS_PER_CALL = 1000;

export interface PreparedBatch {
  /**
   * Records for applyBatch.lua (MessagePack-encoded into its last argument), one list per script call: a call holds
   * whole entries and about MAX_EVENTS_PER_CALL events, so Redis is never blocked long by one call.
   */
  readonly calls: { records: (string | number)[]; fingerprints: Buffer }[];
  readonly forwards: Forward[];
  readonly entries: number;
  readonly events: number;
  readonly unmetered: number;
  readonly rejected: number;
}

export interface BatchContext {
  readonly config: TallyConfig;
  readonly meters: MeterIndex;
  readonly partition: number;
}

/** A batch entry decoded, or, when even decoding threw, the entry as one unprocessable rejection. */
function decodeSafely(fields: readonly string[], ingestedMs: number, opts: DecodeOptions): DecodedEntry {
  try {
    return decodeEntry(fields, ingestedMs, opts);
  } catch (err) {
    const at = fields.findIndex((f, i) => i % 2 === 0 && (f === EVENT_FIELD || f === EVENTS_FIELD));
    const raw = at >= 0 ? (fields[at + 1] ?? '') : '';
    const field = fields[at] === EVENTS_FIELD ? EVENTS_FIELD : EVENT_FIELD;
    const rejected: RejectedEvent = { reason: UNPROCESSABLE, detail: describeError(err), payload: raw, field, index: -1 };
    return { events: [], rejected: [rejected], raw, field, eventText: () => raw };
  }
}

/** The updates one valid event makes to its meters, or why it is rejected (it is then counted by none). */
function updatesOf(
  matching: readonly Meter[],
  event: UsageEvent,
  timeMs: number,
  id: string,
  index: number,
): MeterUpdate[] | { reason: string; detail: string } {
  const updates: MeterUpdate[] = [];
  for (const meter of matching) {
    const update = meterUpdate(meter, event, timeMs, id, index);
    if ('reason' in update) return update;
    updates.push(update);
  }
  return updates;
}

/**
 * Turns stream entries into applyBatch records: decodes and validates each event, routes it, computes
 * its fingerprint and the update it makes to each of its meters. An event invalid for any of its meters
 * is rejected whole (a 'D' record), so it is counted by none. Pure apart from hashing: no Redis calls.
 *
 * Never throws for what an entry holds: anything that fails while one event is prepared (e.g. a
 * RangeError from a value nested 10,000 levels deep) rejects that event alone as `unprocessable`, and
 * the other events of its entry still count. Only a bug outside any one event fails the whole entry,
 * which is then dead-lettered whole as `unprocessable`, never the batch.
 */
export function prepareBatch(entries: readonly StreamEntry[], ctx: BatchContext): PreparedBatch {
  const { config, meters, partition } = ctx;
  const opts: DecodeOptions = { maxEntryBytes: config.maxEntryBytes, maxFutureSkewMs: config.windows.maxFutureSkewMs };
  const calls: PreparedBatch['calls'] = [];
  let records: (string | number)[] = [];
  let fingerprints: Buffer[] = [];
  let eventsInCall = 0;
  const forwards: Forward[] = [];
  const n = { events: 0, unmetered: 0, rejected: 0 };

  /** Prepares one valid event: a 'V' record, a forward, or nothing (unmetered). Throws on a bug or a hostile value. */
  const addEvent = (decoded: DecodedEntry, { event, timeMs, index }: DecodedEvent, id: string) => {
    if (config.partitions > 1) {
      const home = partitionOf(event.subject, config.partitions);
      if (home !== partition) {
        // Pin the event time: a forwarded copy is ingested later than the original. The copy is the
        // event's own text (with `time` added if it had none), never a re-serialization.
        const text = decoded.eventText(index);
        forwards.push({ partition: home, json: event.time === undefined ? withTime(text, new Date(timeMs).toISOString()) : text });
        return undefined;
      }
    }
    const matching = meters.forType(event.type);
    if (matching === undefined) {
      n.unmetered++;
      return undefined;
    }
    const updates = updatesOf(matching, event, timeMs, id, index);
    if (!Array.isArray(updates)) return updates;
    const fp = fingerprint(event.source, event.id);
    records.push('V', index, fingerprints.length, timeMs, updates.length);
    fingerprints.push(fp);
    for (const u of updates) {
      records.push(u.meter.slug, u.meter.code, String(u.windowStart), String(u.windowEnd), u.group, u.value, u.sortKey);
    }
    return undefined;
  };

  const addEntry = (decoded: DecodedEntry, id: string) => {
    for (const r of decoded.rejected) {
      records.push('D', r.index, r.reason, r.detail, r.payload, r.field);
      n.rejected++;
    }
    for (const d of decoded.events) {
      n.events++;
      const mark = { records: records.length, fingerprints: fingerprints.length, forwards: forwards.length, unmetered: n.unmetered };
      let rejection: { reason: string; detail: string } | undefined;
      try {
        rejection = addEvent(decoded, d, id);
      } catch (err) {
        // E.g. a time before year 1 in a zoned window, or a group value nested too deep to serialize.
        rejection = { reason: UNPROCESSABLE, detail: describeError(err) };
      }
      if (rejection) {
        records.length = mark.records;
        fingerprints.length = mark.fingerprints;
        forwards.length = mark.forwards;
        n.unmetered = mark.unmetered;
        // One event of a batch entry is dead-lettered alone (its own text), not with the whole batch.
        records.push('D', d.index, rejection.reason, rejection.detail, decoded.eventText(d.index), EVENT_FIELD);
        n.rejected++;
      }
    }
  };

  for (const [id, fields] of entries) {
    const ingestedMs = Number.parseInt(id, 10);
    const decoded = decodeSafely(fields, ingestedMs, opts);
    if (eventsInCall > 0 && eventsInCall + decoded.events.length > MAX_EVENTS_PER_CALL) {
      calls.push({ records, fingerprints: Buffer.concat(fingerprints) });
      records = [];
      fingerprints = [];
      eventsInCall = 0;
    }
    eventsInCall += Math.max(1, decoded.events.length);
    const mark = { records: records.length, fingerprints: fingerprints.length, forwards: forwards.length, ...n };
    records.push('E', id, String(epochOf(ingestedMs, config.dedup.epochMs)));
    try {
      addEntry(decoded, id);
    } catch (err) {
      // Not reached by anything an event holds (addEntry catches that per event): a bug. The entry
      // goes to the dead letters whole, with the error, instead of failing the batch on every delivery.
      records.length = mark.records + 3;
      fingerprints.length = mark.fingerprints;
      forwards.length = mark.forwards;
      Object.assign(n, { events: mark.events, unmetered: mark.unmetered, rejected: mark.rejected + 1 });
      records.push('D', -1, UNPROCESSABLE, describeError(err), decoded.raw, decoded.field);
    }
  }
  if (records.length > 0) calls.push({ records, fingerprints: Buffer.concat(fingerprints) });
  return { calls, forwards, entries: entries.length, ...n };
}
