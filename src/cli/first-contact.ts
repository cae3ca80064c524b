/**
 * `tally worker`'s first contact with Redis. A worker waits through outages once it has reached Redis
 * (its components reconnect by themselves), but one that has never reached it is most likely pointed
 * at the wrong place (a typo in REDIS_URL, a wrong port): it tries for `worker.connectTimeout` and then
 * ends in one line, as every other command does, instead of waiting forever.
 */
import type { TallyConfig } from '../config/index.js';
import { ErrorCode, TallyError } from '../errors/index.js';
import { checkRedisAccess, maskUrl, type ServerFacts } from '../redis/index.js';
import { sleep } from '../time/index.js';
import { accessScope, withClient } from './options.js';

/** Pause between two attempts: short, so a Redis that comes up meanwhile is used within a second. */
const RETRY_PAUSE_MS = 250;
/** One attempt's connect timeout, at most. */
const ATTEMPT_TIMEOUT_MS = 5_000;

function isFinal(err: unknown): boolean {
  // A denied command, or a certificate that cannot be verified, will not change by waiting.
  if (err instanceof TallyError && err.code === ErrorCode.Permission) return true;
  return /certificate|altnames/i.test((err as Error).message);
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * Reaches Redis and checks what the worker may do there (`checkRedisAccess`), trying again until
 * `timeoutMs` has passed. Throws the reason in one line if it never succeeds.
 */
export async function reachRedis(config: TallyConfig, timeoutMs: number): Promise<ServerFacts> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const remaining = deadline - Date.now();
    try {
      return await withClient(config, (client) => checkRedisAccess(client, accessScope(config)), {
        enableReadyCheck: false,
        // One connection attempt per try: this loop retries, against its own deadline.
        retryStrategy: () => null,
        connectTimeout: Math.max(100, Math.min(ATTEMPT_TIMEOUT_MS, remaining)),
      });
    } catch (err) {
      if (isFinal(err)) throw err;
      if (Date.now() + RETRY_PAUSE_MS >= deadline) {
        const reason = (err as Error).message.replace(/^cannot reach Redis at \S+: /, '');
        throw new TallyError(
          ErrorCode.Unavailable,
          `cannot reach Redis at ${maskUrl(config.redis.url)} (tried for ${formatMs(timeoutMs)}, worker.connectTimeout or --connect-timeout): ${reason}`,
          { cause: err },
        );
      }
      await sleep(RETRY_PAUSE_MS);
    }
  }
}
