import type { TallyConfig } from '../config/index.js';
import { runScript, TallyKeys, type RedisClient } from '../redis/index.js';
import { epochOf } from './fingerprint.js';

/**
 * Deletes dedup buckets of epochs that have left the horizon, in bounded steps (sweepDedup.lua).
 * Returns the number of keys deleted.
 */
export async function sweepDedup(
  client: RedisClient,
  config: TallyConfig,
  partition: number,
  nowMs = Date.now(),
  maxKeysPerCall = 2000,
): Promise<number> {
  const keys = new TallyKeys(config.prefix);
  const current = epochOf(nowMs, config.dedup.epochMs);
  let deleted = 0;
  for (;;) {
    const [n, , more] = (await runScript(
      client,
      'sweepDedup',
      [keys.dedupEpochs(partition), keys.partitionBase(partition)],
      [current, config.dedup.generations, maxKeysPerCall],
    )) as [number, number, number];
    deleted += n;
    if (more !== 1) return deleted;
  }
}
