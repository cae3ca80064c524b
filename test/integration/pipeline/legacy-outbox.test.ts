/**
 * A rolling upgrade: workers of the version before outbox pages still run and write one rollup per
 * entry to `<prefix>:{p<i>}:outbox` (the only stream they relay), while upgraded workers write pages
 * to `outbox:v2`. The upgraded relay must relay both, each rollup once, and never write a page where
 * an old relay would misread it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { rollupJobId, type UsageEvent } from '../../../src/index.js';
import { Harness } from '../../support/tally.js';

const MINUTE = 60_000;
const meters = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
];

describe('rollups written by workers of the previous version', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('relays one-rollup entries of the old outbox once, beside the pages of the new one', async () => {
    harness = new Harness({ meters, label: 'legacy-outbox' });
    const h = harness;
    const start = Math.floor(Date.now() / MINUTE) * MINUTE - 5 * MINUTE;
    // What an old worker's close wrote: one entry per rollup (fields as its closeWindows wrote them).
    const legacy = h.keys.legacyOutbox(0);
    const old = (subject: string, value: string, count: number) => [
      'm',
      'tokens',
      'a',
      'S',
      'ws',
      String(start),
      'we',
      String(start + MINUTE),
      'g',
      JSON.stringify([subject]),
      'v',
      value,
      'c',
      String(count),
      'r',
      '1',
    ];
    await h.redis.xadd(legacy, '*', ...old('old-1', '7000000', 2));
    await h.redis.xadd(legacy, '*', ...old('old-2', '500000', 1));

    // An upgraded worker meters new events of another window; its close writes a page to outbox:v2.
    const event = (id: string, subject: string, tokens: number): UsageEvent => ({
      id,
      source: 'upgrade',
      type: 'llm',
      subject,
      time: new Date(start + MINUTE + 1_000).toISOString(),
      data: { tokens },
    });
    await h.producer().sendBatch([event('a', 'new-1', 3), event('b', 'new-2', 4), event('c', 'new-1', 5)]);
    await h.startWorker();
    await h.settle();

    const rollups = await h.rollups();
    expect(rollups.map((r) => [r.subject, r.valueDecimal, r.eventCount, r.revision]).sort()).toEqual([
      ['new-1', '8', 2, 1],
      ['new-2', '4', 1, 1],
      ['old-1', '7', 2, 1],
      ['old-2', '0.5', 1, 1],
    ]);
    // The old entries get the job ids their own version would have given them.
    const ids = (await h.queue.getJobs(['waiting', 'completed'], 0, -1)).map((j) => j.id);
    expect(ids).toContain(rollupJobId('tokens', start, JSON.stringify(['old-1']), 1));
    // Both streams are relayed and emptied; the old one only ever held the two old entries.
    expect([await h.redis.xlen(legacy), await h.redis.xlen(h.keys.outbox(0))]).toEqual([0, 0]);
    const info = (await h.redis.xinfo('STREAM', legacy)) as unknown[];
    expect(info[info.indexOf('entries-added') + 1]).toBe(2);
  }, 30_000);
});
