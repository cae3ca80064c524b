import type { Logger } from 'pino';
import type { RedisClient, RedisTarget } from '../redis/index.js';

export interface ProducerOptions {
  /**
   * A Redis URL, a target (`{ url, cluster, nodes }`, as in the config's `redis` section), or a
   * connection (ioredis Redis or Cluster) the producer will use but not close.
   */
  redis: string | RedisTarget | RedisClient;
  /**
   * With a URL in `redis`: connect to a Redis Cluster (the URL is one startup node).
   * @defaultValue false
   */
  cluster?: boolean;
  /**
   * Stream key prefix.
   * @defaultValue 'tally'
   */
  prefix?: string;
  /**
   * Number of stream partitions; must match the workers' config.
   * @defaultValue 1
   */
  partitions?: number;
  /**
   * Largest stream entry the producer writes; workers dead-letter larger ones.
   * @defaultValue 1048576
   */
  maxEntryBytes?: number;
  /**
   * Logs a Redis outage of the producer's own connection once (a warning, then one line when it is
   * back); without it, outages are silent (commands wait and resume).
   */
  logger?: Logger;
  /**
   * Events per batch entry written by `sendBatch` (field `events`).
   * @defaultValue 100
   */
  eventsPerEntry?: number;
}

export const defaultProducerOptions = {
  cluster: false,
  prefix: 'tally',
  partitions: 1,
  maxEntryBytes: 1_048_576,
  eventsPerEntry: 100,
} satisfies Partial<ProducerOptions>;
