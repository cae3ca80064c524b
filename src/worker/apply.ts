import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import type { ApplyBatchReply, FailureLog, MeteringScripts, RedisClient, TallyKeys } from '../redis/index.js';
import type { RegistryFollower } from '../registry/index.js';
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
  /** The meter registry as this replica follows it: each partition's view comes from it. */
  readonly registry: RegistryFollower;
  readonly consumer: string;
  readonly logger: Logger;
  readonly stats: WorkerStats;
  /** Logs a failing operation once, until it succeeds again. */
  readonly failures: FailureLog;
}

/**
 * Applies a prepared batch: forwarded copies first, then its applyBatch calls in order (each atomic;
 * an entry spread over several calls is acknowledged by its last). Counts what happened in the stats
 * and the OpenTelemetry instruments. Throws on failure (the caller retries in place).
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
      prepared.forwards.map((f) => client.xadd(keys.events(f.partition), '*', ...f.fields)),
    );
    const params = {
      group: config.consumerGroup,
      consumer,
      windows: config.windows,
      generations: config.dedup.generations,
      bucketBits: config.dedup.bucketBits,
      registryVersion: prepared.registryVersion,
    };
    // Calls are sent without waiting for each other (one connection runs them in order), unless an
    // entry spans calls: its last call acknowledges it, so that call must not run after an earlier
    // part failed. Each call acknowledges only entries it holds whole, so when one call fails the
    // others stand, and the retry finds their entries acknowledged (skipped) and the failed call's
    // events applied before the failure remembered (duplicates).
    const run = (c: PreparedBatch['calls'][number]) =>
      scripts.applyBatch(partition, params, packRecords(c.records), c.fingerprints);
    let replies: PromiseSettledResult<ApplyBatchReply>[];
    if (prepared.chained) {
      replies = [];
      for (const c of prepared.calls) {
        const reply = await run(c).then(
          (value) => ({ status: 'fulfilled', value }) as const,
          (reason: unknown) => ({ status: 'rejected', reason }) as const,
        );
        replies.push(reply);
        if (reply.status === 'rejected') break;
      }
    } else {
      replies = await Promise.allSettled(prepared.calls.map(run));
    }
    let applied = 0;
    let duplicates = 0;
    let deadLettered = 0;
    let corrected = 0;
    let failure: PromiseRejectedResult | undefined;
    for (const r of replies) {
      if (r.status === 'rejected') {
        failure ??= r;
        continue;
      }
      applied += r.value.applied;
      duplicates += r.value.duplicates;
      deadLettered += r.value.deadLettered;
      corrected += r.value.corrected;
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
    if (failure) throw failure.reason;
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
