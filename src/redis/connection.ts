import { Redis, type RedisOptions } from 'ioredis';
import { registerScripts, type RedisClient } from './scripts.js';

/**
 * Opens a connection for Tally. `maxRetriesPerRequest: null` lets commands wait through a reconnect
 * instead of failing (what BullMQ requires of worker connections); the retry strategy backs off to 2 s.
 */
export function connect(url: string, options: RedisOptions = {}): Redis {
  const client = new Redis(url, {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    ...options,
  });
  registerScripts(client);
  return client;
}

/** A dedicated copy of a connection (same options), e.g. for blocking reads. */
export function duplicate(client: RedisClient): RedisClient {
  const copy = client.duplicate();
  registerScripts(copy);
  return copy;
}
