/**
 * Meters are isolated: an event one meter cannot use counts in the others and is dead-lettered for that
 * meter alone; replaying that dead letter with a fix counts it once, in that meter only, also when the
 * worker is SIGKILLed during the replay and the replay is repeated.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { replayDeadLetters } from '../../../src/admin/index.js';
import type { UsageEvent } from '../../../src/index.js';
import { TotalsModel, type ModelMeter } from '../../support/model.js';
import { diffTotals, Harness } from '../../support/tally.js';

const MINUTE = 60_000;
const meters = [
  { slug: 'calls', eventType: 'api.request', aggregation: 'COUNT', groupBy: { route: '$.route' }, windowSize: 'MINUTE' },
  { slug: 'users', eventType: 'api.request', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user', windowSize: 'MINUTE' },
];
const calls: ModelMeter = { slug: 'calls', eventType: 'api.request', aggregation: 'COUNT', groupBy: { route: 'route' }, windowMs: MINUTE };
const users: ModelMeter = { slug: 'users', eventType: 'api.request', aggregation: 'UNIQUE_COUNT', valueKey: 'user', windowMs: MINUTE };

describe('meter isolation', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('counts an event in every meter that can use it, dead-letters it for the others, and counts a fixed replay once in that meter alone, through a SIGKILL', async () => {
    harness = new Harness({ meters, partitions: 2, label: 'isolation' });
    const h = harness;
    const start = Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE;
    const events: UsageEvent[] = Array.from({ length: 300 }, (_, i) => ({
      id: `e${i}`,
      source: 'gateway',
      type: 'api.request',
      subject: `cust-${i % 5}`,
      time: new Date(start + (i % 120) * 1000).toISOString(),
      // Every third event has no user, as the README's producer snippet sends it.
      data: i % 3 === 0 ? { route: '/v1/chat' } : { route: '/v1/chat', user: `u${i % 17}` },
    }));
    const fixed = (e: UsageEvent): UsageEvent => ({ ...e, data: { ...e.data, user: `fixed-${e.id}` } });

    let worker = h.spawnWorker();
    const producer = h.producer();
    await producer.sendBatch(events.slice(0, 150));
    for (const e of events.slice(150)) await producer.send(e);
    await h.settle(60_000);

    const before = new TotalsModel([calls, users]);
    for (const e of events) before.add(e as never);
    expect(diffTotals((await h.finalRollups()).latest, before.expected())).toEqual([]);

    const dead = [...(await h.deadLetters(0)), ...(await h.deadLetters(1))];
    const missing = events.filter((_, i) => i % 3 === 0);
    expect(dead).toHaveLength(missing.length);
    for (const d of dead) {
      expect(d).toMatchObject({ reason: 'invalid-value', meter: 'users' });
      expect(d.detail).toMatch(/^users: value is missing/);
    }
    expect(new Set(dead.map((d) => (JSON.parse(d.payload) as UsageEvent).id))).toEqual(
      new Set(missing.map((e) => e.id)),
    );

    // Replay each dead letter with its fix; SIGKILL the worker halfway, start another, and replay every
    // one of them again: each still counts once, in `users` only.
    const replay = async (d: (typeof dead)[number]) => {
      const partition = (await h.redis.xrange(h.keys.deadLetter(0), d.id, d.id)).length > 0 ? 0 : 1;
      const event = JSON.parse(d.payload) as UsageEvent;
      const r = await replayDeadLetters(h.redis, h.config, {
        ids: [`${partition}/${d.id}`],
        payload: JSON.stringify(fixed(event)),
        delete: false,
      });
      expect(r.replayed).toMatchObject([{ meter: 'users' }]);
    };
    for (const [i, d] of dead.entries()) {
      await replay(d);
      if (i === Math.floor(dead.length / 2)) {
        worker.kill('SIGKILL');
        await new Promise((resolve) => worker.once('exit', resolve));
        worker = h.spawnWorker();
      }
    }
    for (const d of dead) await replay(d);
    await h.settle(60_000);

    const after = new TotalsModel([calls]);
    for (const e of events) after.add(e as never);
    const fixedUsers = new TotalsModel([users]);
    for (const e of events) fixedUsers.add((missing.includes(e) ? fixed(e) : e) as never);
    const expected = new Map([...after.expected(), ...fixedUsers.expected()]);
    expect(diffTotals((await h.finalRollups()).latest, expected)).toEqual([]);
    // No new dead letter: the fixed events were counted, the repeats dropped as duplicates of (event, meter).
    expect((await h.deadLetters(0)).length + (await h.deadLetters(1)).length).toBe(dead.length);
  });
});
