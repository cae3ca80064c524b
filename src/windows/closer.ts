import type { TallyConfig } from '../config/index.js';
import { runScript, TallyKeys, type RedisClient } from '../redis/index.js';

export interface CloseResult {
  readonly windowsClosed: number;
  readonly rollups: number;
  readonly corrections: number;
  /** The close watermark after this pass (epoch ms): windows with end + grace at or before it are closed. */
  readonly closedThrough: number;
  /** False when the partition's stream or consumer group does not exist (yet, or any more). */
  readonly groupExists: boolean;
}

/**
 * Closes every due window of a partition and emits pending corrections (closeWindows.lua), in bounded
 * steps until nothing due remains. Safe to run from any number of replicas at once.
 */
export async function closeDueWindows(
  client: RedisClient,
  config: TallyConfig,
  partition: number,
  maxWindowsPerCall = 200,
  maxCorrectionsPerCall = 1000,
): Promise<CloseResult> {
  const keys = new TallyKeys(config.prefix);
  let windowsClosed = 0;
  let rollups = 0;
  let corrections = 0;
  for (;;) {
    const [w, r, c, more, closedThrough, status] = (await runScript(
      client,
      'closeWindows',
      [
        keys.events(partition),
        keys.state(partition),
        keys.windowIndex(partition),
        keys.corrections(partition),
        keys.outbox(partition),
        keys.partitionBase(partition),
      ],
      [
        config.consumerGroup,
        config.windows.graceMs,
        config.windows.idleTimeoutMs,
        config.windows.retentionMs,
        maxWindowsPerCall,
        maxCorrectionsPerCall,
      ],
    )) as [number, number, number, number, string, string];
    windowsClosed += w;
    rollups += r;
    corrections += c;
    if (more !== 1 || status !== 'ok') {
      return { windowsClosed, rollups, corrections, closedThrough: Number(closedThrough), groupExists: status === 'ok' };
    }
  }
}
