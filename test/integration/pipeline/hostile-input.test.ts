/**
 * Hostile input (issue 12): one bad entry never costs a good one. Values too deep to serialize, a batch
 * that fails as a whole, and replaying what the worker itself dead-lettered.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { partitionOf, replayDeadLetters, TallyWorker } from '../../../src/index.js';
import { Harness } from '../../support/tally.js';
import { waitFor } from '../../support/redis.js';

const MINUTE = 60_000;
const meters = [{ slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { model: '$.model' }, windowSize: '1m' }];
const time = new Date(Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE + 500).toISOString();
/** `{"a":{"a":...}}` nested 10,000 levels: JSON.parse reads it, JSON.stringify throws a RangeError on it. */
const DEEP = `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`;
const good = (id: string, subject = 'acme') => JSON.stringify({ id, source: 'hostile', type: 'llm', subject, time, data: { tokens: 1, model: 'm' } });
/** Built as text: JSON.stringify cannot serialize the deep value. */
const deepData = (id: string | undefined) =>
  `{${id === undefined ? '' : `"id":"${id}",`}"source":"hostile","type":"llm","subject":"acme","time":"${time}","data":{"tokens":1,"model":"m","deep":${DEEP}}}`;
const deepGroup = (id: string) =>
  `{"id":"${id}","source":"hostile","type":"llm","subject":"acme","time":"${time}","data":{"tokens":1,"model":${DEEP}}}`;

describe('hostile input', () => {
  let harness: Harness | undefined;
  let worker: TallyWorker | undefined;
  afterEach(async () => {
    await worker?.close();
    worker = undefined;
    await harness?.close();
    harness = undefined;
  });

  async function total(h: Harness): Promise<string> {
    const { latest } = await h.finalRollups();
    return [...latest.values()].map((r) => `${r.meter}:${r.valueDecimal}/${r.eventCount}`).join(',');
  }

  it('counts every valid event next to values too deep to serialize, dead-letters only the bad ones, and replays them without crashing', async () => {
    harness = new Harness({ meters, label: 'deep', worker: { maxDeliveries: 3 } });
    const h = harness;
    const stream = h.keys.events(0);
    const multi = h.redis.multi();
    for (let i = 0; i < 20; i++) multi.xadd(stream, '*', 'event', good(`a${i}`));
    multi.xadd(stream, '*', 'events', `[${good('batch-good')},${deepData(undefined)}]`);
    for (let i = 0; i < 20; i++) multi.xadd(stream, '*', 'event', good(`b${i}`));
    // A valid event whose group-by value is too deep: alone, and in a batch next to a valid one.
    multi.xadd(stream, '*', 'event', deepGroup('group-single'));
    multi.xadd(stream, '*', 'events', `[${deepGroup('group-batch')},${good('batch-good-2')}]`);
    // A valid event with a deep value no meter reads: counted.
    multi.xadd(stream, '*', 'event', deepData('deep-unread'));
    await multi.exec();

    worker = await h.startWorker();
    await h.settle();
    expect(await total(h)).toBe('tokens:43/43');
    const dead = await h.deadLetters();
    expect(dead.map((d) => [d.reason, d.index, d.field])).toEqual([
      ['missing-field', '1', 'event'],
      ['unprocessable', '0', 'event'],
      ['unprocessable', '0', 'event'],
    ]);
    expect(dead[0]?.payload).toBe(deepData(undefined));
    expect(dead[1]?.payload).toBe(deepGroup('group-single'));
    expect(dead[1]?.detail).toMatch(/RangeError/);
    expect(dead[2]?.payload).toBe(deepGroup('group-batch'));
    expect(worker.getStats().poison).toBe(0);

    // Replay never crashes on what the worker wrote: every dead letter goes back and fails the same way.
    const replay = await replayDeadLetters(h.redis, h.config, { all: true });
    expect(replay.replayed).toHaveLength(3);
    expect(replay.failed).toEqual([]);
    await h.settle();
    expect(await total(h)).toBe('tokens:43/43');
    expect((await h.deadLetters()).map((d) => d.reason)).toEqual(['missing-field', 'unprocessable', 'unprocessable']);
  }, 30_000);

  it('bisects a batch that fails as a whole: only the guilty entry is poison, with its error, and the others count', async () => {
    harness = new Harness({ meters, partitions: 2, label: 'bisect', worker: { maxDeliveries: 3, batchSize: 100 } });
    const h = harness;
    const mine = ['acme', 'a', 'b', 'c', 'd', 'e', 'f'].find((s) => partitionOf(s, 2) === 0) as string;
    const other = ['acme', 'a', 'b', 'c', 'd', 'e', 'f'].find((s) => partitionOf(s, 2) === 1) as string;
    // The guilty entry holds a misrouted event, and forwarding it fails: its home stream is not a stream.
    await h.redis.set(h.keys.events(1), 'not a stream');
    const stream = h.keys.events(0);
    const multi = h.redis.multi();
    for (let i = 0; i < 10; i++) multi.xadd(stream, '*', 'event', good(`x${i}`, mine));
    multi.xadd(stream, '*', 'event', good('misrouted', other));
    for (let i = 0; i < 10; i++) multi.xadd(stream, '*', 'event', good(`y${i}`, mine));
    const ids = ((await multi.exec()) ?? []).map(([, id]) => id as string);
    worker = new TallyWorker({ config: h.config, partitions: [0], logger: pino({ level: 'silent' }) });
    await worker.start();
    const dead = await waitFor(async () => (await h.deadLetters()).length > 0 && h.deadLetters(), {
      timeoutMs: 20_000,
      message: 'the guilty entry to be dead-lettered',
    });
    await waitFor(async () => (await total(h)) === 'tokens:20/20', { timeoutMs: 10_000, message: 'the 20 good events to be counted' });
    expect(dead.map((d) => [d.reason, d.entry, d.deliveries])).toEqual([['poison', ids[10], '3']]);
    expect(dead[0]?.detail).toMatch(/WRONGTYPE/);
  }, 40_000);
});
