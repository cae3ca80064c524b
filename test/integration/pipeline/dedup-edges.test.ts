import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../support/redis.js';
import { Harness } from '../../support/tally.js';

const MINUTE = 60_000;
const meters = [
  {
    slug: 'tokens',
    eventType: 'llm',
    aggregation: 'SUM',
    valueProperty: '$.tokens',
    windowSize: '1m',
    timeZone: 'Europe/Berlin',
  },
];

describe('dedup and window edge cases', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('drops an older copy applied after a newer copy from the next dedup epoch', async () => {
    // Horizon 1m: 30 s epochs. Copy A is ingested in one epoch, copy B in the next; A's entry is
    // held by a consumer that dies, so B is applied first and A only after it is reclaimed.
    harness = new Harness({
      meters,
      worker: { claimIdle: '500ms' },
      dedup: { horizon: '1m' },
      label: 'epochs',
    });
    const { redis, keys } = harness;
    const epochMs = harness.config.dedup.epochMs;
    expect(epochMs).toBe(30_000);
    const stream = keys.events(0);
    const epochStart = Math.floor(Date.now() / epochMs) * epochMs;
    const time = new Date(Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE).toISOString();
    const event = JSON.stringify({
      id: 'same',
      source: 'edge',
      type: 'llm',
      subject: 'acme',
      time,
      data: { tokens: 5 },
    });
    await redis.xgroup('CREATE', stream, harness.config.consumerGroup, '0', 'MKSTREAM');
    await redis.xadd(stream, `${epochStart - epochMs + 100}-0`, 'event', event);
    await redis.xreadgroup('GROUP', harness.config.consumerGroup, 'died', 'COUNT', 1, 'STREAMS', stream, '>');
    await redis.xadd(stream, `${epochStart + 100}-0`, 'event', event);
    const worker = await harness.startWorker();
    await waitFor(() => worker.getStats().reclaimed === 1, {
      message: 'the dead consumer entry to be reclaimed',
    });
    await harness.settle();
    const rollups = await harness.rollups();
    expect(rollups.map((r) => [r.valueDecimal, r.eventCount])).toEqual([['5', 1]]);
    expect(worker.getStats().duplicates).toBe(1);
  });

  it('rejects one event whose time cannot be windowed without failing its batch', async () => {
    harness = new Harness({ meters });
    const time = new Date(Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE).toISOString();
    await harness.producer().sendBatch([
      {
        id: 'ancient',
        source: 'edge',
        type: 'llm',
        subject: 'acme',
        time: '0000-06-01T00:00:00Z',
        data: { tokens: 1 },
      },
      { id: 'fine', source: 'edge', type: 'llm', subject: 'acme', time, data: { tokens: 2 } },
    ]);
    await harness.startWorker();
    await harness.settle();
    expect((await harness.rollups()).map((r) => r.valueDecimal)).toEqual(['2']);
    expect((await harness.deadLetters()).map((d) => d.reason)).toEqual(['unprocessable']);
  });

  it('expires a window first created by a late event, like any closed window', async () => {
    harness = new Harness({ meters });
    const start = Math.floor(Date.now() / MINUTE) * MINUTE;
    const at = (minutesAgo: number) => new Date(start - minutesAgo * MINUTE + 1000).toISOString();
    const producer = harness.producer();
    await producer.send({
      id: 'w1',
      source: 'edge',
      type: 'llm',
      subject: 'acme',
      time: at(3),
      data: { tokens: 1 },
    });
    await harness.startWorker();
    await harness.settle();
    await producer.send({
      id: 'w0',
      source: 'edge',
      type: 'llm',
      subject: 'acme',
      time: at(5),
      data: { tokens: 4 },
    });
    await harness.settle();
    const late = (await harness.rollups()).find((r) => r.valueDecimal === '4');
    expect(late?.revision).toBe(1);
    const key = harness.keys.window(0, 'tokens', Date.parse(late?.windowStart ?? ''));
    expect(await harness.redis.pttl(key)).toBeGreaterThan(0);
  });
});

describe('consumer groups', () => {
  it('a worker leaving removes its consumer names, but not a consumer holding pending entries', async () => {
    // Without leases: a lease holder would take the other consumer's entry over at once.
    const harness = new Harness({ meters, worker: { claimIdle: '1h', leases: false } });
    try {
      const stream = harness.keys.events(0);
      const producer = harness.producer();
      await producer.send({ id: 'held', source: 'edge', type: 'llm', subject: 'acme', data: { tokens: 1 } });
      await harness.redis.xgroup('CREATE', stream, harness.config.consumerGroup, '0', 'MKSTREAM');
      await harness.redis.xreadgroup(
        'GROUP',
        harness.config.consumerGroup,
        'holder',
        'COUNT',
        1,
        'STREAMS',
        stream,
        '>',
      );
      await producer.send({ id: 'x', source: 'edge', type: 'llm', subject: 'acme', data: { tokens: 1 } });
      const worker = await harness.startWorker('leaving');
      await waitFor(() => worker.getStats().applied === 1, { message: 'the worker to apply its entry' });
      const names = async (key: string, group: string) =>
        ((await harness.redis.xinfo('CONSUMERS', key, group)) as unknown[][]).map((c) => c[1]).sort();
      expect(await names(stream, harness.config.consumerGroup)).toEqual(['holder', 'leaving']);
      await worker.close();
      expect(await names(stream, harness.config.consumerGroup)).toEqual(['holder']);
      expect(await names(harness.keys.outbox(0), 'tally-relay')).toEqual([]);
    } finally {
      await harness.close();
    }
  });
});
