/**
 * vitest globalSetup: decides the one Redis all test files share, hands its URL to them with
 * `project.provide('redisUrl', ...)` (read with `inject('redisUrl')`, see test/support/redis.ts) and tears it
 * down at the end. In order of preference:
 * 1. `REDIS_URL` if set (nothing started, nothing torn down);
 * 2. a local `redis-server` on a free port (never 6379: a developer's own Redis stays untouched);
 * 3. testcontainers `redis:7` (needs Docker).
 * Tests that kill or restart Redis start their own server with test/support/redis-server.ts.
 */
import type { TestProject } from 'vitest/node';
import { hasRedisServerBinary, startRedisServer } from './support/redis-server.js';

type Teardown = () => Promise<void>;

async function startContainer(): Promise<{ url: string; teardown: Teardown }> {
  // Imported lazily: loading testcontainers is slow and useless when a binary or REDIS_URL exists.
  const { GenericContainer } = await import('testcontainers');
  const container = await new GenericContainer('redis:7')
    .withExposedPorts(6379)
    .withCommand(['redis-server', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'])
    .start()
    .catch((err: unknown) => {
      throw new Error(
        'No Redis for the tests: REDIS_URL is not set, no redis-server binary was found (PATH or REDIS_SERVER_BIN), ' +
          'and testcontainers could not start redis:7 (is Docker running?)',
        { cause: err },
      );
    });
  return {
    url: `redis://${container.getHost()}:${container.getMappedPort(6379)}`,
    teardown: async () => {
      await container.stop();
    },
  };
}

export default async function setup(project: TestProject): Promise<Teardown> {
  const external = process.env.REDIS_URL;
  if (external) {
    project.provide('redisUrl', external);
    project.provide('redisMode', 'external');
    return async () => {};
  }
  if (hasRedisServerBinary()) {
    const server = await startRedisServer();
    project.provide('redisUrl', server.url);
    project.provide('redisMode', 'local');
    return () => server.stop();
  }
  const { url, teardown } = await startContainer();
  project.provide('redisUrl', url);
  project.provide('redisMode', 'container');
  return teardown;
}
