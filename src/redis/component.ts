import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { pino, type Logger } from 'pino';
import { connect, type RedisTarget } from './connection.js';
import { FailureLog } from './failure-log.js';
import { OutageLog } from './outages.js';
import type { RedisClient } from './scripts.js';

/** A name for this process's consumers and leases: host, pid and a random tag (unique across restarts). */
export function processConsumerName(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

export interface ComponentOptions {
  /** A connection to use instead of opening one; it is not closed by `close()`. */
  readonly connection?: RedisClient | undefined;
  readonly logger?: Logger | undefined;
}

/**
 * What every long-lived Tally component shares (after BullMQ's QueueBase): its Redis connection
 * (opened from the config unless one is passed in, and then closed only if it opened it), a logger
 * child named after the component, an outage log over its connections, a log-once failure log, and an
 * idempotent `close()` that runs the component's own shutdown once and never throws.
 */
export abstract class RedisComponent {
  protected readonly client: RedisClient;
  protected readonly logger: Logger;
  protected readonly failures: FailureLog;
  protected readonly outages: OutageLog;
  private readonly ownsClient: boolean;
  private closing: Promise<void> | undefined;

  constructor(redis: RedisTarget, options: ComponentOptions, fields: Record<string, unknown>) {
    this.ownsClient = options.connection === undefined;
    this.client = options.connection ?? connect(redis);
    this.logger = (options.logger ?? pino({ level: process.env.LOG_LEVEL ?? 'info' })).child(fields);
    // Every connection of the component is watched, so an outage is logged once, not per connection and retry.
    this.outages = new OutageLog(this.logger);
    this.outages.watch(this.client);
    this.failures = new FailureLog(this.logger);
  }

  /** True once `close()` was called. */
  protected get isClosing(): boolean {
    return this.closing !== undefined;
  }

  /** Stops the component (its own `shutdown` first, then the connection it opened). Idempotent; never throws. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.shutdown().catch((err: unknown) => this.logger.warn({ err }, 'shutting down failed'));
      if (this.ownsClient) await this.client.quit().catch(() => this.client.disconnect());
    })();
    return this.closing;
  }

  /** The component's own shutdown: stop loops, drain work, close what else it opened. */
  protected abstract shutdown(): Promise<void>;
}
