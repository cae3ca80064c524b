import type { TallyConfig } from '../config/index.js';
import { epochOf, fingerprint, meterFingerprint } from '../dedup/index.js';
import {
  decodeEntry,
  describeError,
  EVENT_FIELD,
  EVENTS_FIELD,
  FORWARDED_FIELD,
  METER_FIELD,
  UNPROCESSABLE,
  withTime,
  type DecodedEntry,
  type DecodedEvent,
  type DeadLetterReason,
  type DecodeOptions,
  type RejectedEvent,
  type UsageEvent,
} from '../events/index.js';
import { meterUpdate, type Meter, type MeterUpdate } from '../meters/index.js';
import { partitionOf } from '../producer/index.js';
import type { PartitionView } from '../registry/index.js';
import { CallBuilder } from './call-builder.js';

/** A stream entry as XREADGROUP / XCLAIM return it: [id, [field, value, ...]]. */
export type StreamEntry = [id: string, fields: string[]];

/** A valid event found in the wrong partition, to be re-sent to its home partition (as an `event` entry). */
export interface Forward {
  readonly partition: number;
  /** The stream entry's fields: the event's JSON text (its event time pinned), where it came from, its meter. */
  readonly fields: readonly string[];
}

/** Dead-letter reason of a forwarded copy found outside its home partition (never forwarded twice). */
export const MISROUTED = 'misrouted' satisfies DeadLetterReason;
/** Dead-letter reason of an event replayed for a meter that is not active (deleted) or not of its type. */
export const METER_NOT_ACTIVE = 'meter-not-active' satisfies DeadLetterReason;

/**
 * What one applyBatch call may cost, in estimated microseconds of Redis time (see `cost` below):
 * about 2 ms, so no call blocks Redis for long. A call ends before a record that would exceed it,
 * in the middle of an entry if need be (an entry of 10,000 events takes many calls; see the 'P'
 * header of applyBatch.lua).
 */
export const MAX_CALL_COST_US = 2_000;

/**
 * Estimated Redis time of applyBatch work, in µs, on Redis 7.0 here: an event costs its dedup write
 * and lookups, a cell (a (window, group) new to the call) its count and value writes, and every
 * further update of a cell only a little Lua. Checked against two measurements: the bench's apply
 * scenario (9.5 to 10.3 µs per event at 0.99 cells per event, so 4 + 6) and the SLOWLOG of the
 * hostile-input test (calls of one cell: 1.4 to 2.4 ms for ~440 events, so about 4.5 each).
 */
export const cost = {
  entry: 2, // XPENDING membership, XACK
  deadLetter: 6, // one XADD of the payload
  event: 4, // dedup HSETNX and lookups
  cell: 6, // count and value increments of a (window, group)
  update: 0.5, // an update of a cell the call has already
} as const;

export interface PreparedBatch {
  /**
   * Arguments of applyBatch.lua (`records` MessagePack-encoded into one argument), one per script
   * call, each call at most about MAX_CALL_COST_US of Redis time.
   */
  readonly calls: { records: (string | number)[]; fingerprints: Buffer }[];
  /** The registry version the batch was prepared at (applyBatch refuses it at another). */
  readonly registryVersion: number;
  /** An entry spans calls ('P' headers): the calls must run one after another (see applyPrepared). */
  readonly chained: boolean;
  readonly forwards: Forward[];
  readonly entries: number;
  readonly events: number;
  readonly unmetered: number;
  readonly rejected: number;
}

export interface BatchContext {
  readonly config: TallyConfig;
  /** The partition at one registry version: which meters count which entries. */
  readonly view: PartitionView;
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
    const rejected: RejectedEvent = {
      reason: UNPROCESSABLE,
      detail: describeError(err),
      payload: raw,
      field,
      index: 0,
    };
    return {
      events: [],
      rejected: [rejected],
      raw,
      field,
      meter: undefined,
      forwardedFrom: undefined,
      eventText: () => raw,
      eventBytes: () => [0, 0],
    };
  }
}

/** Why one meter cannot count an event. */
export interface MeterRejectionRecord {
  readonly meter: string;
  readonly reason: DeadLetterReason;
  readonly detail: string;
}

/**
 * The updates one valid event makes to the meters that count it, and the meters that cannot use it
 * (each dead-lettered for that meter alone: meters are isolated, docs/semantics.md).
 */
function updatesOf(
  matching: readonly Meter[],
  event: UsageEvent,
  timeMs: number,
  id: string,
  index: number,
): { updates: MeterUpdate[]; rejections: MeterRejectionRecord[] } {
  const updates: MeterUpdate[] = [];
  const rejections: MeterRejectionRecord[] = [];
  for (const meter of matching) {
    const update = meterUpdate(meter, event, timeMs, id, index);
    if ('reason' in update) rejections.push({ meter: meter.slug, ...update });
    else updates.push(update);
  }
  return { updates, rejections };
}

/**
 * Turns stream entries into applyBatch calls: decodes and validates each event, routes it, computes
 * its fingerprint and the update it makes to each of the meters counting its entry (the partition
 * view's), and aggregates the updates of each call per (window, group) (see CallBuilder). Meters are
 * isolated: an event one meter cannot use counts in the others and is dead-lettered for that meter
 * alone, by applyBatch, if it is applied; an event no meter can use is rejected whole (a 'D'
 * record). An entry naming one meter (a replayed dead letter) counts in that meter alone, with its
 * own fingerprint. Pure apart from hashing: no Redis calls.
 *
 * Nothing an event holds makes this throw: anything that fails while one event is prepared (e.g. a
 * RangeError from a value nested 10,000 levels deep) rejects that event alone as `unprocessable`,
 * and the other events of its entry still count.
 *
 * Calls cost at most MAX_CALL_COST_US (rejected events count too). An entry that does not fit in what
 * is left of a call is continued in the next one: its header is 'P' (applied, not acknowledged) in all
 * calls but its last, whose 'E' header acknowledges it.
 */
export function prepareBatch(entries: readonly StreamEntry[], ctx: BatchContext): PreparedBatch {
  const { config, view, partition } = ctx;
  const opts: DecodeOptions = {
    maxEntryBytes: config.maxEntryBytes,
    maxFutureSkewMs: config.windows.maxFutureSkewMs,
    maxEventsPerEntry: config.maxEventsPerEntry,
  };
  const calls: PreparedBatch['calls'] = [];
  let call = new CallBuilder();
  let callCost = 0;
  let entry = { id: '', epoch: '', scope: '' };
  let chained = false;
  const forwards: Forward[] = [];
  const n = { events: 0, unmetered: 0, rejected: 0 };

  const flush = () => {
    calls.push(call.build());
    call = new CallBuilder();
    callCost = 0;
  };
  const startEntry = (id: string, epoch: string, scope: string) => {
    if (callCost + cost.entry > MAX_CALL_COST_US && !call.isEmpty) flush();
    entry = { id, epoch, scope };
    call.startEntry(id, epoch, scope);
    callCost += cost.entry;
  };
  /** Makes room for a record of the current entry, continuing the entry in a new call if needed. */
  const reserve = (recordCost: () => number) => {
    let c = recordCost();
    if (callCost + c > MAX_CALL_COST_US && call.entryRecords > 0) {
      call.continueLater();
      chained = true;
      flush();
      startEntry(entry.id, entry.epoch, entry.scope);
      c = recordCost();
    }
    callCost += c;
  };
  const deadLetter = (
    index: number,
    reason: DeadLetterReason,
    detail: string,
    payload: string,
    field: string,
  ) => {
    reserve(() => cost.deadLetter);
    call.deadLetter(index, reason, detail, payload, field, entry.scope);
    n.rejected++;
  };

  /** Prepares one valid event: an event record, a forward, or nothing (unmetered). Throws on a bug or a hostile value. */
  const addEvent = (
    decoded: DecodedEntry,
    { event, timeMs, index }: DecodedEvent,
    id: string,
  ): { reason: DeadLetterReason; detail: string } | undefined => {
    if (config.partitions > 1) {
      const home = partitionOf(event.subject, config.partitions);
      if (home !== partition) {
        if (decoded.forwardedFrom !== undefined) {
          return {
            reason: MISROUTED,
            detail: `forwarded here from partition ${decoded.forwardedFrom}, but subject ${JSON.stringify(event.subject)} belongs to partition ${home} of ${config.partitions}: a copy is forwarded once, never again`,
          };
        }
        // Pin the event time: a forwarded copy is ingested later than the original. The copy is the
        // event's own text (with `time` added if it had none), never a re-serialization.
        const text = decoded.eventText(index);
        const json = event.time === undefined ? withTime(text, new Date(timeMs).toISOString()) : text;
        forwards.push({
          partition: home,
          fields: [
            FORWARDED_FIELD,
            String(partition),
            ...(decoded.meter !== undefined ? [METER_FIELD, decoded.meter] : []),
            EVENT_FIELD,
            json,
          ],
        });
        return undefined;
      }
    }
    let matching: readonly Meter[] | undefined;
    if (decoded.meter !== undefined) {
      const meter = view.index.bySlug(decoded.meter);
      if (meter === undefined || meter.eventType !== event.type) {
        return {
          reason: METER_NOT_ACTIVE,
          detail:
            meter === undefined
              ? `${decoded.meter}: replayed for meter ${JSON.stringify(decoded.meter)}, which is not active (deleted, or never registered)`
              : `${decoded.meter}: replayed for meter ${JSON.stringify(decoded.meter)}, which counts type ${JSON.stringify(meter.eventType)}, not ${JSON.stringify(event.type)}`,
        };
      }
      matching = [meter];
    } else matching = view.metersFor(event.type, id);
    if (matching === undefined) {
      n.unmetered++;
      return undefined;
    }
    const { updates, rejections } = updatesOf(matching, event, timeMs, id, index);
    if (updates.length === 0) {
      const first = rejections[0] as MeterRejectionRecord;
      const detail =
        rejections.length === 1
          ? first.detail
          : `no meter can count it: ${rejections.map((r) => r.detail).join('; ')}`;
      return { reason: first.reason, detail };
    }
    const fp =
      decoded.meter !== undefined
        ? meterFingerprint(decoded.meter, event.source, event.id)
        : fingerprint(event.source, event.id);
    const [from, to] = decoded.eventBytes(index);
    // Everything that can throw is done: from here on the event's records are written whole.
    reserve(() => {
      const fresh = call.newCells(updates);
      return (
        cost.event +
        cost.cell * fresh +
        cost.update * (updates.length - fresh) +
        cost.deadLetter * rejections.length
      );
    });
    call.addEvent(fp, timeMs, index, from, to, updates, rejections);
    return undefined;
  };

  for (const [id, fields] of entries) {
    const ingestedMs = Number.parseInt(id, 10);
    const decoded = decodeSafely(fields, ingestedMs, opts);
    startEntry(id, String(epochOf(ingestedMs, config.dedup.epochMs)), decoded.meter ?? '');
    for (const r of decoded.rejected) deadLetter(r.index, r.reason, r.detail, r.payload, r.field);
    for (const d of decoded.events) {
      n.events++;
      let rejection: { reason: DeadLetterReason; detail: string } | undefined;
      try {
        rejection = addEvent(decoded, d, id);
      } catch (err) {
        // E.g. a time before year 1 in a zoned window, or a group value nested too deep to serialize.
        rejection = { reason: UNPROCESSABLE, detail: describeError(err) };
      }
      // One event of a batch entry is dead-lettered alone (its own text), not with the whole batch.
      if (rejection)
        deadLetter(d.index, rejection.reason, rejection.detail, decoded.eventText(d.index), EVENT_FIELD);
    }
  }
  if (!call.isEmpty) flush();
  return { calls, chained, forwards, entries: entries.length, registryVersion: view.version, ...n };
}
