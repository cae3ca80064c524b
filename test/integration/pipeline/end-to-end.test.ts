import { afterEach, describe, expect, it } from 'vitest';
import type { UsageEvent } from '../../../src/index.js';
import { TotalsModel, type ModelMeter } from '../../support/model.js';
import { diffTotals, Harness } from '../../support/tally.js';

const MINUTE = 60_000;

export const METERS = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { model: '$.model' }, windowSize: '1m' },
  { slug: 'calls', eventType: 'req', aggregation: 'COUNT', groupBy: { route: '$.route' }, windowSize: '1m' },
  { slug: 'lat_min', eventType: 'req', aggregation: 'MIN', valueProperty: '$.latency', windowSize: '1m' },
  { slug: 'lat_max', eventType: 'req', aggregation: 'MAX', valueProperty: '$.latency', windowSize: '1m' },
  { slug: 'lat_avg', eventType: 'req', aggregation: 'AVG', valueProperty: '$.latency', windowSize: '1m' },
  { slug: 'users', eventType: 'req', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user', windowSize: '1m' },
  { slug: 'balance', eventType: 'req', aggregation: 'LATEST', valueProperty: '$.balance', windowSize: '1m' },
];

export const MODEL_METERS: ModelMeter[] = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueKey: 'tokens', groupBy: { model: 'model' }, windowMs: MINUTE },
  { slug: 'calls', eventType: 'req', aggregation: 'COUNT', groupBy: { route: 'route' }, windowMs: MINUTE },
  { slug: 'lat_min', eventType: 'req', aggregation: 'MIN', valueKey: 'latency', windowMs: MINUTE },
  { slug: 'lat_max', eventType: 'req', aggregation: 'MAX', valueKey: 'latency', windowMs: MINUTE },
  { slug: 'lat_avg', eventType: 'req', aggregation: 'AVG', valueKey: 'latency', windowMs: MINUTE },
  { slug: 'users', eventType: 'req', aggregation: 'UNIQUE_COUNT', valueKey: 'user', windowMs: MINUTE },
  { slug: 'balance', eventType: 'req', aggregation: 'LATEST', valueKey: 'balance', windowMs: MINUTE },
];

/** Deterministic events over `minutes` past minutes, in time order, with `dupRate` re-sent duplicates. */
export function makeEvents(n: number, opts: { minutes?: number; dupRate?: number; subjects?: number; seed?: number } = {}): UsageEvent[] {
  let s = opts.seed ?? 7;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const minutes = opts.minutes ?? 3;
  const start = Math.floor(Date.now() / MINUTE) * MINUTE - (minutes + 2) * MINUTE;
  const events: UsageEvent[] = [];
  for (let i = 0; i < n; i++) {
    const time = new Date(start + Math.floor((i / n) * minutes * MINUTE)).toISOString();
    const subject = `cust-${Math.floor(rnd() * (opts.subjects ?? 5))}`;
    if (events.length > 10 && rnd() < (opts.dupRate ?? 0.1)) {
      events.push(events[Math.floor(rnd() * events.length)] as UsageEvent);
      continue;
    }
    const event: UsageEvent =
      rnd() < 0.5
        ? { id: `e${i}`, source: 'test', type: 'llm', subject, time, data: { tokens: Math.floor(rnd() * 1000) + 0.125, model: rnd() < 0.5 ? 'a' : 'b' } }
        : {
            id: `e${i}`,
            source: 'test',
            type: 'req',
            subject,
            time,
            data: {
              route: rnd() < 0.5 ? '/x' : '/y',
              latency: Math.round(rnd() * 500_000) / 1000 - 50,
              user: `u${Math.floor(rnd() * 20)}`,
              balance: Math.round(rnd() * 1e6) / 100,
            },
          };
    events.push(event);
  }
  return events;
}

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
      meters: [{ slug: 'gpu', eventType: 'gpu', aggregation: 'SUM', valueProperty: '$.s', windowSize: 'HOUR' }],
    });
    const time = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 2 * 3_600_000).toISOString();
    const producer = harness.producer();
    const n = 200_000;
    for (let i = 0; i < n; i += 10_000) {
      const batch = Array.from({ length: 10_000 }, (_, k) => ({ id: `g${i + k}`, source: 's', type: 'gpu', subject: 'c', time, data: { s: 0.1 } }));
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
