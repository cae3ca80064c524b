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
  /**
   * How long (ms) `send` and `sendBatch` wait for Redis before they reject with a TallyError of code
   * `ERR_TALLY_UNAVAILABLE` naming the Redis and its last connection error (a wrong URL, Redis down or
   * still reconnecting). The write may still happen once Redis is back; sending again is safe (workers
   * drop duplicates). 0 waits as long as it takes.
   * @defaultValue 10000
   */
  sendTimeout?: number;
}

export const defaultProducerOptions = {
  cluster: false,
  prefix: 'tally',
  partitions: 1,
  maxEntryBytes: 1_048_576,
  eventsPerEntry: 100,
  sendTimeout: 10_000,
} satisfies Partial<ProducerOptions>;
