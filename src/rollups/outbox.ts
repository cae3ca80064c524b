import type { JobsOptions } from 'bullmq';
import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { StreamGroup, type RedisClient } from '../redis/index.js';

/** An outbox stream entry; fields are null for an entry deleted while pending. */
export type OutboxEntry = [id: string, fields: string[] | null];

export interface OutboxReaderOptions {
  /** The outbox stream of a partition. */
  readonly key: (partition: number) => string;
  /** Consumer group of the relays reading it. */
  readonly group: string;
  readonly consumer: string;
  /** Entries pending this long on another relay are taken over. */
  readonly claimIdleMs: number;
  /** Entries per read (asked before each read when a function). */
  readonly count: number | (() => number);
  readonly logger: Logger;
}

/**
 * Reads an outbox stream (written by a Lua step in the same atomic step as the state it reports) through
 * a consumer group, hands entries to `publish`, and only then acknowledges and deletes them. A relay that
 * dies in between leaves them pending; another relay takes them over after `claimIdleMs` and publishes
 * them again, which the deterministic BullMQ job ids make a no-op while the first jobs are stored.
 * Shared by the rollup relay and the entitlement notification relay.
 */
export class OutboxReader {
  constructor(
    private readonly client: RedisClient,
    private readonly options: OutboxReaderOptions,
  ) {}

  /** Forgets relay consumers with nothing pending: this one (`minIdleMs` null) or others idle that long. */
  forget(partition: number, minIdleMs: number | null): Promise<number> {
    return StreamGroup.forget(this.client, this.options.key(partition), this.options.group, minIdleMs, [
      this.options.consumer,
    ]);
  }

  async ensureGroup(partition: number): Promise<void> {
    await StreamGroup.ensure(this.client, this.options.key(partition), this.options.group);
  }

  /**
   * Publishes new entries, then ones a dead relay left pending, until none are left; returns how many
   * entries were published. `publish` receives live entries only (never deleted ones).
   */
  async drain(partition: number, publish: (entries: [string, string[]][]) => Promise<void>): Promise<number> {
    const { key, group, consumer, claimIdleMs, logger } = this.options;
    const countOf = () =>
      typeof this.options.count === 'function' ? this.options.count() : this.options.count;
    const outbox = key(partition);
    let total = 0;
    const handle = async (entries: OutboxEntry[]) => {
      const live = entries.filter((e): e is [string, string[]] => e[1] !== null);
      if (live.length > 0) await publish(live);
      const ids = entries.map(([id]) => id);
      await this.client
        .pipeline()
        .xack(outbox, group, ...ids)
        .xdel(outbox, ...ids)
        .exec();
      total += live.length;
    };
    for (;;) {
      let entries: OutboxEntry[];
      try {
        const reply = (await this.client.xreadgroup(
          'GROUP',
          group,
          consumer,
          'COUNT',
          countOf(),
          'STREAMS',
          outbox,
          '>',
        )) as [string, OutboxEntry[]][] | null;
        entries = reply?.[0]?.[1] ?? [];
      } catch (err) {
        if (!StreamGroup.isMissing(err)) throw err;
        logger.error(
          { partition, outbox },
          'outbox consumer group is missing (Redis lost its data?); recreating it',
        );
        await this.ensureGroup(partition);
        continue;
      }
      if (entries.length === 0) break;
      await handle(entries);
    }
    const [, stale] = (await this.client.xautoclaim(
      outbox,
      group,
      consumer,
      claimIdleMs,
      '0-0',
      'COUNT',
      countOf(),
    )) as [string, OutboxEntry[]];
    if (stale.length > 0) await handle(stale);
    return total;
  }
}

/** BullMQ options of every job Tally adds from an outbox (rollups and notifications). */
export function outboxJobOptions(config: TallyConfig): JobsOptions {
  return {
    removeOnComplete: { age: Math.ceil(config.rollups.keepCompletedMs / 1000) },
    removeOnFail: false,
    attempts: config.rollups.attempts,
    backoff: { type: 'exponential', delay: 1000 },
  };
}
