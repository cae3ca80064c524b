import { afterEach, describe, expect, it } from 'vitest';
import type { UsageEvent } from '../../../src/index.js';
import { Harness } from '../../support/tally.js';

const MINUTE = 60_000;
const meters = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
];

/**
 * The minute the file's clock starts in, fixed once: events made before and after a settle land in
 * the same window even when a minute boundary passes in between.
 */
const BASE_MINUTE = Math.floor(Date.now() / MINUTE) * MINUTE;

function event(id: string, minutesAgo: number, tokens: number): UsageEvent {
  const start = BASE_MINUTE - minutesAgo * MINUTE;
  return {
    id,
    source: 'late',
    type: 'llm',
    subject: 'acme',
    time: new Date(start + 1000).toISOString(),
    data: { tokens },
  };
}

describe('late events', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('policy correct: applies a late event and emits a correction with the next revision and the new total', async () => {
    harness = new Harness({ meters });
    const producer = harness.producer();
    await producer.sendBatch([event('a', 3, 10), event('b', 3, 5)]);
    await harness.startWorker();
    await harness.settle();
    expect((await harness.rollups()).map((r) => [r.revision, r.valueDecimal])).toEqual([[1, '15']]);

    // Two late events for the closed window, plus a late duplicate of one already counted.
    await producer.sendBatch([event('c', 3, 7), event('d', 3, 1), event('a', 3, 10)]);
    await harness.settle();
    const rollups = (await harness.rollups()).sort((x, y) => x.revision - y.revision);
    // The two late events arrived together, so they produce one correction, not one each.
    expect(rollups.map((r) => [r.revision, r.valueDecimal, r.eventCount])).toEqual([
      [1, '15', 2],
      [2, '23', 4],
    ]);
    expect(await harness.deadLetters()).toEqual([]);
  });

  it('policy dead-letter: a late event goes to the dead-letter stream with its payload and changes nothing', async () => {
    harness = new Harness({ meters, windows: { latePolicy: 'dead-letter' } });
    const producer = harness.producer();
    await producer.send(event('a', 3, 10));
    await harness.startWorker();
    await harness.settle();
    const late = event('late-1', 3, 99);
    await producer.send(late);
    await harness.settle();
    const rollups = await harness.rollups();
    expect(rollups.map((r) => [r.revision, r.valueDecimal])).toEqual([[1, '10']]);
    const dead = await harness.deadLetters();
    expect(dead).toHaveLength(1);
    expect(dead[0]?.reason).toBe('late');
    expect(JSON.parse(dead[0]?.payload ?? '{}')).toMatchObject({ id: 'late-1', data: { tokens: 99 } });
  });

  it('dead-letters events older than the retention of closed windows, under either policy', async () => {
    harness = new Harness({ meters, windows: { retention: '10m' } });
    await harness.producer().send(event('old', 30, 1));
    await harness.startWorker();
    await harness.settle();
    expect(await harness.rollups()).toEqual([]);
    expect((await harness.deadLetters()).map((d) => d.reason)).toEqual(['beyond-retention']);
  });

  it('closes a time-ordered backfill window by window, without corrections', async () => {
    harness = new Harness({ meters });
    const events = Array.from({ length: 3000 }, (_, i) => event(`bf${i}`, 50 - Math.floor(i / 100), 1));
    await harness.producer().sendBatch(events);
    await harness.startWorker();
    await harness.settle();
    const rollups = await harness.rollups();
    expect(rollups).toHaveLength(30);
    expect(rollups.every((r) => r.revision === 1 && r.valueDecimal === '100')).toBe(true);
  });
});
