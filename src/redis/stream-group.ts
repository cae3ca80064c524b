import type { RedisClient } from './scripts.js';

/**
 * Consumer-group plumbing shared by every group Tally reads (events, rollup and notification outboxes):
 * create it if missing, and tell a vanished group (NOGROUP: the stream was deleted or Redis lost its
 * data) from other errors.
 */
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

  /** The group (or its stream) is gone. */
  isMissing(err: unknown): boolean {
    return err instanceof Error && err.message.includes('NOGROUP');
  },
} as const;
