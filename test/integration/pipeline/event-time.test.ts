/**
 * Event-time correctness, run the way people run Tally: `tally worker` processes start first and sit
 * idle past idleTimeout; only then does a producer send, often old events (a backfill), while
 * replicas die and connections drop. Every rollup a plain BullMQ Worker receives is checked against
 * an independent model: a revision-1 rollup must already carry the exact total.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Worker } from 'bullmq';
import type { ChildProcess } from 'node:child_process';
import { random } from '../../support/random.js';
import type { RollupJob, UsageEvent } from '../../../src/index.js';
import { partitionOf } from '../../../src/producer/index.js';
import { fixtureEvent, METERS, MODEL_METERS } from '../../support/fixtures.js';
import { rollupKey, TotalsModel } from '../../support/model.js';
import { createTestRedis, waitFor } from '../../support/redis.js';
import { Replicas } from '../../support/replicas.js';
import { Harness } from '../../support/tally.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';

const MINUTE = 60_000;
const PARTITIONS = 4;
const IDLE_MS = 1_500;
const WINDOWS = { grace: '1s', idleTimeout: `${IDLE_MS}ms` };
const WORKER = { closeInterval: '100ms', claimIdle: '30s', leaseTtl: '2s', batchSize: 500 };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Backfill {
  /** Entries to XADD, in order: each is one event's JSON or a deliberately broken payload. */
  entries: { subject: string; payload: string }[];
  invalidIds: Set<string>;
  model: TotalsModel;
  /** Valid (non-duplicate) events. */
  events: number;
}

/**
 * A time-ordered backfill: `n` events over `minutes` minutes starting `startMinutesAgo` ago, with at
 * most 300 ms of jitter, 10% duplicates re-sent soon after, and 1% invalid events.
 */
function makeBackfill(n: number, seed: number, startMinutesAgo = 20, minutes = 8): Backfill {
  const rnd = random(seed);
  const start = Math.floor(Date.now() / MINUTE) * MINUTE - startMinutesAgo * MINUTE;
  const model = new TotalsModel(MODEL_METERS);
  const entries: Backfill['entries'] = [];
  const sent: UsageEvent[] = [];
  const invalidIds = new Set<string>();
  for (let i = 0; i < n; i++) {
    const base = start + Math.floor((i / n) * minutes * MINUTE);
    const time = new Date(Math.max(start, base - Math.floor(rnd() * 300))).toISOString();
    const subject = `cust-${Math.floor(rnd() * 12)}`;
    const event = fixtureEvent(`bf${seed}-${i}`, 'backfill', subject, time, rnd);
    entries.push({ subject, payload: JSON.stringify(event) });
    model.add(event as never);
    sent.push(event);
    if (rnd() < 0.11 && sent.length > 50) {
      const copy = sent[sent.length - 1 - Math.floor(rnd() * 50)] as UsageEvent;
      entries.push({ subject: copy.subject, payload: JSON.stringify(copy) });
      model.add(copy as never);
    }
    if (rnd() < 0.01) {
      const id = `bad${seed}-${i}`;
      invalidIds.add(id);
      entries.push({
        subject,
        payload: JSON.stringify({
          id,
          source: 'backfill',
          type: 'llm',
          subject,
          time,
          data: { tokens: 'lots', model: 'a' },
        }),
      });
    }
  }
  return { entries, invalidIds, model, events: n };
}

/** Collects every rollup job as a plain BullMQ Worker receives it (once per job id: delivery is at least once). */
class RollupCollector {
  private readonly jobs = new Map<string, RollupJob>();
  private readonly worker: Worker;

  constructor(harness: Harness) {
    this.worker = new Worker(
      `${harness.prefix}-billing`,
      (job) => {
        this.jobs.set(job.id as string, job.data as RollupJob);
        return Promise.resolve();
      },
      {
        connection: createTestRedis({
          url: harness.config.redisUrl,
          maxRetriesPerRequest: null,
          connectionName: 'bull-test-collector',
        }),
        prefix: harness.config.rollups.queuePrefix,
        concurrency: 50,
        // A job whose completion was lost with a dropped connection comes back soon.
        lockDuration: 2_000,
        stalledInterval: 1_000,
        maxStalledCount: 100,
      },
    );
    this.worker.on('error', () => undefined); // connection drops are part of some scenarios
  }

  get received(): RollupJob[] {
    return [...this.jobs.values()];
  }

  corrections(): RollupJob[] {
    return this.received.filter((r) => r.revision > 1);
  }

  /** Revision-1 rollups whose value or count differs from the model's final total. */
  wrongFirstRollups(model: TotalsModel): string[] {
    const expected = model.expected();
    const wrong: string[] = [];
    for (const r of this.received) {
      if (r.revision !== 1) continue;
      const key = rollupKey(r.meter, r.subject, r.groupBy, Date.parse(r.windowStart));
      const want = expected.get(key);
      if (!want || want.value !== r.valueDecimal || want.eventCount !== r.eventCount) {
        wrong.push(
          `${key}: got ${r.valueDecimal}/${r.eventCount} want ${want ? `${want.value}/${want.eventCount}` : 'nothing'}`,
        );
      }
    }
    return wrong;
  }

  /** Final (highest-revision) rollup per identity compared with the model: mismatches, missing and unexpected. */
  diff(model: TotalsModel): string[] {
    const latest = new Map<string, RollupJob>();
    for (const r of this.received) {
      const key = rollupKey(r.meter, r.subject, r.groupBy, Date.parse(r.windowStart));
      const prev = latest.get(key);
      if (!prev || prev.revision < r.revision) latest.set(key, r);
    }
    const problems: string[] = [];
    const expected = model.expected();
    for (const [key, want] of expected) {
      const got = latest.get(key);
      if (!got) problems.push(`missing ${key}`);
      else if (got.valueDecimal !== want.value || got.eventCount !== want.eventCount) {
        problems.push(
          `${key}: got ${got.valueDecimal}/${got.eventCount} want ${want.value}/${want.eventCount}`,
        );
      }
    }
    for (const key of latest.keys()) if (!expected.has(key)) problems.push(`unexpected ${key}`);
    return problems;
  }

  close(): Promise<void> {
    return this.worker.close();
  }
}

describe('event time: workers first, backfills, failover', () => {
  let harness: Harness | undefined;
  let collector: RollupCollector | undefined;
  let replicas: Replicas | undefined;
  let ownServer: RedisServerHandle | undefined;
  afterEach(async () => {
    await replicas?.stop();
    await collector?.close();
    await harness?.close();
    await ownServer?.stop();
    harness = undefined;
    collector = undefined;
    replicas = undefined;
    ownServer = undefined;
  });

  function setUp(
    windows: Record<string, unknown> = {},
    worker: Record<string, unknown> = {},
    redisUrl?: string,
  ): Harness {
    harness = new Harness({
      ...(redisUrl ? { redisUrl } : {}),
      meters: METERS,
      partitions: PARTITIONS,
      label: 'etime',
      windows: { ...WINDOWS, ...windows },
      worker: { ...WORKER, ...worker },
    });
    collector = new RollupCollector(harness);
    const h = harness;
    replicas = new Replicas(() => h.spawnWorker());
    return h;
  }

  /** Starts `n` worker processes and waits until they hold every partition, then lets them sit idle. */
  async function startIdleWorkers(h: Harness, n: number, leases = true): Promise<ChildProcess[]> {
    const started = Array.from({ length: n }, () => (replicas as Replicas).start());
    if (!leases) {
      await waitFor(
        async () => {
          const consumers = (await h.redis
            .xinfo('CONSUMERS', h.keys.events(PARTITIONS - 1), h.config.consumerGroup)
            .catch(() => [])) as unknown[];
          return consumers.length === n;
        },
        { timeoutMs: 20_000, message: 'the workers to read every partition' },
      );
      await sleep(IDLE_MS + 500);
      return started;
    }
    await waitFor(
      async () => {
        const owners = await Promise.all(
          Array.from({ length: PARTITIONS }, (_, p) => h.redis.get(h.keys.lease(p))),
        );
        return owners.every((o) => o !== null) && new Set(owners).size === Math.min(n, PARTITIONS);
      },
      { timeoutMs: 20_000, message: 'the workers to hold every partition' },
    );
    await sleep(IDLE_MS + 500);
    return started;
  }

  /** XADDs entries like a producer in another language would (plain XADD per docs/contract.md). */
  async function send(h: Harness, entries: Backfill['entries']): Promise<void> {
    const pipeline = h.redis.pipeline();
    for (const e of entries)
      pipeline.xadd(h.keys.events(partitionOf(e.subject, PARTITIONS)), '*', 'event', e.payload);
    await pipeline.exec();
  }

  async function deadLetterIds(h: Harness): Promise<{ reasons: Set<string>; ids: Set<string> }> {
    const reasons = new Set<string>();
    const ids = new Set<string>();
    for (let p = 0; p < PARTITIONS; p++) {
      for (const d of await h.deadLetters(p)) {
        reasons.add(d.reason);
        ids.add((JSON.parse(d.payload) as { id: string }).id);
      }
    }
    return { reasons, ids };
  }

  /** Waits until everything is applied, closed and relayed, and every rollup job has reached the collector. */
  async function settled(h: Harness, timeoutMs = 60_000): Promise<void> {
    await h.settle(timeoutMs).catch(async (err: unknown) => {
      const state = [];
      for (let p = 0; p < PARTITIONS; p++) {
        state.push({
          p,
          groups: await h.redis.xinfo('GROUPS', h.keys.events(p)),
          pending: await h.redis.xpending(h.keys.events(p), h.config.consumerGroup),
          open: await h.redis.zrange(h.keys.windowIndex(p), 0, 3, 'WITHSCORES'),
          state: await h.redis.hgetall(h.keys.state(p)),
          outbox: await h.redis.xlen(h.keys.outbox(p)),
          lease: await h.redis.get(h.keys.lease(p)),
        });
      }
      console.log(JSON.stringify({ now: Date.now(), state }));
      throw err;
    });
    await waitFor(
      async () => {
        const counts = await h.queue.getJobCounts(
          'waiting',
          'active',
          'delayed',
          'prioritized',
          'completed',
          'failed',
        );
        const open =
          (counts.waiting ?? 0) + (counts.active ?? 0) + (counts.delayed ?? 0) + (counts.prioritized ?? 0);
        return open === 0 && (counts.completed ?? 0) + (counts.failed ?? 0) === collector?.received.length;
      },
      { timeoutMs: 20_000, message: 'the rollup collector to receive every job' },
    ).catch(async (err: unknown) => {
      console.log(
        JSON.stringify({ counts: await h.queue.getJobCounts(), received: collector?.received.length }),
      );
      throw err;
    });
  }

  /**
   * Drops every connection of the Tally workers (their main client and blocking readers), leaving
   * BullMQ's (named `bull:...`: the test's rollup collector and the relays' queues) and the test's own.
   * Only on a redis-server of this test's own: other test files share the default one.
   */
  async function killWorkerConnections(h: Harness): Promise<number> {
    const me = Number(await h.redis.client('ID'));
    const list = String(await h.redis.call('CLIENT', 'LIST', 'TYPE', 'normal'));
    let killed = 0;
    for (const line of list.split('\n')) {
      const id = Number(/\bid=(\d+)/.exec(line)?.[1]);
      const name = /\bname=(\S*)/.exec(line)?.[1] ?? '';
      if (!id || id === me || name.startsWith('bull')) continue;
      killed += Number(await h.redis.call('CLIENT', 'KILL', 'ID', String(id)).catch(() => 0));
    }
    return killed;
  }

  async function pendingTotal(h: Harness): Promise<number> {
    let total = 0;
    for (let p = 0; p < PARTITIONS; p++)
      total += Number(((await h.redis.xpending(h.keys.events(p), h.config.consumerGroup)) as [number])[0]);
    return total;
  }

  for (const latePolicy of ['correct', 'dead-letter'] as const) {
    it(`a time-ordered backfill after an idle period: every window once, at revision 1, exact (latePolicy ${latePolicy}); then truly late events`, async () => {
      const h = setUp({ latePolicy });
      await startIdleWorkers(h, 1);
      const backfill = makeBackfill(10_500, latePolicy === 'correct' ? 1 : 2);
      for (let i = 0; i < backfill.entries.length; i += 1_000)
        await send(h, backfill.entries.slice(i, i + 1_000));
      await settled(h);

      const c = collector as RollupCollector;
      expect(c.corrections()).toEqual([]);
      expect(c.wrongFirstRollups(backfill.model)).toEqual([]);
      expect(c.diff(backfill.model)).toEqual([]);
      const windows = new Set(c.received.map((r) => r.windowStart));
      expect(windows.size).toBeGreaterThanOrEqual(8);
      const dead = await deadLetterIds(h);
      expect(dead.ids).toEqual(backfill.invalidIds);
      expect([...dead.reasons]).toEqual(['invalid-value']);
      expect(await pendingTotal(h)).toBe(0);

      // Truly late: events for windows already emitted.
      const rnd = random(99);
      const firstWindow = Math.min(...c.received.map((r) => Date.parse(r.windowStart)));
      const late = Array.from({ length: 20 }, (_, i) =>
        fixtureEvent(
          `late-${i}`,
          'backfill',
          `cust-${i % 12}`,
          new Date(firstWindow + 1_000 + i).toISOString(),
          rnd,
        ),
      );
      await send(
        h,
        late.map((e) => ({ subject: e.subject, payload: JSON.stringify(e) })),
      );
      await settled(h);
      if (latePolicy === 'correct') {
        for (const e of late) backfill.model.add(e as never);
        expect(c.corrections().length).toBeGreaterThan(0);
        expect(c.diff(backfill.model)).toEqual([]);
      } else {
        expect(c.corrections()).toEqual([]);
        expect(c.diff(backfill.model)).toEqual([]);
        const after = await deadLetterIds(h);
        expect([...after.reasons].sort()).toEqual(['invalid-value', 'late']);
        expect([...after.ids].filter((id) => id.startsWith('late-')).sort()).toEqual(
          late.map((e) => e.id).sort(),
        );
      }
    }, 120_000);
  }

  it('a replica SIGKILLed mid-backfill and restarted: zero corrections, nothing pending, fast takeover', async () => {
    const h = setUp({ latePolicy: 'dead-letter' });
    const [victim] = await startIdleWorkers(h, 2);
    const backfill = makeBackfill(12_000, 3);
    const chunks = 12;
    const size = Math.ceil(backfill.entries.length / chunks);
    let killedAt = 0;
    const victimPrefix = `-${victim?.pid}-`;
    for (let i = 0; i < chunks; i++) {
      await send(h, backfill.entries.slice(i * size, (i + 1) * size));
      if (i === 4) {
        killedAt = Date.now();
        if (victim) await replicas?.kill(victim);
        replicas?.start(); // restarted at once, as an orchestrator would
      }
      await sleep(150);
    }
    // Takeover: every partition held by a live replica and nothing left pending under the dead consumer.
    const takeoverMs = await waitFor(
      async () => {
        for (let p = 0; p < PARTITIONS; p++) {
          const owner = await h.redis.get(h.keys.lease(p));
          if (owner === null || owner.includes(victimPrefix)) return undefined;
          const consumers = (await h.redis.xinfo(
            'CONSUMERS',
            h.keys.events(p),
            h.config.consumerGroup,
          )) as unknown[][];
          for (const c of consumers)
            if (String(c[1]).includes(victimPrefix) && Number(c[3]) > 0) return undefined;
        }
        return Date.now() - killedAt;
      },
      { timeoutMs: 30_000, intervalMs: 50, message: 'the dead replica’s partitions to be taken over' },
    );
    console.log(`takeover after SIGKILL: ${takeoverMs} ms (leaseTtl 2000 ms)`);
    expect(takeoverMs).toBeLessThan(2_000 + 1_500);
    await settled(h);

    const c = collector as RollupCollector;
    expect(c.corrections()).toEqual([]);
    expect(c.wrongFirstRollups(backfill.model)).toEqual([]);
    expect(c.diff(backfill.model)).toEqual([]);
    expect((await deadLetterIds(h)).ids).toEqual(backfill.invalidIds);
    expect(await pendingTotal(h)).toBe(0);
    expect(replicas?.crashes).toEqual([]);
  }, 120_000);

  it('two replicas reading every partition without leases (static partitions): zero corrections, exact', async () => {
    const h = setUp({ latePolicy: 'dead-letter' }, { leases: false, batchSize: 100 });
    await startIdleWorkers(h, 2, false);
    const backfill = makeBackfill(10_000, 5);
    for (let i = 0; i < backfill.entries.length; i += 500) {
      await send(h, backfill.entries.slice(i, i + 500));
      await sleep(30);
    }
    await settled(h);
    const c = collector as RollupCollector;
    expect(c.corrections()).toEqual([]);
    expect(c.wrongFirstRollups(backfill.model)).toEqual([]);
    expect(c.diff(backfill.model)).toEqual([]);
    expect((await deadLetterIds(h)).ids).toEqual(backfill.invalidIds);
    expect(await pendingTotal(h)).toBe(0);
  }, 120_000);

  it('Redis connections dropped during batches: zero corrections, nothing pending, exact', async () => {
    ownServer = await startRedisServer();
    const h = setUp({ latePolicy: 'dead-letter' }, {}, ownServer.url);
    await startIdleWorkers(h, 2);
    const backfill = makeBackfill(10_000, 4);
    const size = 500;
    let kills = 0;
    for (let i = 0; i < backfill.entries.length; i += size) {
      await send(h, backfill.entries.slice(i, i + size));
      if ((i / size) % 4 === 1) kills += await killWorkerConnections(h);
      await sleep(50);
    }
    expect(kills).toBeGreaterThan(0);
    await settled(h);

    const c = collector as RollupCollector;
    expect(c.corrections()).toEqual([]);
    expect(c.wrongFirstRollups(backfill.model)).toEqual([]);
    expect(c.diff(backfill.model)).toEqual([]);
    expect((await deadLetterIds(h)).ids).toEqual(backfill.invalidIds);
    expect(await pendingTotal(h)).toBe(0);
    expect(replicas?.crashes).toEqual([]);
  }, 120_000);

  it('live traffic, a quiet period closed by the wall clock, then a backfill of the quiet period: no corrections, no dead letters', async () => {
    const WINDOW = 2_000;
    const meters = [
      { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '2s' },
    ];
    harness = new Harness({
      meters,
      partitions: PARTITIONS,
      label: 'etime',
      windows: { grace: '300ms', idleTimeout: '1s', latePolicy: 'correct' },
      worker: WORKER,
    });
    const h = harness;
    collector = new RollupCollector(h);
    replicas = new Replicas(() => h.spawnWorker());
    await startIdleWorkers(h, 2);
    const model = new TotalsModel([
      { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueKey: 'tokens', windowMs: WINDOW },
    ]);
    const event = (id: string, subject: string, time: number, tokens: number): UsageEvent => ({
      id,
      source: 'live',
      type: 'llm',
      subject,
      time: new Date(time).toISOString(),
      data: { tokens },
    });
    const toEntries = (events: UsageEvent[]) =>
      events.map((e) => ({ subject: e.subject, payload: JSON.stringify(e) }));

    // 1. Live traffic for about 3 s, timed now.
    let lastLive = 0;
    for (let i = 0; i < 30; i++) {
      const now = Date.now();
      const batch = Array.from({ length: 20 }, (_, j) =>
        event(`live-${i}-${j}`, `cust-${j % 8}`, now, j + 1),
      );
      for (const e of batch) model.add(e as never);
      await send(h, toEntries(batch));
      lastLive = now;
      await sleep(100);
    }
    // 2. A quiet period longer than idleTimeout: the open windows close by the wall clock.
    const quietStart = Date.now();
    await sleep(5_000);
    await settled(h);
    const c = collector;
    const liveRollups = c.received.length;
    expect(liveRollups).toBeGreaterThan(0);
    expect(c.corrections()).toEqual([]);
    expect(c.wrongFirstRollups(model)).toEqual([]);

    // 3. A backfill of the quiet period from the first window boundary after the last live event.
    const from = Math.floor(lastLive / WINDOW) * WINDOW + WINDOW;
    const to = Date.now() - 500;
    expect(to - from).toBeGreaterThan(WINDOW);
    const backfill: UsageEvent[] = [];
    for (let t = from, i = 0; t < to; t += 10, i++) backfill.push(event(`quiet-${i}`, `cust-${i % 8}`, t, 1));
    for (const e of backfill) model.add(e as never);
    await send(h, toEntries(backfill));
    await settled(h);
    expect(c.corrections()).toEqual([]);
    expect(c.wrongFirstRollups(model)).toEqual([]);
    expect(c.diff(model)).toEqual([]);
    expect((await deadLetterIds(h)).ids.size).toBe(0);
    expect(quietStart).toBeGreaterThan(lastLive);

    // 4. One more event into the last live window, which was emitted: a correction, as rule 3 says.
    const extra = event('into-emitted', 'cust-1', lastLive, 1000);
    model.add(extra as never);
    await send(h, toEntries([extra]));
    await settled(h);
    expect(c.corrections().map((r) => [r.subject, r.revision, Date.parse(r.windowStart)])).toEqual([
      ['cust-1', 2, Math.floor(lastLive / WINDOW) * WINDOW],
    ]);
    expect(c.diff(model)).toEqual([]);
    expect((await deadLetterIds(h)).ids.size).toBe(0);
  }, 120_000);
});
