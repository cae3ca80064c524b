/**
 * Chaos: three `tally worker` processes share four partitions of a Redis with AOF (appendfsync always,
 * so a SIGKILL of Redis loses no acknowledged write) while a producer sends 200k+ events with duplicates,
 * out-of-order times and invalid events. A chaos loop SIGKILLs a random replica every few seconds and
 * starts a new one, and once SIGKILLs and restarts Redis. At the end every rollup total equals the
 * independent model's, no rollup revision exists twice, every invalid event is dead-lettered, and no
 * entry is left pending.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RollupJob, UsageEvent } from '../../../src/index.js';
import { partitionOf } from '../../../src/index.js';
import { random } from '../../support/random.js';
import { makeChaosMix, type ChaosMix } from '../../support/chaos-events.js';
import { METERS, MODEL_METERS } from '../../support/fixtures.js';
import { TotalsModel } from '../../support/model.js';
import { Replicas } from '../../support/replicas.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { waitFor } from '../../support/redis.js';
import { diffTotals, Harness, type DeadLetter } from '../../support/tally.js';

const SEED = 20_240_611;
const PARTITIONS = 4;
const REPLICAS = 3;
const EVENTS = 200_000;
const INVALID = 400;
/** How long the main stream takes to send, at most (it goes slower when the machine is busy). */
const PRODUCE_MS = 30_000;
const CHUNK = 2_000;

interface ChaosRun {
  h: Harness;
  r: Replicas;
  redis: RedisServerHandle;
  mix: ChaosMix;
  model: TotalsModel;
  began: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Id of the event a dead letter holds (a batch entry's payload is the whole array; `index` says which). */
function deadEventId(d: DeadLetter): string | undefined {
  const parsed = JSON.parse(d.payload) as unknown;
  const event = (d.field === 'events' && Array.isArray(parsed) ? parsed[Number(d.index)] : parsed) as
    { id?: string } | undefined;
  return event?.id;
}

describe('chaos', () => {
  let server: RedisServerHandle | undefined;
  let harness: Harness | undefined;
  let replicas: Replicas | undefined;
  const savedRedisUrl = process.env.REDIS_URL;

  beforeAll(async () => {
    // Spawned workers inherit this process's environment, and REDIS_URL overrides their config's URL: it
    // would point them at the shared test Redis instead of the one this test kills.
    delete process.env.REDIS_URL;
    server = await startRedisServer({ appendonly: true, appendfsync: 'always' });
  });

  afterAll(async () => {
    try {
      await replicas?.stop();
      await harness?.close();
    } finally {
      await server?.stop();
      if (savedRedisUrl !== undefined) process.env.REDIS_URL = savedRedisUrl;
    }
  });

  it('keeps every total exact through replica SIGKILLs and a Redis SIGKILL + restart', async () => {
    const began = Date.now();
    const redis = server as RedisServerHandle;
    const mix = makeChaosMix({ events: EVENTS, subjects: 12, invalid: INVALID, seed: SEED });
    const model = new TotalsModel(MODEL_METERS);
    // Meters are isolated: an invalid event counts in the meters that can use it (the model decides per meter).
    for (const e of mix.main) model.add(e as never);
    for (const e of mix.lateDuplicates) model.add(e as never);
    expect(mix.total).toBeGreaterThanOrEqual(200_000);
    expect(model.duplicates).toBe(mix.duplicates);
    expect(new Set(mix.main.map((e) => partitionOf(e.subject, PARTITIONS))).size).toBe(PARTITIONS);

    const h = new Harness({
      meters: METERS,
      partitions: PARTITIONS,
      redisUrl: redis.url,
      label: 'chaos',
      // Windows close on event time; wall-clock closing of a quiet partition only after 5 s, longer than
      // the Redis outage (else every later event would be a correction).
      windows: { idleTimeout: '5s' },
      worker: { claimIdle: '1s', leaseTtl: '1s', batchSize: 10 },
    });
    harness = h;
    // The test's own connection and queue see the Redis outage too: expected, not worth a stack trace per retry.
    h.redis.on('error', () => undefined);
    h.queue.on('error', () => undefined);
    const r = new Replicas(() => h.spawnWorker());
    replicas = r;
    try {
      await runChaos({ h, r, redis, mix, model, began });
    } finally {
      await r.stop();
      await h.close();
      [replicas, harness] = [undefined, undefined];
    }
  }, 180_000);

  async function runChaos(ctx: ChaosRun): Promise<void> {
    const { h, r, redis, mix, model, began } = ctx;
    for (let i = 0; i < REPLICAS; i++) r.start();

    // Producer: the main stream in paced chunks, then the late duplicates. A send that fails (a pipeline
    // cut by the Redis kill) is simply sent again: workers drop what already arrived as duplicates.
    const producer = h.producer();
    let sent = 0;
    let resends = 0;
    const send = async (chunk: UsageEvent[]) => {
      for (let attempt = 1; ; attempt++) {
        try {
          await producer.sendBatch(chunk);
          return;
        } catch (err) {
          if (attempt >= 20) throw err;
          resends++;
          await sleep(100);
        }
      }
    };
    let producing = true;
    const production = (async () => {
      const t0 = Date.now();
      const chunks = Math.ceil(mix.main.length / CHUNK);
      try {
        for (let c = 0; c < chunks; c++) {
          await send(mix.main.slice(c * CHUNK, (c + 1) * CHUNK));
          sent += Math.min(CHUNK, mix.main.length - c * CHUNK);
          const due = t0 + ((c + 1) * PRODUCE_MS) / chunks;
          if (Date.now() < due) await sleep(due - Date.now());
        }
        for (let i = 0; i < mix.lateDuplicates.length; i += CHUNK)
          await send(mix.lateDuplicates.slice(i, i + CHUNK));
        sent += mix.lateDuplicates.length;
      } finally {
        producing = false;
      }
    })();

    // Chaos: every 2-4 s SIGKILL a random replica and start a new one; once, when 40% of the stream is out,
    // SIGKILL Redis instead, leave it down for a second, and restart it (its AOF brings the data back).
    let redisRestarts = 0;
    let redisDownMs = 0;
    const chaos = (async () => {
      const rnd = random(SEED + 1);
      while (producing) {
        await sleep(2_000 + rnd() * 2_000);
        if (!producing) break;
        if (redisRestarts === 0 && sent >= mix.main.length * 0.4) {
          const down = Date.now();
          await redis.kill('SIGKILL');
          await sleep(1_000);
          await redis.restart();
          redisDownMs = Date.now() - down;
          redisRestarts++;
        } else {
          await r.killOne(rnd);
          r.start();
        }
      }
    })();
    await Promise.all([production, chaos]);
    const producedMs = Date.now() - began;
    expect(r.crashes).toEqual([]); // no replica exited unless we killed it
    expect(redisRestarts).toBe(1);
    expect(r.kills).toBeGreaterThanOrEqual(4);
    expect(r.count).toBe(REPLICAS);
    // At least one replica is alive and heartbeating into the replica registry.
    await waitFor(async () => (await h.redis.zcount(h.keys.replicas(), Date.now(), '+inf')) >= 1, {
      message: 'a live replica heartbeat',
    });

    await h.settle(90_000);
    const settledMs = Date.now() - began;

    // Totals: every rollup's latest revision equals the model; no revision was emitted twice.
    const jobs: RollupJob[] = await h.rollups();
    const { latest, repeated } = await h.finalRollups();
    expect(repeated).toEqual([]);
    expect(diffTotals(latest, model.expected())).toEqual([]);
    const corrections = jobs.filter((j) => j.revision > 1).length;
    expect(corrections).toBeGreaterThan(0);

    // Dead letters: exactly the invalid events, matched by id (a resent batch may dead-letter one twice).
    const dead: DeadLetter[] = [];
    for (let p = 0; p < PARTITIONS; p++) dead.push(...(await h.deadLetters(p)));
    expect([...new Set(dead.map((d) => d.reason))]).toEqual(['invalid-value']);
    const deadIds = new Set(dead.map(deadEventId));
    expect([...mix.invalidIds].filter((id) => !deadIds.has(id))).toEqual([]);
    expect([...deadIds].filter((id) => id === undefined || !mix.invalidIds.has(id))).toEqual([]);

    // Nothing pending, in the event streams nor in the rollup outboxes.
    for (let p = 0; p < PARTITIONS; p++) {
      const [events] = (await h.redis.xpending(h.keys.events(p), h.config.consumerGroup)) as [number];
      const [outbox] = (await h.redis.xpending(h.keys.outbox(p), 'tally-relay')) as [number];
      expect({ partition: p, events, outbox }).toEqual({ partition: p, events: 0, outbox: 0 });
    }
    expect(r.crashes).toEqual([]);

    console.log(
      [
        'chaos figures:',
        `  events sent            ${mix.total} (${EVENTS} distinct valid, ${mix.duplicates} duplicates of which ${mix.lateDuplicates.length} re-sent at the end, ${mix.invalidIds.size} invalid, ${mix.delayed} far out of order)`,
        `  duplicates dropped     ${model.duplicates} (event counts exact)`,
        `  invalid dead-lettered  ${deadIds.size} of ${mix.invalidIds.size} (${dead.length} dead letters)`,
        `  producer re-sends      ${resends} chunk(s)`,
        `  replica SIGKILLs       ${r.kills} (${r.started} replicas started)`,
        `  Redis restarts         ${redisRestarts} (SIGKILL, down ${redisDownMs} ms, AOF always)`,
        `  rollup jobs            ${jobs.length}: ${latest.size} final rollups, ${corrections} corrections (revision > 1), max revision ${Math.max(...jobs.map((j) => j.revision))}`,
        `  time                   produced in ${(producedMs / 1000).toFixed(1)} s, settled at ${(settledMs / 1000).toFixed(1)} s, checked at ${((Date.now() - began) / 1000).toFixed(1)} s`,
      ].join('\n'),
    );
  }
});
