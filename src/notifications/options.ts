import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { TallyConfigError } from '../errors/index.js';
import type { RedisClient } from '../redis/index.js';

export interface WebhookDeliveryOptions {
  config: TallyConfig;
  /** A connection to use (not closed by `close()`). @defaultValue one opened from the config */
  connection?: RedisClient;
  logger?: Logger;
  /** Name of this replica in lease tokens. @defaultValue host, pid and a random tag */
  consumerName?: string;
  /**
   * How long a claimed attempt is reserved for this replica: past it, another replica may attempt it
   * again. Must exceed the attempt timeout. @defaultValue timeout + 5 s
   */
  leaseMs?: number;
  /** Due deliveries a claim looks at, to skip channels at their limit. @defaultValue 500 */
  scan?: number;
}

export const defaultWebhookDeliveryOptions = { scan: 500 } satisfies Partial<WebhookDeliveryOptions>;

export function checkLease(leaseMs: number, timeoutMs: number): void {
  if (!Number.isFinite(leaseMs) || leaseMs <= timeoutMs)
    throw new TallyConfigError(
      'leaseMs',
      `expected more than the attempt timeout (${timeoutMs} ms), got ${leaseMs}`,
    );
}
