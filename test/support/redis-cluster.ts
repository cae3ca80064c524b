/**
 * A throwaway Redis Cluster of N masters (no replicas) built from local `redis-server` processes and
 * `redis-cli --cluster create`, plus helpers to restart a node and to migrate a slot (MOVED/ASK).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { redisCliBinary, startRedisServer } from './redis-server.js';
import type { RedisServerHandle } from './redis-server.js';

const execFileAsync = promisify(execFile);

export interface RedisClusterOptions {
  /** Number of masters (a cluster needs at least 3). @defaultValue 3 */
  masters?: number;
  /** AOF on every node, so `restartNode()` keeps the node's data. @defaultValue false */
  appendonly?: boolean;
  /** How long to wait for `cluster_state:ok` after create, restart or migration. @defaultValue 20000 */
  readyTimeoutMs?: number;
}

export interface ClusterNodeAddress {
  host: string;
  port: number;
}

export interface RedisClusterHandle {
  /** Node addresses, index-aligned with `servers`. */
  readonly nodes: ClusterNodeAddress[];
  readonly servers: RedisServerHandle[];
  /** For `new Cluster(startupNodes)`. */
  readonly startupNodes: ClusterNodeAddress[];
  /** Stops every node and removes their dirs. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILLs node `i`, restarts it on the same port and dir, waits until the cluster is ok everywhere. */
  restartNode(i: number): Promise<void>;
  /** Migrates `slot` with its keys to node `toNodeIndex` (IMPORTING/MIGRATING, MIGRATE ... KEYS, SETSLOT NODE). */
  moveSlot(slot: number, toNodeIndex: number): Promise<void>;
  /** Index of the node that owns `slot` according to node 0. */
  slotOwner(slot: number): Promise<number>;
}

const SLOTS = 16_384;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function adminClient(node: ClusterNodeAddress): Redis {
  // Plain (non-cluster) client: admin commands go to exactly this node. Fail fast instead of queueing.
  return new Redis({
    host: node.host,
    port: node.port,
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    retryStrategy: () => null,
  });
}

async function withAdmin<T>(node: ClusterNodeAddress, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = adminClient(node);
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

const clusterSlots = (redis: Redis) => redis.cluster('SLOTS');
/** `[start, end, [host, port, id, ...] (master), ...replicas][]`, as typed by ioredis. */
type SlotsReply = Awaited<ReturnType<typeof clusterSlots>>;

/** Canonical "start-end@port" list of a node's view of the slot map. */
function slotMapSignature(reply: SlotsReply): string {
  return reply
    .map(([start, end, master]) => `${start}-${end}@${master?.[1]}`)
    .sort()
    .join(',');
}

async function nodeView(node: ClusterNodeAddress): Promise<{ ok: boolean; info: string; slots: string }> {
  return withAdmin(node, async (redis) => {
    const info = await redis.cluster('INFO');
    const slots = slotMapSignature(await clusterSlots(redis));
    const field = (name: string): string | undefined => new RegExp(`^${name}:(\\S+)`, 'm').exec(info)?.[1];
    const ok =
      field('cluster_state') === 'ok' &&
      field('cluster_slots_assigned') === String(SLOTS) &&
      field('cluster_slots_ok') === String(SLOTS);
    return { ok, info, slots };
  });
}

/** Waits until every node says cluster_state:ok with all slots ok, and all nodes agree on the slot map. */
async function waitClusterOk(nodes: ClusterNodeAddress[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const views = await Promise.all(nodes.map(nodeView));
      const agree = views.every((v) => v.slots === views[0]?.slots);
      if (views.every((v) => v.ok) && agree) return;
      last = views.map((v, i) => `node ${nodes[i]?.port}: ok=${v.ok} slots=${v.slots}`).join('\n');
    } catch (err) {
      last = String(err);
    }
    if (Date.now() > deadline) throw new Error(`cluster not ok after ${timeoutMs} ms:\n${last}`);
    await sleep(50);
  }
}

export async function startRedisCluster(opts: RedisClusterOptions = {}): Promise<RedisClusterHandle> {
  const masters = opts.masters ?? 3;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 20_000;
  if (!Number.isInteger(masters) || masters < 3) {
    throw new Error(`startRedisCluster: masters must be an integer >= 3, got ${masters}`);
  }
  const cli = redisCliBinary();
  if (!cli) throw new Error('startRedisCluster: no redis-cli binary on PATH (or REDIS_CLI_BIN)');

  const started = await Promise.allSettled(
    Array.from({ length: masters }, () =>
      // appendfsync always: restartNode() SIGKILLs a node, which must not lose acknowledged writes.
      startRedisServer({ clusterEnabled: true, appendonly: opts.appendonly ?? false, appendfsync: 'always' }),
    ),
  );
  const servers = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }

  const nodes: ClusterNodeAddress[] = servers.map((s) => ({ host: s.host, port: s.port }));
  try {
    await execFileAsync(
      cli,
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `${n.host}:${n.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { timeout: readyTimeoutMs },
    );
    await waitClusterOk(nodes, readyTimeoutMs);
  } catch (err) {
    await stop();
    throw err;
  }

  const nodeAt = (i: number): ClusterNodeAddress => {
    const node = nodes[i];
    if (!node) throw new RangeError(`no cluster node at index ${i} (have ${nodes.length})`);
    return node;
  };
  const nodeIds = await Promise.all(nodes.map((n) => withAdmin(n, (r) => r.cluster('MYID'))));

  const slotOwner = async (slot: number): Promise<number> => {
    const reply = await withAdmin(nodeAt(0), clusterSlots);
    const range = reply.find(([start, end]) => slot >= start && slot <= end);
    const index = range ? nodes.findIndex((n) => n.port === range[2]?.[1]) : -1;
    if (index < 0) throw new Error(`slot ${slot} has no owner among the cluster nodes`);
    return index;
  };

  const moveSlot = async (slot: number, toNodeIndex: number): Promise<void> => {
    if (!Number.isInteger(slot) || slot < 0 || slot >= SLOTS) throw new RangeError(`bad slot ${slot}`);
    const target = nodeAt(toNodeIndex);
    const fromIndex = await slotOwner(slot);
    if (fromIndex === toNodeIndex) return;
    const source = nodeAt(fromIndex);
    const sourceId = nodeIds[fromIndex] as string;
    const targetId = nodeIds[toNodeIndex] as string;

    // Order as in the Redis Cluster spec ("Live reconfiguration"): IMPORTING on the target first, so
    // ASK redirects from the source are accepted there.
    await withAdmin(target, (r) => r.cluster('SETSLOT', slot, 'IMPORTING', sourceId));
    await withAdmin(source, async (r) => {
      await r.cluster('SETSLOT', slot, 'MIGRATING', targetId);
      for (;;) {
        const keys = await r.cluster('GETKEYSINSLOT', slot, 100);
        if (keys.length === 0) break;
        await r.migrate(target.host, target.port, '', 0, 10_000, 'KEYS', ...keys);
      }
    });
    // Target first (it bumps its config epoch), then the source, then everyone else.
    const order = [toNodeIndex, fromIndex, ...nodes.keys()].filter((v, i, a) => a.indexOf(v) === i);
    for (const i of order) {
      await withAdmin(nodeAt(i), (r) => r.cluster('SETSLOT', slot, 'NODE', targetId));
    }
    await waitClusterOk(nodes, readyTimeoutMs);
  };

  const restartNode = async (i: number): Promise<void> => {
    const server = servers[i];
    if (!server) throw new RangeError(`no cluster node at index ${i} (have ${servers.length})`);
    await server.kill('SIGKILL');
    await server.restart();
    await waitClusterOk(nodes, readyTimeoutMs);
  };

  return {
    nodes,
    servers,
    startupNodes: nodes.map((n) => ({ ...n })),
    stop,
    restartNode,
    moveSlot,
    slotOwner,
  };
}
