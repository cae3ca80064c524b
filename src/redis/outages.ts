import type { Logger } from 'pino';
import type { RedisClient } from './scripts.js';

/**
 * Logs a Redis outage once for a group of connections (one component's), instead of not at all or once
 * per connection and reconnect attempt.
 *
 * ioredis reconnects by itself with the backoff of `retryStrategy`, and commands wait meanwhile
 * (`maxRetriesPerRequest: null`), so an outage makes nothing fail that the component would log. But a
 * connection without an 'error' listener prints every failed attempt to stderr, unstructured
 * ("[ioredis] Unhandled error event: ECONNREFUSED"), for each of the component's connections. Watched
 * connections get a listener: the first one to drop logs a warning, and when the last one is back one
 * info line says for how long Redis was unreachable.
 */
export class OutageLog {
  private readonly down = new Set<RedisClient>();
  private since = 0;
  private lastError: Error | undefined;

  constructor(private readonly logger: Logger) {}

  /** Watches a connection until it ends (quit, disconnect). */
  watch(client: RedisClient): void {
    client.on('error', (err: Error) => {
      this.lastError = err;
      // A socket error of a ready connection is followed by 'reconnecting'; a few errors (a failed
      // SELECT, a Cluster subscriber) leave the connection up: those are no outage.
      if (client.status !== 'ready') this.lost(client);
      else this.logger.debug({ err }, 'Redis connection error');
    });
    client.on('reconnecting', () => this.lost(client));
    client.on('ready', () => this.back(client));
    // Closed on purpose (or given up): not part of an outage any more, and not a recovery either.
    client.on('end', () => this.down.delete(client));
  }

  private lost(client: RedisClient): void {
    if (this.down.has(client)) return;
    if (this.down.size === 0) {
      this.since = Date.now();
      this.logger.warn(
        { err: this.lastError },
        'lost the connection to Redis; reconnecting with backoff, commands wait meanwhile',
      );
    }
    this.down.add(client);
  }

  private back(client: RedisClient): void {
    if (!this.down.delete(client) || this.down.size > 0) return;
    this.logger.info({ downMs: Date.now() - this.since }, 'reconnected to Redis');
  }
}
