import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { registerScripts, type RedisClient } from './scripts.js';

/** TLS settings of a `rediss://` connection (the config's `redis.tls`, its files read). */
export interface RedisTls {
  /** CA certificates to trust instead of the system ones (PEM). */
  readonly ca?: Buffer;
  /** Client certificate and key, for a server that asks for one (mutual TLS; PEM). */
  readonly cert?: Buffer;
  readonly key?: Buffer;
  /** The name the server certificate must carry (and SNI), when it is not the URL's host. */
  readonly servername?: string;
}

/** Where Tally connects: one Redis by URL, or a Redis Cluster whose startup nodes include the URL's. */
export interface RedisTarget {
  readonly url: string;
  readonly cluster?: boolean;
  /** More Cluster startup nodes, `host:port`. */
  readonly nodes?: readonly string[];
  /** TLS settings (with a `rediss://` URL). */
  readonly tls?: RedisTls | undefined;
}

const baseOptions: RedisOptions = {
  // Commands wait through a reconnect instead of failing (what BullMQ requires of worker connections).
  maxRetriesPerRequest: null,
  enableReadyCheck: true,
  retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
};

/** Opens a connection for Tally (a Cluster client when `cluster` is set), with every script registered. */
export function connect(target: string | RedisTarget, options: RedisOptions = {}): RedisClient {
  const { url, cluster = false, nodes = [], tls } = typeof target === 'string' ? { url: target } : target;
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
      ...(parsed.protocol === 'rediss:' ? { tls: { ...tls } } : {}),
    };
    client = new Cluster(startup, {
      redisOptions: { ...baseOptions, ...auth, ...options },
      clusterRetryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    });
  } else {
    client = new Redis(url, { ...baseOptions, ...(tls ? { tls: { ...tls } } : {}), ...options });
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
