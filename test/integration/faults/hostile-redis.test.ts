/**
 * A worker whose Redis misbehaves under it, as real processes (`tally worker` with its metrics
 * endpoint) on their own redis-server: consumer groups destroyed under load and FLUSHALL (NOGROUP at
 * any point: recreate the group and go on, never exit), entries trimmed while pending (counted as
 * lost: metric, log line, dead letter listing their ids), and keys of the wrong type (they stall their
 * own partition only, /readyz says so, `tally status` keeps working and names the key).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig, UsageProducer, type UsageEvent } from '../../../src/index.js';
import { TallyKeys } from '../../../src/redis/index.js';
import { partitionOf } from '../../../src/producer/index.js';
import { UsageQuery } from '../../../src/usage/index.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { createTestRedis, uniquePrefix, waitFor } from '../../support/redis.js';
import { run } from '../../support/cli.js';
import { toRecord } from '../../support/tally.js';
import { startCli, type ChildServer } from '../http/serve-process.js';

const PARTITIONS = 2;
const HOUR = 3_600_000;

function rawConfig(url: string, prefix: string, partitions = PARTITIONS): Record<string, unknown> {
  return {
    redis: { url },
    streams: { prefix, partitions },
    windows: { grace: '100ms', idleTimeout: '300ms' },
    worker: { closeInterval: '50ms', claimIdle: '1s', blockMs: 200, leaseTtl: '1s', batchSize: 200 },
    rollups: { queues: [`${prefix}-billing`] },
    metrics: { host: '127.0.0.1' },
    meters: [{ slug: 'calls', eventType: 'api', aggregation: 'COUNT', windowSize: 'MINUTE' }],
  };
}

const events = (tag: string, n: number, subjects = 8): UsageEvent[] =>
  Array.from({ length: n }, (_, i) => ({
    specversion: '1.0',
    id: `${tag}-${i}`,
    source: 'hostile-redis',
    type: 'api',
    subject: `s-${i % subjects}`,
    time: new Date().toISOString(),
  }));

describe('a worker whose Redis misbehaves', () => {
  let redis: RedisServerHandle | undefined;
  let worker: ChildServer | undefined;
  const closers: (() => Promise<unknown>)[] = [];

  afterEach(async () => {
    await worker?.stop();
    for (const close of closers.splice(0)) await close();
    await redis?.stop();
    [worker, redis] = [undefined, undefined];
  });

  type Before = (
    admin: ReturnType<typeof createTestRedis>,
    keys: TallyKeys,
    producer: UsageProducer,
  ) => Promise<void>;

  async function setup(
    before?: Before,
    partitions = PARTITIONS,
  ): Promise<{
    raw: Record<string, unknown>;
    keys: TallyKeys;
    producer: UsageProducer;
    counted: () => Promise<number>;
    ready: () => Promise<{
      status: number;
      body: { checks: Record<string, { ok: boolean; detail?: string }> };
    }>;
  }> {
    redis = await startRedisServer();
    const prefix = uniquePrefix('hostile-redis');
    const raw = rawConfig(redis.url, prefix, partitions);
    const config = resolveConfig(raw, {});
    const keys = new TallyKeys(prefix);
    const producer = new UsageProducer({ redis: redis.url, prefix, partitions });
    closers.push(() => producer.close());
    await before?.(createTestRedis({ url: redis.url }), keys, producer);
    worker = await startCli(raw, (port) => ['worker', '--metrics-port', String(port)], {
      REDIS_URL: redis.url,
    });
    const query = new UsageQuery({ config });
    closers.push(() => query.close());
    const counted = async () => {
      const rows = await query.query({
        meter: 'calls',
        from: Date.now() - HOUR,
        to: Date.now() + HOUR,
        bySubject: false,
      });
      return rows.reduce((s, r) => s + r.eventCount, 0);
    };
    const ready = async () => {
      const res = await fetch(`${worker!.url}/readyz`);
      return {
        status: res.status,
        body: (await res.json()) as { checks: Record<string, { ok: boolean; detail?: string }> },
      };
    };
    return { raw, keys, producer, counted, ready };
  }

  it('NOGROUP under load (XGROUP DESTROY, FLUSHALL): recreates the groups and counts every event, never exits', async () => {
    const { keys, producer, counted, ready } = await setup();
    const admin = createTestRedis({ url: redis!.url });
    const sent = events(`a-${randomUUID()}`, 6_000);
    for (let i = 0; i < sent.length; i += 200) {
      await producer.sendBatch(sent.slice(i, i + 200));
      if (i % 1_200 === 600) {
        for (let p = 0; p < PARTITIONS; p++) await admin.xgroup('DESTROY', keys.events(p), 'tally');
      }
    }
    await waitFor(async () => (await counted()) === sent.length || undefined, {
      timeoutMs: 30_000,
      intervalMs: 200,
      message: `all ${sent.length} events counted after the groups were destroyed; output:\n${worker!.output()}`,
    });
    expect(worker!.child.exitCode).toBeNull();

    await admin.flushall();
    const after = events(`b-${randomUUID()}`, 2_000);
    for (let i = 0; i < after.length; i += 200) await producer.sendBatch(after.slice(i, i + 200));
    await waitFor(async () => (await counted()) === after.length || undefined, {
      timeoutMs: 30_000,
      intervalMs: 200,
      message: `the ${after.length} events sent after FLUSHALL counted; output:\n${worker!.output()}`,
    });
    expect(worker!.child.exitCode).toBeNull();
    await waitFor(async () => (await ready()).status === 200, { timeoutMs: 10_000, message: 'ready again' });
    expect(worker!.output()).toMatch(/consumer group is missing/);
  }, 90_000);

  it('entries trimmed while pending are counted as lost: a metric, a log line and a dead letter per id', async () => {
    const ghostIds: string[] = [];
    const { keys } = await setup(async (admin, k, producer) => {
      // Entries delivered to a consumer that is gone, then trimmed away before anyone applied them.
      for (let p = 0; p < PARTITIONS; p++)
        await admin.xgroup('CREATE', k.events(p), 'tally', '0', 'MKSTREAM');
      const sent = events(`lost-${randomUUID()}`, 400);
      for (let i = 0; i < sent.length; i += 20) await producer.sendBatch(sent.slice(i, i + 20));
      for (let p = 0; p < PARTITIONS; p++) {
        const reply = (await admin.xreadgroup(
          'GROUP',
          'tally',
          'ghost',
          'COUNT',
          1000,
          'STREAMS',
          k.events(p),
          '>',
        )) as [string, [string, string[]][]][] | null;
        ghostIds.push(...(reply?.[0]?.[1] ?? []).map(([id]) => id));
        await admin.xtrim(k.events(p), 'MAXLEN', 0);
      }
    });
    expect(ghostIds.length).toBeGreaterThan(PARTITIONS);
    const admin = createTestRedis({ url: redis!.url });
    const trimmed = async () => {
      const out: string[] = [];
      for (let p = 0; p < PARTITIONS; p++) {
        for (const [, fields] of (await admin.xrange(keys.deadLetter(p), '-', '+')) as [string, string[]][]) {
          const f = toRecord(fields);
          if (f.reason === 'trimmed') out.push(f.entry ?? '');
        }
      }
      return out.sort();
    };
    await waitFor(async () => (await trimmed()).length === ghostIds.length || undefined, {
      timeoutMs: 20_000,
      message: `a trimmed dead letter per lost entry; output:\n${worker!.output()}`,
    });
    expect(await trimmed()).toEqual([...ghostIds].sort());
    for (let p = 0; p < PARTITIONS; p++)
      expect(((await admin.xpending(keys.events(p), 'tally')) as [number])[0]).toBe(0);
    const metrics = await (await fetch(`${worker!.url}/metrics`)).text();
    const lost = [...metrics.matchAll(/^tally_entries_lost_total\{[^}]*\} (\d+)/gm)].reduce(
      (s, m) => s + Number(m[1]),
      0,
    );
    expect(lost).toBe(ghostIds.length);
    expect(worker!.output()).toMatch(/entries deleted from the stream while pending/);
  }, 60_000);

  it('a key of the wrong type stalls its own partition only, shows in /readyz, and tally status names it', async () => {
    const P = 3;
    const { raw, keys, producer, counted, ready } = await setup(async (admin, k) => {
      await admin.set(k.state(1), 'not a hash');
      await admin.set(k.deadLetter(2), 'not a stream');
    }, P);
    const admin = createTestRedis({ url: redis!.url });
    // An entry that must be dead-lettered, in partition 2: writing its dead letter fails there.
    await admin.xadd(keys.events(2), '*', 'event', '{not json');
    const sent = events(`wt-${randomUUID()}`, 600, 30);
    await producer.sendBatch(sent);
    const home = (e: UsageEvent) => partitionOf(e.subject, P);
    const inP0 = sent.filter((e) => home(e) === 0).length;
    expect(inP0).toBeGreaterThan(0);
    expect(sent.filter((e) => home(e) !== 0).length).toBeGreaterThan(0);

    // Partition 0 goes on; 1 and 2 wait, with nothing dead-lettered as poison and nothing lost.
    await waitFor(async () => (await counted()) === inP0 || undefined, {
      timeoutMs: 20_000,
      message: `partition 0 counted; output:\n${worker!.output()}`,
    });
    const notReady = await waitFor(
      async () => {
        const r = await ready();
        return r.status === 503 &&
          /apply:1/.test(r.body.checks.consuming?.detail ?? '') &&
          /apply:2/.test(r.body.checks.consuming?.detail ?? '')
          ? r
          : undefined;
      },
      { timeoutMs: 20_000, message: '/readyz to report partitions 1 and 2 as failing' },
    );
    expect(notReady.body.checks.consuming?.ok).toBe(false);
    expect(await counted()).toBe(inP0);
    expect(await admin.xlen(keys.deadLetter(1))).toBe(0);
    const pending = (p: number) => admin.xpending(keys.events(p), 'tally') as Promise<[number]>;
    expect((await pending(1))[0]).toBeGreaterThan(0);

    // tally status keeps working and names both keys.
    const dir = mkdtempSync(join(tmpdir(), 'tally-wrongtype-'));
    closers.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
    const file = join(dir, 'tally.yaml');
    writeFileSync(file, stringify(raw));
    const status = await run(['status', '--config', file], { REDIS_URL: redis!.url });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain(`key ${keys.state(1)} holds the wrong type of value (WRONGTYPE)`);
    expect(status.stdout).toContain(`key ${keys.deadLetter(2)} holds the wrong type of value (WRONGTYPE)`);
    // dead-letter list names the key too (it said only "WRONGTYPE Operation against a key ...").
    const list = await run(['dead-letter', 'list', '--config', file], { REDIS_URL: redis!.url });
    expect(list.stderr).toContain(`key ${keys.deadLetter(2)} holds the wrong type of value (WRONGTYPE)`);
    const others = await run(['dead-letter', 'list', '--partition', '0', '--config', file], {
      REDIS_URL: redis!.url,
    });
    expect(others.code, others.stderr).toBe(0);

    // Fixed by the operator: both partitions resume, every event counted once, the bad entry dead-lettered.
    await admin.del(keys.state(1), keys.deadLetter(2));
    await waitFor(async () => (await counted()) === sent.length || undefined, {
      timeoutMs: 20_000,
      message: `every event counted after the keys were fixed; output:\n${worker!.output()}`,
    });
    await waitFor(async () => (await ready()).status === 200, { timeoutMs: 10_000, message: 'ready again' });
    expect(await admin.xlen(keys.deadLetter(2))).toBe(1);
    expect(worker!.child.exitCode).toBeNull();
  }, 90_000);
});
