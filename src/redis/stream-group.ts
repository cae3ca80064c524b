import { runScript, type RedisClient } from './scripts.js';

/**
 * Consumer-group plumbing shared by every group Tally reads (events, rollup and notification outboxes):
 * create it if missing, tell a vanished group (NOGROUP: the stream was deleted or Redis lost its data)
 * from other errors, and forget the consumers of processes that are gone.
 */
/** Consumers idle this long with nothing pending belonged to processes that are gone. */
export const STALE_CONSUMER_MS = 3_600_000;

export const StreamGroup = {
  /** Creates `group` on `stream` (and the stream) from the start. True if it was created, false if it existed. */
  async ensure(client: RedisClient, stream: string, group: string): Promise<boolean> {
    try {
      await client.xgroup('CREATE', stream, group, '0', 'MKSTREAM');
      return true;
    } catch (err) {
      if ((err as Error).message.includes('BUSYGROUP')) return false;
      throw err;
    }
  },

  /**
   * Removes consumers with nothing pending from a group (forgetConsumers.lua): the named ones
   * (`minIdleMs` null: a process leaving) or, with a minimum idle time, every other one idle that long
   * (replicas gone long ago), never the named. Returns how many it removed.
   */
  async forget(
    client: RedisClient,
    stream: string,
    group: string,
    minIdleMs: number | null,
    names: readonly string[],
  ): Promise<number> {
    return Number(
      await runScript(
        client,
        'forgetConsumers',
        [stream],
        [group, minIdleMs === null ? '' : minIdleMs, ...names],
      ),
    );
  },

  /** The group (or its stream) is gone. */
  isMissing(err: unknown): boolean {
    return err instanceof Error && err.message.includes('NOGROUP');
  },
} as const;
