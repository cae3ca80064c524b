import type { BatchObservableResult } from '@opentelemetry/api';
import { parseGroupInfo, parsePendingSummary, parseTime, streamIdMs } from '../admin/index.js';
import type { RedisClient, TallyKeys } from '../redis/index.js';
import { instruments, observeBatch } from '../telemetry/index.js';

/** How long one collection may wait for Redis before it reports what it has (nothing, while Redis is down). */
const COLLECT_TIMEOUT_MS = 2_000;

export interface PartitionGaugeSource {
  readonly client: RedisClient;
  readonly keys: TallyKeys;
  readonly group: string;
  /** Partitions this replica consumes now. */
  readonly partitions: () => readonly number[];
}

type Pipeline = [Error | null, unknown][] | null;

function int(value: unknown): number | undefined {
  const n = Number(value);
  return value === null || value === undefined || !Number.isFinite(n) ? undefined : n;
}

/**
 * Observes the worker's per-partition gauges (telemetry/instruments.ts) at each metrics collection:
 * one MULTI of read-only single-key commands per owned partition (one Cluster slot each), read when
 * Prometheus scrapes, never on the hot path. Returns the removal of the callback.
 */
export function observePartitionGauges(source: PartitionGaugeSource): () => void {
  const g = instruments;
  const gauges = [
    g.partitionLag,
    g.partitionPending,
    g.partitionOldestPendingAge,
    g.partitionOpenWindows,
    g.partitionEventTimeLag,
    g.partitionOutbox,
    g.partitionDeadLetters,
    g.partitionsOwned,
  ];
  const callback = async (result: BatchObservableResult) => {
    const owned = source.partitions();
    result.observe(g.partitionsOwned, owned.length);
    const read = Promise.all([source.client.time(), ...owned.map((p) => readPartition(source, p))]);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), COLLECT_TIMEOUT_MS);
    });
    const replies = await Promise.race([read.catch(() => undefined), timeout]);
    clearTimeout(timer);
    if (!replies) return;
    const [time, ...perPartition] = replies;
    const now = parseTime(time) ?? Date.now();
    owned.forEach((p, i) => {
      const r = perPartition[i] as Pipeline;
      if (!r) return;
      const value = (k: number) => (r[k]?.[0] ? undefined : r[k]?.[1]);
      const attrs = { 'tally.partition': p };
      const info = parseGroupInfo(value(0), source.group);
      const pending = parsePendingSummary(value(1) ?? [0, null, null, null]);
      const oldest = streamIdMs(pending.minId);
      const streamTime = int(value(3));
      const observe = (gauge: (typeof gauges)[number], v: number | null | undefined) => {
        if (v !== null && v !== undefined) result.observe(gauge, v, attrs);
      };
      observe(g.partitionLag, info?.lag);
      observe(g.partitionPending, pending.count);
      observe(g.partitionOldestPendingAge, oldest === null ? 0 : Math.max(0, now - oldest));
      observe(g.partitionOpenWindows, int(value(2)));
      observe(g.partitionEventTimeLag, streamTime === undefined ? undefined : Math.max(0, now - streamTime));
      observe(g.partitionOutbox, (int(value(4)) ?? 0) + (int(value(6)) ?? 0));
      observe(g.partitionDeadLetters, int(value(5)));
    });
  };
  return observeBatch(callback, gauges);
}

function readPartition({ client, keys, group }: PartitionGaugeSource, p: number): Promise<Pipeline> {
  const events = keys.events(p);
  // A transaction, not a plain pipeline: the figures are one snapshot (an entry read between XINFO
  // and XPENDING would otherwise count as both lag and pending). All keys share the partition's slot.
  return client
    .multi()
    .xinfo('GROUPS', events)
    .xpending(events, group)
    .zcard(keys.windowIndex(p))
    .hget(keys.state(p), 'streamTime')
    .xlen(keys.outbox(p))
    .xlen(keys.deadLetter(p))
    .xlen(keys.legacyOutbox(p))
    .exec();
}
