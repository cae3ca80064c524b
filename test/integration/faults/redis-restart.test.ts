/**
 * Redis faults a worker must survive: a restart with AOF (nothing lost: totals stay exact), a restart
 * without persistence (everything lost: detect it, say so, recreate the consumer groups, go on),
 * entries that fail every time they are applied (poison), and trimming of applied entries that never
 * touches unread or pending ones. Each scenario compares against the independent TotalsModel.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { TallyWorker, type TallyConfig, type UsageEvent } from '../../../src/index.js';
import { runScript } from '../../../src/redis/index.js';
import { makeEvents, METERS, MODEL_METERS } from '../../support/fixtures.js';
import { captureLogs, LogLevel, type CapturedLogs } from '../../support/log-capture.js';
import { TotalsModel } from '../../support/model.js';
import { waitFor } from '../../support/redis.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { compareIds, snapshotStream } from '../../support/streams.js';
import { diffTotals, Harness } from '../../support/tally.js';

const MINUTE = 60_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function modelOf(events: readonly UsageEvent[]): TotalsModel {
  const model = new TotalsModel(MODEL_METERS);
  for (const e of events) model.add(e as never);
  return model;
}

describe('Redis faults', () => {
  let server: RedisServerHandle | undefined;
  let harness: Harness | undefined;
  let worker: TallyWorker | undefined;

  afterEach(async () => {
    await worker?.close();
    await harness?.close();
    await server?.stop();
    [worker, harness, server] = [undefined, undefined, undefined];
  });

  /** A worker in this process whose log lines are kept (Harness.startWorker logs nowhere). */
  async function startLoggedWorker(
    h: Harness,
    config: TallyConfig = h.config,
  ): Promise<{ worker: TallyWorker; logs: CapturedLogs }> {
    const logs = captureLogs('info');
    worker = new TallyWorker({ config, logger: logs.logger });
    await worker.start();
    return { worker, logs };
  }

  async function entriesRead(h: Harness, partition: number): Promise<number> {
    const s = await snapshotStream(h.redis, h.keys.events(partition), h.config.consumerGroup);
    return s?.entriesRead ?? 0;
  }

  it('a restart with AOF: the worker logs the outage once, resumes, and totals stay exact', async () => {
    server = await startRedisServer({ appendonly: true, appendfsync: 'always' });
    harness = new Harness({
      meters: METERS,
      partitions: 2,
      redisUrl: server.url,
      label: 'aof',
      worker: { batchSize: 20 },
    });
    const events = makeEvents(8_000, { dupRate: 0.1, subjects: 10, seed: 11 });
    const model = modelOf(events);
    const { logs } = await startLoggedWorker(harness);
    const producer = harness.producer();

    await producer.sendBatch(events.slice(0, 4_000));
    await waitFor(async () => (await entriesRead(harness!, 0)) > 0, {
      message: 'the worker to start applying',
    });
    await server.kill('SIGKILL');
    // Sent while Redis is down: the producer's commands wait for the reconnect (maxRetriesPerRequest null).
    const during = producer.sendBatch(events.slice(4_000, 6_000));
    await sleep(2_500);
    await server.restart();
    await during;
    await producer.sendBatch(events.slice(6_000));
    await harness.settle(30_000);

    const { latest, repeated } = await harness.finalRollups();
    expect(repeated).toEqual([]);
    expect(diffTotals(latest, model.expected())).toEqual([]);

    const lost = logs.matching(/lost the connection to Redis/);
    const back = logs.matching(/reconnected to Redis/);
    expect(lost, logs.dump()).toHaveLength(1);
    expect(lost[0]?.level).toBe(LogLevel.warn);
    expect(back, logs.dump()).toHaveLength(1);
    expect(Number(back[0]?.downMs)).toBeGreaterThanOrEqual(2_000);
    // Waiting commands resume by themselves: nothing failed, so nothing else is logged as an error.
    expect(logs.atLeast(LogLevel.error), logs.dump()).toEqual([]);
  }, 60_000);

  it('a restart without persistence: the worker says Redis lost its data, recreates its groups and counts new events exactly', async () => {
    server = await startRedisServer({ appendonly: false });
    const partitions = 2;
    harness = new Harness({ meters: METERS, partitions, redisUrl: server.url, label: 'lost' });
    const { worker: w, logs } = await startLoggedWorker(harness);
    const producer = harness.producer();
    await producer.sendBatch(makeEvents(3_000, { seed: 3 }));
    await harness.settle();
    expect((await harness.rollups()).length).toBeGreaterThan(0);

    const marker = `${harness.prefix}:marker`;
    await harness.redis.set(marker, '1');
    await server.kill('SIGKILL');
    await server.restart(); // empty: streams, consumer groups, windows, dedup memory and queues are gone
    expect(await harness.redis.exists(marker)).toBe(0);
    expect(await harness.rollups()).toEqual([]);
    const after = makeEvents(4_000, { dupRate: 0.1, subjects: 8, seed: 5 }).map((e) => ({
      ...e,
      id: `after-${e.id}`,
    }));
    const model = modelOf(after);
    const appliedBefore = w.getStats().applied;
    await producer.sendBatch(after);
    await harness.settle(30_000);

    const { latest, repeated } = await harness.finalRollups();
    expect(repeated).toEqual([]);
    expect(diffTotals(latest, model.expected())).toEqual([]);
    expect(w.getStats().applied - appliedBefore).toBe(after.length - model.duplicates);

    // Said for each partition what happened (whichever of its read loop and its lease supervisor saw it
    // first), recreated the groups, and did not loop on errors.
    const missing = logs.matching(/consumer group is missing: Redis lost its data/);
    expect([...new Set(missing.map((l) => l.partition))].sort(), logs.dump()).toEqual([0, 1]);
    expect(missing.every((l) => l.level === LogLevel.error)).toBe(true);
    // No loop: no error repeats for a partition (twice at most, when its read loop and its lease
    // supervisor both ran into the loss; a step caught between the kill and the restart may add one).
    const repeats = new Map<string, number>();
    for (const l of logs.atLeast(LogLevel.error))
      repeats.set(
        `${l.msg} (${String(l.partition)})`,
        (repeats.get(`${l.msg} (${String(l.partition)})`) ?? 0) + 1,
      );
    expect(
      [...repeats].filter(([, n]) => n > 2),
      logs.dump(),
    ).toEqual([]);
    for (let p = 0; p < partitions; p++) {
      const groups = (await harness.redis.xinfo('GROUPS', harness.keys.events(p))) as unknown[][];
      expect(groups.length).toBe(1);
    }
  }, 60_000);

  it('poison: an entry that fails on every delivery is dead-lettered after maxDeliveries with its count and last error', async () => {
    const meters = [
      { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
      { slug: 'calls', eventType: 'llm', aggregation: 'COUNT', windowSize: '1m' },
    ];
    harness = new Harness({ meters, label: 'poison', worker: { maxDeliveries: 3, claimIdle: '300ms' } });
    const h = harness;
    const time = new Date(Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE + 1_000).toISOString();
    const event = (id: string, tokens: number): UsageEvent => ({
      id,
      source: 'poison',
      type: 'llm',
      subject: 'acme',
      time,
      data: { tokens },
    });
    const { worker: w, logs } = await startLoggedWorker(h);
    const producer = h.producer();
    const totals = async () =>
      Object.fromEntries(
        [...(await h.finalRollups()).latest.values()].map((r) => [
          r.meter,
          `${r.valueDecimal}/${r.eventCount}`,
        ]),
      );

    await producer.send(event('g1', 10));
    await h.settle();
    expect(await totals()).toEqual({ tokens: '10/1', calls: '1/1' });

    // Break the partition's dedup epochs (bucket bits that are not numbers): every applyBatch now
    // fails with a Lua error (arithmetic on nil), which is not transient. (A key of the wrong type is
    // no longer a way to make poison: WRONGTYPE stalls the partition instead, see hostile-redis.test.ts.)
    const epochs = await h.redis.hgetall(h.keys.dedupEpochs(0));
    expect(Object.keys(epochs).length).toBeGreaterThan(0);
    for (const e of Object.keys(epochs)) await h.redis.hset(h.keys.dedupEpochs(0), e, 'not a number');
    const poisonEntry = await producer.send(event('p1', 1_000));
    const dead = await waitFor(
      async () => {
        const letters = await h.deadLetters();
        return letters.length > 0 && letters;
      },
      { timeoutMs: 15_000, message: 'the failing entry to be dead-lettered' },
    );
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({
      reason: 'poison',
      entry: poisonEntry,
      deliveries: '3',
      field: 'event',
      index: '-1',
    });
    expect(dead[0]?.detail).toContain('arithmetic');
    expect(JSON.parse(dead[0]?.payload ?? '{}')).toMatchObject({ id: 'p1', data: { tokens: 1_000 } });
    expect(w.getStats().poison).toBe(1);
    expect(logs.matching(/poison entries moved to the dead-letter stream/)).toHaveLength(1);

    // Repair the key: later entries are applied again, the poison one stays out (until replayed).
    await h.redis.hset(h.keys.dedupEpochs(0), epochs);
    await producer.send(event('g2', 5));
    await h.settle();
    expect(await totals()).toEqual({ tokens: '15/2', calls: '2/2' });
    // Replaying the dead letter after the fix counts it once (it was never remembered by dedup).
    await producer.send(event('p1', 1_000));
    await h.settle();
    expect(await totals()).toEqual({ tokens: '1015/3', calls: '3/3' });
    expect(await h.deadLetters()).toHaveLength(1);
  }, 60_000);

  it('an overflowing SUM is dead-lettered as sum-overflow at once, not retried as poison', async () => {
    const meters = [
      { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
    ];
    harness = new Harness({ meters, label: 'overflow', worker: { maxDeliveries: 2, claimIdle: '300ms' } });
    const time = new Date(Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE + 1_000).toISOString();
    // 5e12 units are 5e18 micro-units: one fits in int64, two in one window do not.
    const big = (id: string): UsageEvent => ({
      id,
      source: 'big',
      type: 'llm',
      subject: 'acme',
      time,
      data: { tokens: 5e12 },
    });
    const { worker: w } = await startLoggedWorker(harness);
    await harness.producer().send(big('b1'));
    await harness.producer().send(big('b2'));
    await harness.settle();
    const dead = await harness.deadLetters();
    expect(dead.map((d) => d.reason)).toEqual(['sum-overflow']);
    expect(JSON.parse(dead[0]?.payload ?? '{}')).toMatchObject({ id: 'b2' });
    expect(w.getStats().poison).toBe(0);
    const [rollup] = (await harness.finalRollups()).latest.values();
    expect(rollup?.valueDecimal).toBe('5000000000000');
  }, 30_000);

  it('trimming deletes applied entries but never an unread backlog or entries pending for a stopped consumer', async () => {
    harness = new Harness({
      meters: METERS,
      label: 'trim',
      streams: { retainAcked: '0s' },
      // Small batches of one-event entries: the second worker takes a while over the backlog. The stopped
      // consumer's entries are reclaimed after claimIdle.
      // Without leases: a lease holder takes the stopped consumer's entries over at once, as it should.
      worker: { batchSize: 10, claimIdle: '6s', leases: false },
    });
    const h = harness;
    const stream = h.keys.events(0);
    const group = h.config.consumerGroup;
    const events = makeEvents(10_000, { dupRate: 0.1, subjects: 10, seed: 21 });
    const model = modelOf(events);
    // One event per entry, so the stream has many entries (and stream nodes) to trim.
    const send = async (slice: UsageEvent[]) => {
      const pipeline = h.redis.pipeline();
      for (const e of slice) pipeline.xadd(stream, '*', 'event', JSON.stringify(e));
      await pipeline.exec();
    };

    // 1. A worker that keeps applied entries (retainAcked 1h) applies the first 2000 entries, then stops.
    const keeper = await startLoggedWorker(h, {
      ...h.config,
      trim: { retainAckedMs: 3_600_000, maxLength: 0 },
    });
    await send(events.slice(0, 2_000));
    await h.settle(30_000);
    await keeper.worker.close();
    expect(await h.redis.xlen(stream)).toBe(2_000);

    // 2. A consumer takes 300 entries and stops (they stay pending), then a backlog arrives: nobody reads it.
    await send(events.slice(2_000, 3_000));
    const taken = (await h.redis.xreadgroup(
      'GROUP',
      group,
      'stopped',
      'COUNT',
      300,
      'STREAMS',
      stream,
      '>',
    )) as [string, [string, string[]][]][];
    const takenIds = taken[0]?.[1].map(([id]) => id) ?? [];
    expect(takenIds).toHaveLength(300);
    await send(events.slice(3_000));
    const kept = 8_000; // the pending entries and everything after them

    // 3. The worker's trim step (retainAcked 0s) deletes the applied entries only: whole stream nodes below the
    //    first pending entry; every pending and unread entry stays.
    const deleted = (await runScript(
      h.redis,
      'trimStream',
      [stream],
      [group, h.config.trim.retainAckedMs, h.config.trim.maxLength],
    )) as number;
    expect(deleted).toBeGreaterThan(1_800);
    expect(await h.redis.xlen(stream)).toBe(10_000 - deleted);
    expect((await h.redis.xrange(stream, takenIds[0] as string, '+')).length).toBe(kept);

    // 4. A worker drains the backlog while trimming every second. Sampled meanwhile: no pending entry and no
    //    unread one is ever missing (unread entries are the newest `entries-added - entries-read`).
    const violations: string[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const s = await snapshotStream(h.redis, stream, group);
        if (
          s?.firstId !== undefined &&
          s.minPending !== undefined &&
          compareIds(s.firstId, s.minPending) > 0
        ) {
          violations.push(`first entry ${s.firstId} is after the pending entry ${s.minPending}`);
        }
        if (s && s.entriesRead !== null && s.length < s.entriesAdded - s.entriesRead) {
          violations.push(`${s.length} entries left but ${s.entriesAdded - s.entriesRead} are unread`);
        }
        await sleep(20);
      }
    })();
    try {
      const second = await startLoggedWorker(h);
      await sleep(2_000); // two trim passes before the stopped consumer's entries are idle long enough to reclaim
      const stillPending = await h.redis.xpending(stream, group, '-', '+', 1_000, 'stopped');
      expect(stillPending).toHaveLength(300);
      const present = takenIds.reduce((p, id) => p.xrange(stream, id, id), h.redis.pipeline());
      expect((await present.exec())?.map(([, entries]) => (entries as unknown[]).length)).toEqual(
        takenIds.map(() => 1),
      );
      await h.settle(60_000);
      expect(second.worker.getStats().reclaimed).toBeGreaterThanOrEqual(300);
    } finally {
      sampling = false;
      await sampler;
    }
    expect(violations).toEqual([]);

    const { latest, repeated } = await h.finalRollups();
    expect(repeated).toEqual([]);
    expect(diffTotals(latest, model.expected())).toEqual([]);
    // Applied now: trimmed down to less than a stream node or two.
    await waitFor(async () => (await h.redis.xlen(stream)) < 200, {
      message: 'applied entries to be trimmed',
    });
  }, 90_000);
});
