import { epochOf } from '../dedup/index.js';
import { STALE_CONSUMER_MS, StreamGroup } from '../redis/index.js';
import type { RollupRelay } from '../rollups/index.js';
import { instruments } from '../telemetry/index.js';
import type { ConsumerContext } from './apply.js';
import type { HousekeepingStep } from './housekeeping.js';
import type { PartitionConsumer } from './partition-consumer.js';

const SWEEP_EVERY_MS = 60_000;
const TRIM_EVERY_MS = 1_000;
/**
 * Budgets per script call, so no single call holds Redis for long. closeWindows' is in rollups written
 * per call (a window started counts 3, a correction 2: see closeWindows-6.lua), not in windows: a
 * window of 500 subjects x several meters holds thousands of groups. Measured on the 2-core reference
 * machine with SLOWLOG, one window of 4,500 groups closed call after call: ~10 us per rollup (XADD to
 * the outbox, HSCAN share, `r:` HSET), so a call of 160 takes ~1.7 ms, well under the 5 ms ceiling
 * of issue 10 also on a busy machine.
 */
const MAX_ROLLUPS_PER_CALL = 160;
const MAX_CORRECTIONS_PER_CALL = 1000;
const MAX_DEDUP_KEYS_PER_CALL = 2000;

/**
 * Removes consumers with nothing pending from the partition's consumer groups (events and outbox):
 * this replica's own (`minIdleMs` null) or, with a minimum idle time, other replicas' long gone ones.
 */
export async function forgetConsumers(
  ctx: ConsumerContext,
  relay: RollupRelay,
  partition: number,
  minIdleMs: number | null,
): Promise<number> {
  const { client, keys, config, consumer } = ctx;
  return (
    (await StreamGroup.forget(client, keys.events(partition), config.consumerGroup, minIdleMs, [consumer])) +
    (await relay.forgetConsumers(partition, minIdleMs))
  );
}

/**
 * The housekeeping table of one partition: what runs, how often. Every step is a bounded script call
 * that is safe to run from any number of replicas at once.
 */
export function partitionHousekeeping(
  ctx: ConsumerContext,
  consumer: PartitionConsumer,
  relay: RollupRelay,
): HousekeepingStep[] {
  const { partition } = consumer;
  const { config, scripts, logger, stats } = ctx;
  const { claimIdleMs } = config.worker;
  return [
    {
      // Closes every due window and emits pending corrections (closeWindows.lua), until none remain: a
      // few hundred rollups per call, a big window over several calls.
      step: 'close-windows',
      every: 0,
      run: async () => {
        let windowsClosed = 0;
        let corrections = 0;
        for (;;) {
          const r = await scripts.closeWindows(
            partition,
            config.consumerGroup,
            config.windows,
            MAX_ROLLUPS_PER_CALL,
            MAX_CORRECTIONS_PER_CALL,
          );
          windowsClosed += r.windowsClosed;
          corrections += r.corrections;
          if (!r.more) break;
        }
        stats.windowsClosed += windowsClosed;
        instruments.windowsClosed.add(windowsClosed, { 'tally.partition': partition });
        if (windowsClosed > 0 || corrections > 0)
          logger.debug({ partition, windowsClosed, corrections }, 'windows closed');
      },
    },
    {
      step: 'relay',
      every: 0,
      run: async () => {
        stats.rollupsRelayed += await relay.relay(partition);
      },
    },
    {
      // Entries idle for claimIdle: a dead replica's without leases, a stalled one's, or (a safety net)
      // this consumer's own that it lost track of. Applying an entry twice at once is harmless: only
      // one applyBatch finds it still pending for its consumer.
      step: 'reclaim',
      every: Math.max(250, Math.floor(claimIdleMs / 2)),
      run: async () => {
        const claimed = await consumer.claimPending(claimIdleMs);
        if (claimed > 0)
          logger.info(
            { partition, reclaimed: claimed },
            'reclaimed entries left pending by another consumer',
          );
      },
    },
    {
      step: 'trim',
      every: TRIM_EVERY_MS,
      run: () =>
        scripts.trimStream(partition, config.consumerGroup, config.trim.retainAckedMs, config.trim.maxLength),
    },
    {
      // Deletes dedup buckets of epochs that have left the horizon (sweepDedup.lua), in bounded steps.
      step: 'sweep-dedup',
      every: SWEEP_EVERY_MS,
      run: async (now) => {
        const current = epochOf(now, config.dedup.epochMs);
        let deleted = 0;
        for (;;) {
          const r = await scripts.sweepDedup(
            partition,
            current,
            config.dedup.generations,
            MAX_DEDUP_KEYS_PER_CALL,
          );
          deleted += r.deleted;
          if (!r.more) break;
        }
        if (deleted > 0) logger.info({ partition, deleted }, 'forgot dedup buckets past the horizon');
      },
    },
    {
      step: 'forget-consumers',
      every: SWEEP_EVERY_MS,
      run: async () => {
        const removed = await forgetConsumers(ctx, relay, partition, STALE_CONSUMER_MS);
        if (removed > 0)
          logger.info({ partition, removed }, 'removed consumers of dead replicas (idle, nothing pending)');
      },
    },
  ];
}
