import { afterEach, describe, expect, it } from 'vitest';
import { partitionOf } from '../../../src/index.js';
import { replayDeadLetters } from '../../../src/admin/index.js';
import { Harness } from '../../support/tally.js';

const MINUTE = 60_000;
const meters = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
  { slug: 'llm_calls', eventType: 'llm', aggregation: 'COUNT', windowSize: '1m' },
];
const time = new Date(Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE + 500).toISOString();
const good = (id: string, tokens: unknown = 10) => ({
  id,
  source: 'bad',
  type: 'llm',
  subject: 'acme',
  time,
  data: { tokens },
});

describe('bad input', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('dead-letters every kind of bad entry with a reason, keeps going, and counts a fixed replay once', async () => {
    harness = new Harness({ meters, streams: { maxEntryBytes: 2048 } });
    const stream = harness.keys.events(0);
    const r = harness.redis;
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const raw: [string, string, string][] = [
      ['not-json', 'event', '{"id": "x",'],
      ['missing-field', 'event', JSON.stringify({ id: 'm1', source: 'bad', type: 'llm', time })],
      ['empty-id', 'event', JSON.stringify({ ...good('x'), id: '' })],
      ['wrong-type', 'event', JSON.stringify({ ...good('w1'), subject: 42 })],
      ['data-array', 'event', JSON.stringify({ ...good('d1'), data: [1, 2] })],
      ['bad-time', 'event', JSON.stringify({ ...good('t1'), time: 'yesterday' })],
      ['future', 'event', JSON.stringify({ ...good('f1'), time: future })],
      ['not-numeric', 'event', JSON.stringify(good('n1', 'lots'))],
      ['oversized', 'event', JSON.stringify({ ...good('o1'), data: { tokens: 1, pad: 'x'.repeat(4000) } })],
      ['no-field', 'payload', JSON.stringify(good('nf1'))],
      ['not-array', 'events', JSON.stringify(good('na1'))],
    ];
    for (const [, field, value] of raw) await r.xadd(stream, '*', field, value);
    // A batch entry with one bad event among good ones: the good ones count.
    await r.xadd(stream, '*', 'events', JSON.stringify([good('b1', 1), good('b2', 'NaN?'), good('b3', 2)]));
    // Valid events that match no meter are not errors.
    await r.xadd(stream, '*', 'event', JSON.stringify({ ...good('u1'), type: 'other' }));
    await r.xadd(stream, '*', 'event', JSON.stringify(good('ok1', 100)));

    const worker = await harness.startWorker();
    await harness.settle();
    const dead = await harness.deadLetters();
    expect(dead.map((d) => d.reason)).toEqual([
      'invalid-json',
      'missing-field',
      'invalid-field',
      'invalid-field',
      'invalid-field',
      'invalid-field',
      'future-time',
      'invalid-value',
      'oversized',
      'no-event-field',
      'invalid-batch',
      'invalid-value',
    ]);
    expect(dead[1]?.detail).toContain('subject');
    // One bad event of a batch is dead-lettered alone (its own JSON), pointing at its place in the entry.
    expect(dead[11]).toMatchObject({ index: '1', field: 'event' });
    expect(JSON.parse(dead[11]?.payload ?? '{}')).toMatchObject({ id: 'b2', data: { tokens: 'NaN?' } });
    expect(dead[7]?.payload).toBe(raw[7]?.[2]);
    // Meters are isolated: the events whose value is not a number are dead-lettered for `tokens` alone.
    expect(dead[7]?.meter).toBe('tokens');
    expect(dead[11]?.meter).toBe('tokens');
    expect(dead.filter((d) => d.meter !== undefined)).toHaveLength(2);
    expect(worker.getStats().unmetered).toBe(1);

    const totals = async () =>
      Object.fromEntries(
        (await harness!.rollups())
          .sort((a, b) => a.revision - b.revision)
          .map((x) => [x.meter, x.valueDecimal]),
      );
    // tokens: b1 + b3 + ok1. llm_calls: b1, b2, b3, n1, ok1: an event with a non-numeric value still
    // counts in the COUNT meter, which can use it.
    expect(await totals()).toEqual({ tokens: '103', llm_calls: '5' });

    // Sending the fixed event again changes nothing: it is the same event, counted already.
    await harness.producer().send(good('n1', 5));
    await harness.settle();
    expect(await totals()).toEqual({ tokens: '103', llm_calls: '5' });
    // Replaying its `tokens` dead letter with the fix after the window closed: counted once, in
    // tokens only (as a correction), and a second replay of it changes nothing.
    for (let i = 0; i < 2; i++) {
      const replayed = await replayDeadLetters(harness.redis, harness.config, {
        ids: [`0/${dead[7]?.id}`],
        payload: JSON.stringify(good('n1', 5)),
        delete: false,
      });
      expect(replayed.replayed).toMatchObject([{ meter: 'tokens' }]);
      await harness.settle();
      expect(await totals()).toEqual({ tokens: '108', llm_calls: '5' });
    }
  });

  it('counts a misrouted event exactly once, in its home partition', async () => {
    harness = new Harness({ meters, partitions: 4 });
    const event = good('mis-1', 3);
    const home = partitionOf(event.subject, 4);
    const wrong = (home + 1) % 4;
    await harness.redis.xadd(harness.keys.events(wrong), '*', 'event', JSON.stringify(event));
    await harness.producer().send(event); // the same event, routed correctly: a duplicate
    const worker = await harness.startWorker();
    await harness.settle();
    const rollups = await harness.rollups();
    expect(rollups.map((x) => [x.meter, x.valueDecimal, x.partition])).toEqual(
      expect.arrayContaining([
        ['tokens', '3', home],
        ['llm_calls', '1', home],
      ]),
    );
    expect(rollups).toHaveLength(2);
    expect(worker.getStats().forwarded).toBe(1);
  });
});
