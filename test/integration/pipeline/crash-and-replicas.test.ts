import { afterEach, describe, expect, it } from 'vitest';
import type { UsageEvent } from '../../../src/index.js';
import { TotalsModel } from '../../support/model.js';
import { waitFor } from '../../support/redis.js';
import { diffTotals, Harness, toRecord } from '../../support/tally.js';
import { makeEvents, METERS, MODEL_METERS } from '../../support/fixtures.js';

describe('crashes and replicas', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  async function groupProgress(h: Harness, partition = 0): Promise<{ read: number; pending: number }> {
    const groups = (await h.redis.xinfo('GROUPS', h.keys.events(partition))) as unknown[][];
    const g = toRecord(groups[0] ?? []);
    return { read: Number(g['entries-read'] ?? 0), pending: Number(g.pending ?? 0) };
  }

  it('keeps totals exact when a worker process is SIGKILLed mid-stream and another takes over', async () => {
    harness = new Harness({ meters: METERS, label: 'crash', worker: { batchSize: 200 } });
    const events = makeEvents(40_000, { dupRate: 0.1, minutes: 4 });
    const model = new TotalsModel(MODEL_METERS);
    for (const e of events) model.add(e as never);
    const producer = harness.producer();
    // Single-event entries: many small batches, so the kill lands in the middle of the stream.
    const send = async (slice: UsageEvent[]) => {
      const pipeline = harness!.redis.pipeline();
      for (const e of slice) pipeline.xadd(harness!.keys.events(0), '*', 'event', JSON.stringify(e));
      await pipeline.exec();
    };
    await send(events.slice(0, 20_000));
    const first = harness.spawnWorker();
    await waitFor(async () => (await groupProgress(harness!)).read > 4_000, {
      timeoutMs: 20_000,
      message: 'first worker to make progress',
    });
    first.kill('SIGKILL');
    await new Promise((resolve) => first.once('exit', resolve));
    const atKill = await groupProgress(harness);
    expect(atKill.read).toBeLessThan(20_000); // it really died mid-stream

    await send(events.slice(20_000));
    harness.spawnWorker();
    await harness.settle(60_000);

    const { latest, repeated } = await harness.finalRollups();
    expect(repeated).toEqual([]);
    expect(diffTotals(latest, model.expected())).toEqual([]);
    await producer.close();
  }, 120_000);

  it('shares partitions between two replicas of one consumer group with exact totals', async () => {
    harness = new Harness({ meters: METERS, partitions: 2, label: 'replicas', worker: { batchSize: 100 } });
    const events = makeEvents(20_000, { dupRate: 0.05, subjects: 20 });
    const model = new TotalsModel(MODEL_METERS);
    for (const e of events) model.add(e as never);
    const a = await harness.startWorker('replica-a');
    const b = await harness.startWorker('replica-b');
    // Leases spread the two partitions over the two replicas.
    await waitFor(() => a.activePartitions.length === 1 && b.activePartitions.length === 1, {
      message: 'one partition per replica',
    });
    const producer = harness.producer();
    for (let i = 0; i < events.length; i += 500) {
      for (const e of events.slice(i, i + 500)) void producer.send(e);
      await producer.send({ id: `tick-${i}`, source: 'ticks', type: 'none', subject: 'x' });
    }
    await harness.settle(60_000);
    const { latest, repeated } = await harness.finalRollups();
    expect(repeated).toEqual([]);
    expect(diffTotals(latest, model.expected())).toEqual([]);
    const [sa, sb] = [a.getStats(), b.getStats()];
    expect(sa.entries).toBeGreaterThan(0);
    expect(sb.entries).toBeGreaterThan(0);
    expect(sa.duplicates + sb.duplicates).toBe(model.duplicates);
  }, 120_000);
});
