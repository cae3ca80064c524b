import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import type { RedisClient } from '../redis/index.js';

export interface WorkerOptions {
  /** The resolved configuration (`resolveConfig` / `loadConfigFile`). */
  config: TallyConfig;
  /**
   * A connection to use instead of opening one from `config.redisUrl`; the worker does not close it.
   * Blocking reads always get dedicated duplicates.
   */
  connection?: RedisClient;
  /**
   * Structured logger; each component logs through a child.
   * @defaultValue a pino logger at level `LOG_LEVEL` or `info`
   */
  logger?: Logger;
  /**
   * Consumer name in the consumer groups: unique per replica.
   * @defaultValue `<hostname>-<pid>-<random>`
   */
  consumerName?: string;
  /**
   * Partitions this replica reads. Several replicas may read the same partition (the consumer group
   * shares its entries among them).
   * @defaultValue all partitions
   */
  partitions?: readonly number[];
  /**
   * Run even when Redis's `maxmemory-policy` is not `noeviction` (with a warning). Eviction can delete
   * dedup buckets (events counted twice), window hashes (lost totals) and BullMQ jobs; without this
   * option `start()` refuses such a Redis.
   * @defaultValue false
   */
  allowEviction?: boolean;
  /**
   * How often the meter registry's version is read (one HGET): a meter added or deleted anywhere is
   * followed within about this long (and at once by a partition whose version moved under a batch).
   * @defaultValue 1000
   */
  registryIntervalMs?: number;
}

/** Counters of one worker since it started (the event counters are also OpenTelemetry metrics). */
export interface WorkerStats {
  entries: number;
  batches: number;
  events: number;
  applied: number;
  duplicates: number;
  deadLettered: number;
  corrected: number;
  unmetered: number;
  forwarded: number;
  reclaimed: number;
  poison: number;
  windowsClosed: number;
  rollupsRelayed: number;
}

export const emptyStats = (): WorkerStats => ({
  entries: 0,
  batches: 0,
  events: 0,
  applied: 0,
  duplicates: 0,
  deadLettered: 0,
  corrected: 0,
  unmetered: 0,
  forwarded: 0,
  reclaimed: 0,
  poison: 0,
  windowsClosed: 0,
  rollupsRelayed: 0,
});
