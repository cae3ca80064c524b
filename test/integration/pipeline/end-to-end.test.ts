import { afterEach, describe, expect, it } from 'vitest';
import { createRollupSubscriber, type RollupJob } from '../../../src/index.js';
import { waitFor } from '../../support/redis.js';
import { makeEvents, METERS, MODEL_METERS } from '../../support/fixtures.js';
import { TotalsModel } from '../../support/model.js';
import { diffTotals, Harness } from '../../support/tally.js';

describe('producer → worker → BullMQ rollups', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('emits exact totals for every aggregation, dropping duplicates, one rollup per window and group', async () => {
    harness = new Harness({ meters: METERS });
    const events = makeEvents(6000, { dupRate: 0.1 });
    const model = new TotalsModel(MODEL_METERS);
    for (const e of events) model.add(e as never);
    const producer = harness.producer();
    // Half as batch entries, half as single-event entries: workers accept both.
    await producer.sendBatch(events.slice(0, 3000));
    for (const e of events.slice(3000)) await producer.send(e);
    const worker = await harness.startWorker();
    await harness.settle();

    const { latest, repeated } = await harness.finalRollups();
    expect(repeated).toEqual([]);
    expect(diffTotals(latest, model.expected())).toEqual([]);
    const stats = worker.getStats();
    expect(stats.duplicates).toBe(model.duplicates);
    expect(stats.deadLettered).toBe(0);
    // In-order events: every window closed once, no corrections.
    expect([...latest.values()].every((r) => r.revision === 1)).toBe(true);
  });

  it('with rollups.batchJobs: one job per page of a window, the same exact totals, every rollup to a subscriber once', async () => {
    harness = new Harness({ meters: METERS, label: 'batch-jobs', rollups: { batchJobs: true } });
    const events = makeEvents(4000, { dupRate: 0.1, subjects: 40 });
    const model = new TotalsModel(MODEL_METERS);
    for (const e of events) model.add(e as never);
    const received: RollupJob[] = [];
    const subscriber = createRollupSubscriber(
      harness.queue.name,
      (rollup) => {
        received.push(rollup);
        return Promise.resolve();
      },
      { connection: { url: harness.config.redisUrl }, prefix: harness.config.rollups.queuePrefix },
    );
    try {
      await harness.producer().sendBatch(events);
      await harness.startWorker();
      await harness.settle();
      const jobs = await harness.queue.getJobs(['waiting', 'active', 'completed', 'failed'], 0, -1);
      expect(new Set(jobs.map((j) => j.name))).toEqual(new Set(['rollups']));
      const { latest, repeated } = await harness.finalRollups();
      expect(repeated).toEqual([]);
      expect(diffTotals(latest, model.expected())).toEqual([]);
      expect(jobs.length).toBeLessThan(latest.size / 4);
      await waitFor(() => Promise.resolve(received.length >= latest.size), {
        message: 'subscriber got every rollup',
      });
      expect(received).toHaveLength(latest.size);
    } finally {
      await subscriber.close();
    }
  });

  it('counts a replayed stream once (the same events sent again later are all duplicates)', async () => {
    harness = new Harness({ meters: METERS });
    const events = makeEvents(2000, { dupRate: 0 });
    const model = new TotalsModel(MODEL_METERS);
    for (const e of events) model.add(e as never);
    const producer = harness.producer();
    await producer.sendBatch(events);
    const worker = await harness.startWorker();
    await harness.settle();
    await producer.sendBatch(events);
    await harness.settle();
    const { latest, repeated } = await harness.finalRollups();
    expect(repeated).toEqual([]);
    expect(diffTotals(latest, model.expected())).toEqual([]);
    expect(worker.getStats().duplicates).toBe(2000);
  });

  it('sums a stream of 0.1 exactly (no floating-point drift)', async () => {
    harness = new Harness({
      meters: [
        { slug: 'gpu', eventType: 'gpu', aggregation: 'SUM', valueProperty: '$.s', windowSize: 'HOUR' },
      ],
    });
    const time = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 2 * 3_600_000).toISOString();
    const producer = harness.producer();
    const n = 200_000;
    for (let i = 0; i < n; i += 10_000) {
      const batch = Array.from({ length: 10_000 }, (_, k) => ({
        id: `g${i + k}`,
        source: 's',
        type: 'gpu',
        subject: 'c',
        time,
        data: { s: 0.1 },
      }));
      await producer.sendBatch(batch);
    }
    await harness.startWorker();
    await harness.settle(60_000);
    const rollups = await harness.rollups();
    expect(rollups).toHaveLength(1);
    expect(rollups[0]?.valueDecimal).toBe('20000');
    expect(rollups[0]?.value).toBe(20000);
    expect(rollups[0]?.eventCount).toBe(n);
  });
});
