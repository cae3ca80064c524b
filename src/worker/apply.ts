import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { EVENT_FIELD } from '../events/index.js';
import type { MeterIndex } from '../meters/index.js';
import type { FailureLog, MeteringScripts, RedisClient, TallyKeys } from '../redis/index.js';
import { instruments, withSpan } from '../telemetry/index.js';
import type { PreparedBatch } from './batch.js';
import type { WorkerStats } from './options.js';
import { packRecords } from './records.js';

/** What a partition consumer needs from the replica that runs it. */
export interface ConsumerContext {
  readonly client: RedisClient;
  readonly scripts: MeteringScripts;
  readonly config: TallyConfig;
  readonly keys: TallyKeys;
  readonly meters: MeterIndex;
  readonly consumer: string;
  readonly logger: Logger;
  readonly stats: WorkerStats;
  /** Logs a failing operation once, until it succeeds again. */
  readonly failures: FailureLog;
}

/**
 * Applies a prepared batch: forwarded copies first, then its applyBatch calls in order (each atomic;
 * an entry spread over several calls is acknowledged by its last). Counts what happened in the stats and the OpenTelemetry instruments. Throws on failure
 * (the caller retries in place).
 */
export async function applyPrepared(
  ctx: ConsumerContext,
  partition: number,
  entries: number,
  prepared: PreparedBatch,
): Promise<void> {
  const { client, keys, stats, config, consumer, scripts } = ctx;
  const started = performance.now();
  await withSpan('apply_batch', { 'tally.partition': partition, 'tally.entries': entries }, async () => {
    // Forwarded copies must be in their home stream before this entry is acked (a crash in
    // between re-forwards them, and the home partition drops the copy as a duplicate).
    await Promise.all(
      prepared.forwards.map((f) => client.xadd(keys.events(f.partition), '*', EVENT_FIELD, f.json)),
    );
    const params = {
      group: config.consumerGroup,
      consumer,
      windows: config.windows,
      generations: config.dedup.generations,
      bucketBits: config.dedup.bucketBits,
    };
    let applied = 0;
    let duplicates = 0;
    let deadLettered = 0;
    let corrected = 0;
    for (const { records, fingerprints } of prepared.calls) {
      const r = await scripts.applyBatch(partition, params, packRecords(records), fingerprints);
      applied += r.applied;
      duplicates += r.duplicates;
      deadLettered += r.deadLettered;
      corrected += r.corrected;
    }
    stats.batches++;
    stats.entries += entries;
    stats.events += prepared.events;
    stats.applied += applied;
    stats.duplicates += duplicates;
    stats.deadLettered += deadLettered;
    stats.corrected += corrected;
    stats.unmetered += prepared.unmetered;
    stats.forwarded += prepared.forwards.length;
    const attrs = { 'tally.partition': partition };
    instruments.eventsApplied.add(applied, attrs);
    instruments.eventsDuplicate.add(duplicates, attrs);
    instruments.eventsDeadLettered.add(deadLettered, attrs);
    instruments.eventsCorrected.add(corrected, attrs);
    instruments.eventsUnmetered.add(prepared.unmetered, attrs);
    instruments.eventsForwarded.add(prepared.forwards.length, attrs);
    instruments.batchDuration.record(performance.now() - started, attrs);
  });
}

/** Keeps the last error of an entry, for the dead letter if it turns out to be poison. */
export async function recordError(
  ctx: ConsumerContext,
  partition: number,
  id: string,
  err: unknown,
): Promise<void> {
  const errors = ctx.keys.errors(partition);
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  await ctx.client
    .pipeline()
    .hset(errors, id, message.slice(0, 500))
    .pexpire(errors, 7 * 86_400_000)
    .exec()
    .catch(() => undefined);
}

/** Moves entries still pending to the dead-letter stream as poison (deadLetterEntries.lua). */
export async function deadLetterPoison(
  ctx: ConsumerContext,
  partition: number,
  entries: readonly (readonly [string, number])[],
): Promise<number> {
  const moved = await ctx.scripts.deadLetterEntries(partition, ctx.config.consumerGroup, entries);
  ctx.stats.poison += moved;
  ctx.stats.deadLettered += moved;
  return moved;
}
