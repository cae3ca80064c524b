/**
 * applyBatch.lua receives each call's events aggregated per (window, group) cell and takes an event
 * back out of its cells when Redis finds it a duplicate, late or not ours any more. These scenarios
 * put those cases inside single calls, for every aggregation, and compare with the independent model.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { UsageEvent } from '../../../src/index.js';
import { makeEvents, METERS, MODEL_METERS } from '../../support/fixtures.js';
import { TotalsModel } from '../../support/model.js';
import { diffTotals, Harness } from '../../support/tally.js';

const MINUTE = 60_000;

/** Batch entries of `size` events each. */
async function sendInEntries(harness: Harness, events: UsageEvent[], size: number): Promise<void> {
  const producer = harness.producer();
  for (let i = 0; i < events.length; i += size) await producer.sendBatch(events.slice(i, i + size));
}

describe('cells: events aggregated per (window, group) before Redis', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('duplicates inside one call, then late events and duplicates into emitted windows: exact for every aggregation', async () => {
    harness = new Harness({ meters: METERS, label: 'cells' });
    const model = new TotalsModel(MODEL_METERS);
    // A third of the events re-send an earlier one, mostly within the same 400-event entry (one call).
    const first = makeEvents(4000, { dupRate: 0.3, subjects: 3 });
    for (const e of first) model.add(e as never);
    await sendInEntries(harness, first, 400);
    const worker = await harness.startWorker();
    await harness.settle();
    let { latest, repeated } = await harness.finalRollups();
    expect(repeated).toEqual([]);
    expect(diffTotals(latest, model.expected())).toEqual([]);
    expect(worker.getStats().duplicates).toBe(model.duplicates);

    // Every window is emitted now. New events for them (late), each entry mixed with re-sends of
    // events already counted and duplicates among themselves: corrections carry the new totals.
    const late = makeEvents(2000, { dupRate: 0.2, subjects: 3, seed: 11 }).map((e) => ({
      ...e,
      id: `late-${e.id}`,
    }));
    // Re-sends of a late event with other data (a producer bug): the first copy counts, so a
    // MIN/MAX/LATEST cell holding both is rebuilt from the events that count.
    const conflicting = (e: UsageEvent): UsageEvent => ({
      ...e,
      data: { ...e.data, tokens: 99_999, latency: -999, balance: 123_456, user: 'intruder' },
    });
    const mixed: UsageEvent[] = [];
    late.forEach((e, i) => {
      mixed.push(e);
      if (i % 5 === 0) mixed.push(first[i] as UsageEvent);
      if (i % 7 === 3) mixed.push(conflicting(e));
    });
    for (const e of mixed) model.add(e as never);
    await sendInEntries(harness, mixed, 300);
    await harness.settle();
    ({ latest, repeated } = await harness.finalRollups());
    expect(repeated).toEqual([]);
    expect(diffTotals(latest, model.expected())).toEqual([]);
    expect([...latest.values()].some((r) => r.revision > 1)).toBe(true);
    expect(worker.getStats().duplicates).toBe(model.duplicates);
    expect(await harness.deadLetters()).toEqual([]);
  }, 60_000);

  it('a cell whose sum overflows int64 is added event by event: only the events that do not fit are dead-lettered', async () => {
    const meters = [
      { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
    ];
    harness = new Harness({ meters, label: 'cell-overflow' });
    const time = new Date(Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE + 1_000).toISOString();
    const event = (id: string, tokens: number): UsageEvent => ({
      id,
      source: 'big',
      type: 'llm',
      subject: 'acme',
      time,
      data: { tokens },
    });
    const producer = harness.producer();
    await harness.startWorker();
    // 24.775807 units below the int64 limit of micro-units (9,223,372,036,854.775807 units).
    await producer.send(event('base', 9_223_372_036_830));
    await harness.settle();
    // One call, one cell of three events of 20 units: the cell's sum (60) does not fit, 20 does.
    await producer.sendBatch([event('a', 20), event('b', 20), event('c', 20)]);
    await harness.settle();
    const dead = await harness.deadLetters();
    expect(dead.map((d) => [d.reason, (JSON.parse(d.payload) as UsageEvent).id])).toEqual([
      ['sum-overflow', 'b'],
      ['sum-overflow', 'c'],
    ]);
    const [rollup] = (await harness.finalRollups()).latest.values();
    expect([rollup?.valueDecimal, rollup?.eventCount]).toEqual(['9223372036850', 4]);
  }, 30_000);
});
