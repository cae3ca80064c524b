/**
 * A window with thousands of groups closes over many bounded closeWindows calls; a worker SIGKILLed
 * in the middle of that close leaves it in the partition's state hash, and the next worker finishes it:
 * every group is emitted once, at revision 1, with its exact total.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { UsageEvent } from '../../../src/index.js';
import { waitFor } from '../../support/redis.js';
import { Harness } from '../../support/tally.js';

const MINUTE = 60_000;
const GROUPS = 12_000;
const meters = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
];

describe('a big window', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('closes over several calls and survives a worker SIGKILLed mid-close: every group once, exact', async () => {
    harness = new Harness({ meters, label: 'bigwin' });
    const h = harness;
    const start = Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE;
    // The independent model: one group per subject, its total.
    const model = new Map<string, number>();
    const events: UsageEvent[] = [];
    for (let i = 0; i < GROUPS; i++) {
      const subject = `s${i}`;
      const tokens = (i % 97) + 1;
      model.set(subject, tokens * 2);
      for (const n of [0, 1])
        events.push({
          id: `e${i}-${n}`,
          source: 'big',
          type: 'llm',
          subject,
          time: new Date(start + 1000 + n).toISOString(),
          data: { tokens },
        });
    }
    const producer = h.producer();
    for (let i = 0; i < events.length; i += 2000) await producer.sendBatch(events.slice(i, i + 2000));

    const first = h.spawnWorker();
    // The close starts once the partition is quiet (wall clock): catch it in the middle.
    await waitFor(async () => (await h.redis.hexists(h.keys.state(0), 'closing')) === 1, {
      timeoutMs: 30_000,
      intervalMs: 1,
      message: 'the big window to be mid-close',
    });
    first.kill('SIGKILL');
    await new Promise((resolve) => first.once('exit', resolve));
    // It really died mid-close: the window is out of the index, its close state kept.
    expect(await h.redis.hget(h.keys.state(0), 'closing')).toMatch(/^tokens\|S\|/);
    expect(await h.redis.zcard(h.keys.windowIndex(0))).toBe(0);

    h.spawnWorker();
    await h.settle(60_000);
    const rollups = await h.rollups();
    expect(rollups).toHaveLength(GROUPS);
    const got = new Map<string, number>();
    for (const r of rollups) {
      expect(r.revision).toBe(1);
      expect(got.has(r.subject)).toBe(false);
      got.set(r.subject, Number(r.valueDecimal));
      expect(r.eventCount).toBe(2);
    }
    expect(got).toEqual(model);
    await producer.close();
  }, 120_000);
});
