import { isIP } from 'node:net';
// The module itself, not config/index.js: config/ imports this file (a cycle otherwise).
import { parseDuration } from '../config/duration.js';
import { TallyConfigError } from '../errors/index.js';
import type { NotificationsConfigInput } from './schema.js';

/** The resolved `notifications:` section. */
export interface NotificationsConfig {
  readonly webhooks: {
    /** CIDRs and host names (lower case) allowed although loopback, link-local or private. */
    readonly allow: readonly string[];
    /** Delay before attempt i (ms); its length is the number of attempts. */
    readonly retryScheduleMs: readonly number[];
    readonly timeoutMs: number;
    readonly concurrency: number;
    readonly perChannelConcurrency: number;
    readonly pollIntervalMs: number;
  };
}

const MIN_TIMEOUT_MS = 100;
const MIN_POLL_MS = 10;

/** Checks one `allow` entry: a CIDR (a.b.c.d/n, x::/n), a single address, or a host name. */
function checkAllowEntry(entry: string, i: number): string {
  const field = `notifications.webhooks.allow[${i}]`;
  const [address, bits, ...rest] = entry.split('/');
  const family = isIP(address ?? '');
  if (family !== 0) {
    const max = family === 4 ? 32 : 128;
    if (rest.length > 0 || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= max)))
      throw new TallyConfigError(field, `expected a CIDR such as 10.0.0.0/8, got ${JSON.stringify(entry)}`);
    return entry.toLowerCase();
  }
  if (bits !== undefined || !/^[A-Za-z0-9.-]{1,253}$/.test(entry))
    throw new TallyConfigError(field, `expected a CIDR or a host name, got ${JSON.stringify(entry)}`);
  return entry.toLowerCase();
}

export function resolveNotificationsConfig(data: NotificationsConfigInput): NotificationsConfig {
  const w = data.webhooks;
  const timeoutMs = parseDuration(w.timeout, 'notifications.webhooks.timeout');
  if (timeoutMs < MIN_TIMEOUT_MS)
    throw new TallyConfigError(
      'notifications.webhooks.timeout',
      `expected at least ${MIN_TIMEOUT_MS}ms, got ${timeoutMs}ms`,
    );
  const pollIntervalMs = parseDuration(w.pollInterval, 'notifications.webhooks.pollInterval');
  if (pollIntervalMs < MIN_POLL_MS)
    throw new TallyConfigError(
      'notifications.webhooks.pollInterval',
      `expected at least ${MIN_POLL_MS}ms, got ${pollIntervalMs}ms`,
    );
  return {
    webhooks: {
      allow: w.allow.map(checkAllowEntry),
      retryScheduleMs: w.retrySchedule.map((d, i) =>
        parseDuration(d, `notifications.webhooks.retrySchedule[${i}]`),
      ),
      timeoutMs,
      concurrency: w.concurrency,
      perChannelConcurrency: w.perChannelConcurrency,
      pollIntervalMs,
    },
  };
}
