/**
 * Notifications exactly once: rollup jobs redelivered to two evaluators racing on one queue, a relay
 * dying with notifications pending, and period resets processed by two replicas.
 */
import { random } from '../../support/random.js';
import { afterEach, describe, expect, it } from 'vitest';
import { notificationJobId, type RollupJob } from '../../../src/index.js';
import { NOTIFICATION_RELAY_GROUP } from '../../../src/entitlements/index.js';
import { waitFor } from '../../support/redis.js';
import { EntHarness } from './helpers.js';

const HOUR = 3_600_000;
const MINUTE = 60_000;

describe('entitlement notifications', () => {
  let h: EntHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('fire once per subject, period and threshold when rollup jobs are redelivered to two racing evaluators', async () => {
    const anchor = new Date(Date.now() - HOUR).toISOString();
    h = new EntHarness({
      meters: [{ slug: 'calls', eventType: 'req', aggregation: 'COUNT', windowSize: 'MINUTE' }],
      partitions: 2,
      entitlements: {
        features: [{ key: 'api', meter: 'calls' }],
        defaults: [
          {
            feature: 'api',
            type: 'metered',
            usagePeriod: { interval: 'DAY', anchor },
            limit: 10,
            thresholds: [{ percent: 50 }, { value: 8 }],
          },
        ],
        concurrency: 8,
      },
    });
    const rnd = random(42);
    const base = Math.floor(Date.now() / MINUTE) * MINUTE - 40 * MINUTE;
    const finals = new Map<string, number>();
    const jobs: { id: string; data: RollupJob }[] = [];
    for (let s = 0; s < 24; s++) {
      const subject = `cust-${s}`;
      let total = 0;
      for (let w = 0; w < 3; w++) {
        const start = base + (s % 7) * MINUTE + w * 5 * MINUTE;
        const first = 1 + Math.floor(rnd() * 4);
        const r1 = await h.writeWindow({ meter: 'calls', subject, start, value: String(first) });
        jobs.push({ id: `${subject}.${w}.r1`, data: r1 });
        let value = first;
        if (rnd() < 0.5) {
          // A correction: late events only ever add to a count.
          value = first + 1 + Math.floor(rnd() * 3);
          const r2 = await h.writeWindow({
            meter: 'calls',
            subject,
            start,
            value: String(value),
            revision: 2,
          });
          jobs.push({ id: `${subject}.${w}.r2`, data: r2 });
        }
        total += value;
      }
      finals.set(subject, total);
    }
    // Every job twice (a redelivery), shuffled: corrections may arrive before their first revision.
    const queued = [
      ...jobs.map((j) => ({ ...j, id: `${j.id}.a` })),
      ...jobs.map((j) => ({ ...j, id: `${j.id}.b` })),
    ];
    for (let i = queued.length - 1; i > 0; i--) {
      const k = Math.floor(rnd() * (i + 1));
      [queued[i], queued[k]] = [queued[k]!, queued[i]!];
    }
    const e1 = h.evaluator('ev-1');
    const e2 = h.evaluator('ev-2');
    await Promise.all([e1.waitUntilReady(), e2.waitUntilReady()]);
    await h.rollupQueue.addBulk(queued.map((j) => ({ name: 'rollup', data: j.data, opts: { jobId: j.id } })));
    await waitFor(
      async () => {
        const c = await h!.rollupQueue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
        return Object.values(c).every((n) => n === 0);
      },
      { timeoutMs: 20_000, message: 'rollup queue drained' },
    );
    await waitFor(async () => (await h!.outbox(0)).length === 0 && (await h!.outbox(1)).length === 0, {
      message: 'outboxes relayed',
    });
    await new Promise((r) => setTimeout(r, 300));

    const expected: string[] = [];
    for (const [subject, total] of finals) {
      const c = await h.checker.check(subject, 'api');
      expect([subject, c.usage]).toEqual([subject, total]);
      if (total >= 5) expected.push(`${subject} entitlement.threshold p50`);
      if (total >= 8) expected.push(`${subject} entitlement.threshold v8`);
      if (total >= 10) expected.push(`${subject} entitlement.exhausted `);
    }
    const got = (await h.notifications()).map((n) => `${n.subject} ${n.type} ${n.threshold?.id ?? ''}`);
    expect(got.sort()).toEqual(expected.sort());
    expect(expected.length).toBeGreaterThan(20);
    const s1 = e1.getStats();
    const s2 = e2.getStats();
    expect(s1.rollups + s2.rollups).toBe(queued.length);
    expect(s1.applied + s2.applied).toBeLessThanOrEqual(jobs.length);
    expect(s1.failedJobs + s2.failedJobs).toBe(0);
  });

  it('the step run twice writes one notification; a relay dying with it pending leaves it to another, once', async () => {
    h = new EntHarness({
      meters: [{ slug: 'calls', eventType: 'req', aggregation: 'COUNT', windowSize: 'MINUTE' }],
      entitlements: {
        features: [{ key: 'api', meter: 'calls' }],
        defaults: [
          {
            feature: 'api',
            type: 'metered',
            usagePeriod: { interval: 'DAY', anchor: new Date(Date.now() - HOUR).toISOString() },
            limit: 10,
            thresholds: [{ percent: 50 }],
          },
        ],
      },
    });
    const ev = h.evaluator('survivor');
    const r = await h.writeWindow({
      meter: 'calls',
      subject: 'x',
      start: Math.floor(Date.now() / MINUTE) * MINUTE - 2 * MINUTE,
      value: '6',
    });
    await ev.applyRollup(r);
    await ev.applyRollup(r);
    expect(await h.outbox()).toHaveLength(1);
    // A relay reads the entry, then dies before publishing it.
    const outbox = h.keys.entitlementOutbox(0);
    await h.redis.xgroup('CREATE', outbox, NOTIFICATION_RELAY_GROUP, '0', 'MKSTREAM').catch(() => undefined);
    const read = (await h.redis.xreadgroup(
      'GROUP',
      NOTIFICATION_RELAY_GROUP,
      'dead-relay',
      'COUNT',
      10,
      'STREAMS',
      outbox,
      '>',
    )) as [string, [string, string[]][]][];
    const [[, [[, fields]]]] = read as [[string, [[string, string[]]]]];
    await ev.tick();
    expect(await h.notifications()).toHaveLength(0);
    // After claimIdle (500ms in these tests) the survivor claims and publishes it.
    await new Promise((resolve) => setTimeout(resolve, 600));
    await ev.tick();
    await ev.tick();
    let jobs = await h.notifications();
    expect(jobs).toHaveLength(1);
    expect(jobs[0]).toMatchObject({
      type: 'entitlement.threshold',
      subject: 'x',
      feature: 'api',
      usage: '6',
      balance: '4',
      allowance: '10',
    });
    // A relay that published but died before acknowledging: the same entry again is a no-op job add.
    await h.redis.xadd(outbox, '*', ...fields);
    await ev.tick();
    jobs = await h.notifications();
    expect(jobs).toHaveLength(1);
    const ids = (await h.notificationsQueue.getJobs(['waiting', 'completed'], 0, -1)).map((j) => j.id);
    expect(ids).toEqual([notificationJobId(jobs[0]!)]);
    // A closing evaluator leaves the relay group (it holds nothing pending), so names do not pile up.
    const consumers = async () =>
      ((await h!.redis.xinfo('CONSUMERS', outbox, NOTIFICATION_RELAY_GROUP)) as unknown[][]).map((c) =>
        String(c[1]),
      );
    expect(await consumers()).toContain('survivor');
    await ev.start();
    await ev.close();
    expect(await consumers()).not.toContain('survivor');
  });

  it('a period reset emits entitlement.reset once across replicas, and thresholds fire again in the new period', async () => {
    h = new EntHarness({
      meters: [{ slug: 'calls', eventType: 'req', aggregation: 'COUNT', windowSize: '1s' }],
      entitlements: { features: [{ key: 'api', meter: 'calls' }], lookback: '1s' },
    });
    // One-minute periods, the next one starting in about 3 s.
    const boundary = Math.ceil((Date.now() + 3_000) / 1_000) * 1_000;
    await h.store.setEntitlement('r', 'api', {
      type: 'metered',
      usagePeriod: { interval: 'PT1M', anchor: new Date(boundary).toISOString() },
      limit: 4,
      thresholds: [{ percent: 50 }],
    });
    const e1 = h.evaluator('ev-1');
    const e2 = h.evaluator('ev-2');
    await Promise.all([e1.start(), e2.start()]);
    const second = Math.floor(Date.now() / 1_000) * 1_000;
    await e1.applyRollup(await h.writeWindow({ meter: 'calls', subject: 'r', start: second, value: '3' }));
    const reset = await waitFor(
      async () => {
        const list = await h!.notifications();
        return list.find((n) => n.type === 'entitlement.reset');
      },
      { timeoutMs: 10_000, message: 'reset notification' },
    );
    expect(reset).toMatchObject({
      subject: 'r',
      feature: 'api',
      periodStart: new Date(boundary).toISOString(),
      usage: '0',
      balance: '4',
      allowance: '4',
    });
    // The window of the new period crosses 50% again: a threshold of the new period.
    const nextSecond = Math.max(boundary, Math.floor(Date.now() / 1_000) * 1_000);
    await e2.applyRollup(
      await h.writeWindow({ meter: 'calls', subject: 'r', start: nextSecond, value: '2' }),
    );
    await waitFor(async () => (await h!.notifications()).length === 3, { message: 'three notifications' });
    await new Promise((r) => setTimeout(r, 400));
    const all = (await h.notifications()).map((n) => [n.type, n.periodStart]);
    expect(all).toEqual([
      ['entitlement.threshold', new Date(boundary - MINUTE).toISOString()],
      ['entitlement.reset', new Date(boundary).toISOString()],
      ['entitlement.threshold', new Date(boundary).toISOString()],
    ]);
    expect(e1.getStats().resets + e2.getStats().resets).toBe(1);
    const check = await h.checker.check('r', 'api');
    expect(check).toMatchObject({ usage: 2, periodStart: new Date(boundary).toISOString() });
  });
});
