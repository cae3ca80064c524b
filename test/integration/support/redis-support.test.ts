/**
 * Self-tests of the Redis test infrastructure: local servers (AOF across restarts, SIGKILL, clean-up) and
 * a local 3-master cluster (restart of a node, slot migration seen by ioredis as MOVED).
 */
import { existsSync } from 'node:fs';
import { Cluster } from 'ioredis';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { startRedisCluster } from '../../support/redis-cluster.js';
import type { RedisClusterHandle } from '../../support/redis-cluster.js';
import { hasRedisServerBinary, startRedisServer, stopAllRedisServers } from '../../support/redis-server.js';
import { createTestRedis, testRedisUrl, uniquePrefix, waitFor } from '../../support/redis.js';

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`isAlive: refusing pid ${pid}`); // kill(-1) = everyone
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

afterAll(stopAllRedisServers);

describe('shared Redis from global setup', () => {
  test('is reachable, isolated from 6379 when started locally, and prefixes are unique', async () => {
    const redis = createTestRedis();
    const prefix = uniquePrefix('support');
    expect(prefix).toMatch(/^t-support-[0-9a-f]{8}$/);
    expect(uniquePrefix()).toMatch(/^t-[0-9a-f]{8}$/);
    expect(uniquePrefix('x')).not.toBe(uniquePrefix('x'));
    if (inject('redisMode') === 'local') expect(new URL(testRedisUrl()).port).not.toBe('6379');
    await redis.set(`${prefix}:k`, 'v');
    expect(await redis.get(`${prefix}:k`)).toBe('v');
    await redis.del(`${prefix}:k`);
  });

  test('waitFor returns the first ready value and times out with the message', async () => {
    let calls = 0;
    const value = await waitFor(() => (++calls >= 3 ? { calls } : undefined), { intervalMs: 5 });
    expect(value).toEqual({ calls: 3 });
    await expect(
      waitFor(() => false, { timeoutMs: 100, intervalMs: 10, message: 'never true' }),
    ).rejects.toThrow(/waitFor timed out after \d+ ms .*never true/);
    // A hanging fn is cut off at the deadline too.
    await expect(waitFor(() => new Promise<never>(() => {}), { timeoutMs: 100 })).rejects.toThrow(
      /timed out/,
    );
  });
});

describe.runIf(hasRedisServerBinary())('startRedisServer', () => {
  test('uses safe defaults on a free port', async () => {
    const server = await startRedisServer();
    const redis = createTestRedis({ url: server.url });
    expect(server.port).not.toBe(6379);
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
    expect(await redis.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
    expect(await redis.config('GET', 'save')).toEqual(['save', '']);
    expect(await redis.config('GET', 'bind')).toEqual(['bind', '127.0.0.1']);
    expect(await redis.config('GET', 'dir')).toEqual(['dir', server.dir]);
    await redis.quit();
    await server.stop();
    expect(isAlive(server.pid)).toBe(false);
    expect(existsSync(server.dir)).toBe(false);
  });

  test('keeps AOF data across SIGKILL + restart and graceful restart; SIGKILL ends the process', async () => {
    const server = await startRedisServer({ appendonly: true, appendfsync: 'always' });
    const redis = createTestRedis({ url: server.url });
    const model = new Map<string, string>();
    for (let i = 0; i < 50; i++) model.set(`k:${i}`, `v${i}`);
    await redis.mset(model);
    await redis.xadd('s', '1-1', 'n', '1');

    const firstPid = server.pid;
    await server.kill('SIGKILL');
    expect(isAlive(firstPid)).toBe(false);
    await server.restart();
    expect(server.pid).not.toBe(firstPid);
    // The client reconnects by itself (maxRetriesPerRequest null queues the command meanwhile).
    expect(await redis.mget([...model.keys()])).toEqual([...model.values()]);
    expect(await redis.xlen('s')).toBe(1);

    model.set('k:after', 'x');
    await redis.set('k:after', 'x');
    await server.restart(); // graceful (SIGTERM) this time
    expect(await redis.mget([...model.keys()])).toEqual([...model.values()]);

    const pid = server.pid;
    expect(isAlive(pid)).toBe(true);
    await server.kill('SIGKILL');
    expect(isAlive(pid)).toBe(false);
    redis.disconnect();
    await server.stop(); // after a kill: only removes the dir
    expect(existsSync(server.dir)).toBe(false);
  });

  test('stopAllRedisServers ends every server and removes their dirs', async () => {
    const servers = await Promise.all([startRedisServer(), startRedisServer()]);
    expect(new Set(servers.map((s) => s.port)).size).toBe(2);
    const pids = servers.map((s) => s.pid);
    await stopAllRedisServers();
    expect(pids.map(isAlive)).toEqual([false, false]);
    expect(servers.map((s) => existsSync(s.dir))).toEqual([false, false]);
  });
});

describe.runIf(hasRedisServerBinary())('startRedisCluster', () => {
  let cluster: RedisClusterHandle;
  let client: Cluster;
  const model = new Map<string, string>();

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3, appendonly: true });
    client = new Cluster(cluster.startupNodes, { redisOptions: { maxRetriesPerRequest: null } });
  });

  afterAll(async () => {
    client?.disconnect();
    await cluster?.stop();
  });

  const direct = (i: number): Redis => {
    const node = cluster.nodes[i];
    if (!node) throw new Error(`no node ${i}`);
    return createTestRedis({ url: `redis://${node.host}:${node.port}`, maxRetriesPerRequest: 1 });
  };

  test('spreads hash-tagged keys over all masters and keeps them across restartNode(0)', async () => {
    for (let i = 0; i < 30; i++) model.set(`{tag-${i}}:k`, `v${i}`);
    await Promise.all([...model].map(([k, v]) => client.set(k, v)));

    const sizes = await Promise.all(cluster.nodes.map((_, i) => direct(i).dbsize()));
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(model.size);
    expect(sizes.every((n) => n > 0)).toBe(true);

    const pid = cluster.servers[0]?.pid ?? -1;
    await cluster.restartNode(0);
    expect(isAlive(pid)).toBe(false);
    expect(await Promise.all([...model.keys()].map((k) => client.get(k)))).toEqual([...model.values()]);
    expect(await direct(0).dbsize()).toBe(sizes[0]);
  });

  test('moveSlot migrates a slot with its keys; ioredis follows the MOVED', async () => {
    const key = '{tag-0}:k';
    await client.set(key, 'moved-value');
    model.set(key, 'moved-value');
    const slot = await direct(0).cluster('KEYSLOT', key);
    const from = await cluster.slotOwner(slot);
    const to = (from + 1) % cluster.nodes.length;
    const nodeKey = (i: number): string => `${cluster.nodes[i]?.host}:${cluster.nodes[i]?.port}`;
    expect(client.slots[slot]?.[0]).toBe(nodeKey(from));

    await cluster.moveSlot(slot, to);

    expect(await cluster.slotOwner(slot)).toBe(to);
    await expect(direct(from).get(key)).rejects.toThrow(`MOVED ${slot} ${nodeKey(to)}`);
    expect(await direct(to).get(key)).toBe('moved-value');
    // The client still maps the slot to the old node, gets MOVED, retries on the new one and remaps.
    expect(client.slots[slot]?.[0]).toBe(nodeKey(from));
    expect(await client.get(key)).toBe('moved-value');
    expect(client.slots[slot]?.[0]).toBe(nodeKey(to));
    expect(await Promise.all([...model.keys()].map((k) => client.get(k)))).toEqual([...model.values()]);
  });
});
