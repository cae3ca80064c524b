import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { registerScripts, type RedisClient } from './scripts.js';

/** Where Tally connects: one Redis by URL, or a Redis Cluster whose startup nodes include the URL's. */
export interface RedisTarget {
  readonly url: string;
  readonly cluster?: boolean;
  /** More Cluster startup nodes, `host:port`. */
  readonly nodes?: readonly string[];
}

const baseOptions: RedisOptions = {
  // Commands wait through a reconnect instead of failing (what BullMQ requires of worker connections).
  maxRetriesPerRequest: null,
  enableReadyCheck: true,
  retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
};

/** Opens a connection for Tally (a Cluster client when `cluster` is set), with every script registered. */
export function connect(target: string | RedisTarget, options: RedisOptions = {}): RedisClient {
  const { url, cluster = false, nodes = [] } = typeof target === 'string' ? { url: target } : target;
  let client: RedisClient;
  if (cluster) {
    const parsed = new URL(url);
    const startup = [`${parsed.hostname}:${parsed.port || 6379}`, ...nodes].map((n) => {
      const [host, port] = n.split(':');
      return { host: host as string, port: Number(port ?? 6379) };
    });
    const auth: RedisOptions = {
      ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
      ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
      ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
    };
    client = new Cluster(startup, {
      redisOptions: { ...baseOptions, ...auth, ...options },
      clusterRetryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    });
  } else {
    client = new Redis(url, { ...baseOptions, ...options });
  }
  registerScripts(client);
  return client;
}

/** A dedicated copy of a connection (same options), e.g. for blocking reads. */
export function duplicate(client: RedisClient): RedisClient {
  const copy = client.duplicate();
  registerScripts(copy);
  return copy;
}

/** `redis://user:secret@host` → `redis://user:***@host`: a Redis URL fit for logs and messages. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}
