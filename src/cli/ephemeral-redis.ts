import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/** A Redis for the demo and the benchmark: the configured one, the local default, or one started here. */
export interface RedisTarget {
  readonly url: string;
  /** How it was found: `REDIS_URL`, the local default port, a redis-server started here, or a container. */
  readonly origin: 'env' | 'local' | 'ephemeral' | 'container';
  stop(): Promise<void>;
}

async function answers(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 500,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined); // a refused connection is an answer here, not an error to print
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Starts a throwaway `redis-server` (no persistence) on a free port; killed on stop or process exit. */
export async function startRedisServer(extraArgs: string[] = []): Promise<RedisTarget> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tally-redis-'));
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--maxmemory-policy',
      'noeviction',
      ...extraArgs,
    ],
    { stdio: 'ignore' },
  );
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  while (!(await answers(url))) {
    if (Date.now() > deadline || child.exitCode !== null || child.signalCode !== null) {
      kill();
      throw new Error(`redis-server on port ${port} did not start`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    origin: 'ephemeral',
    stop: async () => {
      process.removeListener('exit', kill);
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * REDIS_URL if set; else a Redis answering on 127.0.0.1:6379 (unless `preferEphemeral`); else a
 * `redis-server` started on a free port; else a testcontainers Redis where Docker is available.
 */
export async function resolveRedis(
  options: { env?: NodeJS.ProcessEnv; preferEphemeral?: boolean } = {},
): Promise<RedisTarget> {
  const env = options.env ?? process.env;
  if (env.REDIS_URL) return { url: env.REDIS_URL, origin: 'env', stop: () => Promise.resolve() };
  const local = 'redis://127.0.0.1:6379';
  if (!options.preferEphemeral && (await answers(local)))
    return { url: local, origin: 'local', stop: () => Promise.resolve() };
  if (hasRedisServer()) return startRedisServer();
  try {
    const { GenericContainer } = await import('testcontainers');
    const container = await new GenericContainer('redis:7').withExposedPorts(6379).start();
    const url = `redis://${container.getHost()}:${container.getMappedPort(6379)}`;
    return { url, origin: 'container', stop: async () => void (await container.stop()) };
  } catch (err) {
    throw new Error(
      `no Redis found: set REDIS_URL, run one on 127.0.0.1:6379, install redis-server, or run Docker for testcontainers (${(err as Error).message})`,
      { cause: err },
    );
  }
}
