import type { TallyConfig } from '../config/index.js';
import { epochOf, fingerprint } from '../dedup/index.js';
import { decodeEntry, EVENT_FIELD, EVENTS_FIELD, type DecodeOptions, type UsageEvent } from '../events/index.js';
import { meterUpdate, type MeterIndex, type MeterUpdate } from '../meters/index.js';
import { partitionOf } from '../producer/index.js';

/** A stream entry as XREADGROUP / XCLAIM return it: [id, [field, value, ...]]. */
export type StreamEntry = [id: string, fields: string[]];

/** A valid event found in the wrong partition, to be re-sent to its home partition. */
export interface Forward {
  readonly partition: number;
  readonly event: UsageEvent;
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

/**
 * Turns stream entries into applyBatch records: decodes and validates each event, routes it, computes
 * its fingerprint and the update it makes to each of its meters. An event invalid for any of its meters
 * is rejected whole (a 'D' record), so it is counted by none. Pure apart from hashing: no Redis calls.
 */
export function prepareBatch(entries: readonly StreamEntry[], ctx: BatchContext): PreparedBatch {
  const { config, meters, partition } = ctx;
  const opts: DecodeOptions = { maxEntryBytes: config.maxEntryBytes, maxFutureSkewMs: config.windows.maxFutureSkewMs };
  const calls: PreparedBatch['calls'] = [];
  let records: (string | number)[] = [];
  let fingerprints: Buffer[] = [];
  let eventsInCall = 0;
  const forwards: Forward[] = [];
  let events = 0;
  let unmetered = 0;
  let rejected = 0;
  const updates: MeterUpdate[] = [];
  for (const [id, fields] of entries) {
    const ingestedMs = Number.parseInt(id, 10);
    const decoded = decodeEntry(fields, ingestedMs, opts);
    if (eventsInCall > 0 && eventsInCall + decoded.events.length > MAX_EVENTS_PER_CALL) {
      calls.push({ records, fingerprints: Buffer.concat(fingerprints) });
      records = [];
      fingerprints = [];
      eventsInCall = 0;
    }
    eventsInCall += Math.max(1, decoded.events.length);
    records.push('E', id, String(epochOf(ingestedMs, config.dedup.epochMs)));
    for (const r of decoded.rejected) {
      records.push('D', r.index, r.reason, r.detail, r.payload, r.field);
      rejected++;
    }
    for (const { event, timeMs, index } of decoded.events) {
      events++;
      if (config.partitions > 1) {
        const home = partitionOf(event.subject, config.partitions);
        if (home !== partition) {
          // Pin the event time: a forwarded copy is ingested later than the original.
          forwards.push({ partition: home, event: { ...event, time: new Date(timeMs).toISOString() } });
          continue;
        }
      }
      const matching = meters.forType(event.type);
      if (matching === undefined) {
        unmetered++;
        continue;
      }
      updates.length = 0;
      let rejection: { reason: string; detail: string } | undefined;
      for (const meter of matching) {
        let update: MeterUpdate | { reason: string; detail: string };
        try {
          update = meterUpdate(meter, event, timeMs, id, index);
        } catch (err) {
          // E.g. a time before year 1 in a zoned window: reject this event, not the whole batch.
          update = { reason: 'unprocessable', detail: `${meter.slug}: ${(err as Error).message}` };
        }
        if ('reason' in update) {
          rejection = update;
          break;
        }
        updates.push(update);
      }
      if (rejection) {
        // One event of a batch entry is dead-lettered alone, not with the whole batch.
        const single = decoded.field === EVENTS_FIELD;
        records.push('D', index, rejection.reason, rejection.detail, single ? JSON.stringify(event) : decoded.raw, EVENT_FIELD);
        rejected++;
        continue;
      }
      records.push('V', index, fingerprints.length, timeMs, updates.length);
      fingerprints.push(fingerprint(event.source, event.id));
      for (const u of updates) {
        records.push(u.meter.slug, u.meter.code, String(u.windowStart), String(u.windowEnd), u.group, u.value, u.sortKey);
      }
    }
  }
  if (records.length > 0) calls.push({ records, fingerprints: Buffer.concat(fingerprints) });
  return { calls, forwards, entries: entries.length, events, unmetered, rejected };
}
