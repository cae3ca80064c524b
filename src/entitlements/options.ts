import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { TallyConfigError } from '../errors/index.js';
import type { MeterIndex } from '../meters/index.js';
import type { RedisClient } from '../redis/index.js';
import type { NotificationJob } from './schema.js';

/** Options shared by EntitlementStore, EntitlementChecker and EntitlementEvaluator. */
export interface EntitlementsOptions {
  /** The resolved configuration (`resolveConfig` / `loadConfigFile`). */
  config: TallyConfig;
  /** A connection to use instead of opening one from the config; it is not closed by `close()`. */
  connection?: RedisClient;
  /**
   * The meters as this process follows them in the registry (a RegistryFollower's `index`), shared
   * with the process's other components.
   * @defaultValue the config's meters
   */
  meters?: MeterIndex;
  /**
   * Structured logger; each component logs through a child.
   * @defaultValue a pino logger at level `LOG_LEVEL` or `info`
   */
  logger?: Logger;
}

export interface CheckerOptions extends EntitlementsOptions {
  /**
   * Subject definitions kept in memory (least recently used go first). Every check still verifies the
   * cached version in Redis, so the cache never serves a changed definition.
   * @defaultValue 10000
   */
  cacheSize?: number;
  /**
   * How often (ms) a check looks for a new version of the published entitlement definitions (features
   * and defaults): one HGET at most this often. They change when an evaluator starts with other ones.
   * @defaultValue 1000
   */
  definitionsRefreshMs?: number;
}

export const defaultCheckerOptions = {
  cacheSize: 10_000,
  definitionsRefreshMs: 1000,
} satisfies Partial<CheckerOptions>;

export interface EvaluatorOptions extends EntitlementsOptions {
  /**
   * Consumer name in the notification outbox consumer groups: unique per replica.
   * @defaultValue `<hostname>-<pid>-<random>`
   */
  consumerName?: string;
  /**
   * Rollup jobs applied at once.
   * @defaultValue config.entitlements.concurrency
   */
  concurrency?: number;
  /**
   * Run even when Redis's `maxmemory-policy` is not `noeviction` (with a warning). Eviction can delete
   * dedup buckets (events counted twice), window hashes (lost totals) and BullMQ jobs; without this
   * option `start()` refuses such a Redis.
   * @defaultValue false
   */
  allowEviction?: boolean;
  /**
   * Called with each batch of notifications after the relay added them to the queue and before it
   * acknowledges their outbox entries: a crash in between calls it again with the same ones, so it
   * must be idempotent (the notification rules feed is, see src/notifications/feed.ts).
   * @defaultValue none
   */
  onNotifications?: (jobs: NotificationJob[]) => Promise<void>;
}

export function checkCacheSize(value: number): void {
  if (!Number.isInteger(value) || value < 1)
    throw new TallyConfigError('cacheSize', `expected an integer ≥ 1, got ${value}`);
}

export function checkRefreshMs(value: number): void {
  if (!Number.isFinite(value) || value < 0)
    throw new TallyConfigError('definitionsRefreshMs', `expected a number of ms ≥ 0, got ${value}`);
}

/** Counters of one evaluator since it started. */
export interface EvaluatorStats {
  /** Rollup jobs handled. */
  rollups: number;
  /** (rollup, feature) applications that changed usage. */
  applied: number;
  /** Redelivered or superseded revisions that changed nothing. */
  duplicates: number;
  /** Rollups of windows before a restarted tracking, or of meters no entitlement measures. */
  skipped: number;
  /** Re-plans because a definition changed under a step. */
  stale: number;
  notificationsWritten: number;
  notificationsRelayed: number;
  resets: number;
  failedJobs: number;
}

export const emptyEvaluatorStats = (): EvaluatorStats => ({
  rollups: 0,
  applied: 0,
  duplicates: 0,
  skipped: 0,
  stale: 0,
  notificationsWritten: 0,
  notificationsRelayed: 0,
  resets: 0,
  failedJobs: 0,
});
