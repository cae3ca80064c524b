/**
 * The entitlement Lua steps against a real Redis: rollups applied exactly once in effect, corrections,
 * threshold notifications, grants burning down, soft and hard limits, and period attribution in time
 * zones. Windows are written as the pipeline writes them; expected values come from the model in
 * helpers.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  burnDownModel,
  decimalToScaled,
  EntHarness,
  TOKENS_BY_MODEL_HOURLY,
  M,
  scaledToDecimal,
  type ModelGrant,
} from './helpers.js';
import { waitFor } from '../../support/redis.js';

const HOUR = 3_600_000;

/** A SUM meter of tokens by model; a feature for gpt-5 alone and one for every model. */
const TOKENS_BY_MODEL = {
  meters: [TOKENS_BY_MODEL_HOURLY],
  entitlements: {
    features: [
      { key: 'gpt5', meter: 'tokens', filter: { model: 'gpt-5' } },
      { key: 'all', meter: 'tokens' },
    ],
    defaults: [
      { feature: 'gpt5', type: 'metered', usagePeriod: { interval: 'DAY' }, limit: 1000 },
      { feature: 'all', type: 'metered', usagePeriod: { interval: 'DAY' }, limit: 1000 },
    ],
  },
};
const SECOND = 1_000;

describe('applying rollups to entitlement usage', () => {
  let h: EntHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('applies a rollups batch job (rollups.batchJobs) rollup by rollup, once each', async () => {
    h = new EntHarness(TOKENS_BY_MODEL);
    const ev = h.evaluator();
    await ev.waitUntilReady();
    const hour = Math.floor(Date.now() / HOUR) * HOUR - HOUR;
    const window = (model: string, value: string) =>
      h!.writeWindow({ meter: 'tokens', subject: 'acme', groupBy: { model }, start: hour, value });
    const rollups = [await window('gpt-5', '10.5'), await window('claude', '4')];
    // Delivered twice (a relay retrying under another id would do that): each rollup still counts once.
    await h.rollupQueue.add('rollups', { version: 1, rollups }, { jobId: 'tokens.page.1' });
    await h.rollupQueue.add('rollups', { version: 1, rollups }, { jobId: 'tokens.page.1-again' });
    await waitFor(async () => (await h!.rollupQueue.getJobCounts('completed')).completed === 2, {
      message: 'both batch jobs applied',
    });
    expect(await h.checker.check('acme', 'gpt5')).toMatchObject({ usage: 10.5 });
    expect(await h.checker.check('acme', 'all')).toMatchObject({ usage: 14.5 });
    expect(ev.getStats()).toMatchObject({ rollups: 4 });
  });

  it('counts a rollup once: redelivery changes nothing, a correction replaces its earlier value, an older revision is ignored', async () => {
    h = new EntHarness(TOKENS_BY_MODEL);
    const ev = h.evaluator();
    const hour = Math.floor(Date.now() / HOUR) * HOUR - HOUR;
    const r1 = await h.writeWindow({
      meter: 'tokens',
      subject: 'acme',
      groupBy: { model: 'gpt-5' },
      start: hour,
      value: '10.5',
    });
    const other = await h.writeWindow({
      meter: 'tokens',
      subject: 'acme',
      groupBy: { model: 'gpt-4' },
      start: hour,
      value: '4',
    });
    expect((await ev.applyRollup(r1)).map((o) => [o.feature, o.status])).toEqual([
      ['all', 'applied'],
      ['gpt5', 'applied'],
    ]);
    expect((await ev.applyRollup(r1)).map((o) => o.status)).toEqual(['duplicate', 'duplicate']);
    expect((await ev.applyRollup(other)).map((o) => o.feature)).toEqual(['all']);
    const usage = async (f: string) => (await h!.checker.check('acme', f)).exact?.usage;
    expect(await usage('gpt5')).toBe('10.5');
    expect(await usage('all')).toBe('14.5');

    // Correction: revision 2 carries the new total.
    const r2 = await h.writeWindow({
      meter: 'tokens',
      subject: 'acme',
      groupBy: { model: 'gpt-5' },
      start: hour,
      value: '12.25',
      revision: 2,
    });
    expect((await ev.applyRollup(r2)).map((o) => o.delta)).toEqual([String(1_750_000), String(1_750_000)]);
    expect(await ev.applyRollup(r2)).toMatchObject([{ status: 'duplicate' }, { status: 'duplicate' }]);
    // Revision 1 redelivered after revision 2: ignored.
    expect((await ev.applyRollup(r1)).map((o) => o.status)).toEqual(['duplicate', 'duplicate']);
    expect(await usage('gpt5')).toBe('12.25');
    expect(await usage('all')).toBe('16.25');
    const check = await h.checker.check('acme', 'gpt5');
    expect(check.exact).toMatchObject({ appliedUsage: '12.25', liveUsage: '0', balance: '987.75' });
    expect(ev.getStats()).toMatchObject({ applied: 5, duplicates: 6 });
  });

  it('a correction moving usage across thresholds emits each notification once, also when the step runs twice', async () => {
    h = new EntHarness({
      meters: [{ slug: 'calls', eventType: 'req', aggregation: 'COUNT', windowSize: 'HOUR' }],
      entitlements: {
        features: [{ key: 'api', meter: 'calls' }],
        defaults: [
          {
            feature: 'api',
            type: 'metered',
            usagePeriod: { interval: 'DAY' },
            limit: 100,
            thresholds: [{ percent: 80 }, { value: 50 }],
          },
        ],
      },
    });
    const ev = h.evaluator();
    const hour = Math.floor(Date.now() / HOUR) * HOUR - HOUR;
    const w = (value: string, revision: number) =>
      h!.writeWindow({ meter: 'calls', subject: 's1', start: hour, value, revision });
    await ev.applyRollup(await w('40', 1));
    expect(await h.outbox()).toEqual([]);
    const r2 = await w('85', 2);
    await ev.applyRollup(r2);
    await ev.applyRollup(r2);
    let out = await h.outbox();
    expect(out.map((o) => [o.t, o.k, o.l, o.u])).toEqual([
      ['threshold', 'p80', '80000000', '85000000'],
      ['threshold', 'v50', '50000000', '85000000'],
    ]);
    // Down and up again within the period: no second notification for the same threshold.
    await ev.applyRollup(await w('10', 3));
    await ev.applyRollup(await w('99', 4));
    expect(await h.outbox()).toHaveLength(2);
    // Reaching the limit: exhausted, once.
    await ev.applyRollup(await w('100', 5));
    await ev.applyRollup(await w('120', 6));
    out = await h.outbox();
    expect(out.map((o) => o.t)).toEqual(['threshold', 'threshold', 'exhausted']);
    expect(out[2]).toMatchObject({ s: 's1', f: 'api', u: '100000000', b: '0', o: '0', a: '100000000' });
    // Relayed to the notifications queue with deterministic ids.
    await ev.tick();
    const jobs = await h.notifications();
    expect(jobs.map((j) => [j.type, j.threshold?.id ?? null, j.usage])).toEqual([
      ['entitlement.threshold', 'p80', '85'],
      ['entitlement.threshold', 'v50', '85'],
      ['entitlement.exhausted', null, '100'],
    ]);
    expect(jobs[0]?.threshold).toMatchObject({ percent: 80, level: '80' });
    expect(jobs[1]?.threshold).toMatchObject({ value: '50', level: '50' });
  });

  it('burns grants down by priority then expiry, loses what is left at expiry, and matches the model', async () => {
    h = new EntHarness({
      meters: [
        { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.t', windowSize: '1s' },
      ],
      entitlements: { features: [{ key: 'tok', meter: 'tokens' }], lookback: '1s' },
    });
    const ev = h.evaluator();
    const t0 = Date.now();
    // A daily period that certainly contains the next minutes.
    const anchor = new Date(t0 - HOUR).toISOString();
    await h.store.setEntitlement('acme', 'tok', {
      type: 'metered',
      usagePeriod: { interval: 'DAY', anchor },
      limit: '10',
    });
    const added = [
      await h.store.addGrant('acme', 'tok', {
        id: 'a',
        amount: '5',
        expiresAt: new Date(t0 + 20 * SECOND).toISOString(),
      }),
      await h.store.addGrant('acme', 'tok', { id: 'b', amount: '5', priority: 2 }),
      await h.store.addGrant('acme', 'tok', {
        id: 'c',
        amount: '3',
        priority: 0,
        expiresAt: new Date(t0 + 40 * SECOND).toISOString(),
      }),
      await h.store.addGrant('acme', 'tok', {
        id: 'd',
        amount: '2.5',
        priority: 0,
        effectiveAt: new Date(t0 + 30 * SECOND).toISOString(),
      }),
    ];
    const grants: ModelGrant[] = added.map((g) => ({
      id: g.id,
      amount: decimalToScaled(g.amount),
      from: Date.parse(g.activeFrom),
      ...(g.expiresAt ? { expiresAt: Date.parse(g.expiresAt) } : {}),
      priority: g.priority,
    }));
    expect(grants.find((g) => g.id === 'd')?.from).toBe(t0 + 30 * SECOND);
    const period = { start: Date.parse(anchor), end: Date.parse(anchor) + 24 * HOUR };
    const since = Math.floor(t0 / SECOND) * SECOND;
    const usage: { start: number; amount: bigint }[] = [];
    const steps: [number, string][] = [
      [5, '4'], // c (prio 0) takes 3, then a (prio 1, expires first) 1
      [25, '6'], // a has expired with 4 left; c 0 left; limit 6
      [31, '3'], // d (prio 0, from t0+30s) 2.5, limit 0.5
      [45, '7.25'], // limit 3.5, then b 3.75
      [50, '2'], // b 1.25, overage 0.75
    ];
    for (const [offset, value] of steps) {
      const start = since + offset * SECOND;
      await ev.applyRollup(await h.writeWindow({ meter: 'tokens', subject: 'acme', start, value }));
      usage.push({ start, amount: decimalToScaled(value) });
      const at = start + 3 * SECOND;
      const want = burnDownModel(10n * M, grants, period, usage, at);
      const got = await h.checker.check('acme', 'tok', at);
      expect({
        at: offset,
        usage: got.exact?.usage,
        balance: got.exact?.balance,
        overage: got.exact?.overage,
      }).toEqual({
        at: offset,
        usage: scaledToDecimal(want.usage),
        balance: scaledToDecimal(want.balance),
        overage: scaledToDecimal(want.overage),
      });
      expect(Object.fromEntries((got.allowances ?? []).map((a) => [a.id, a.remaining]))).toEqual(
        Object.fromEntries([...want.remaining].map(([id, left]) => [id, scaledToDecimal(left)])),
      );
      expect(got.hasAccess).toBe(want.balance > 0n);
    }
    const last = await h.checker.check('acme', 'tok', since + 60 * SECOND);
    expect(last).toMatchObject({
      hasAccess: false,
      balance: 0,
      overage: 0.75,
      usage: 22.25,
      limit: 10,
      grants: 15.5,
    });
    // Removing a grant re-plans the burn-down.
    expect(await h.store.removeGrant('acme', 'tok', 'b')).toBe(true);
    expect(await h.store.removeGrant('acme', 'tok', 'b')).toBe(false);
    const without = burnDownModel(
      10n * M,
      grants.filter((g) => g.id !== 'b'),
      period,
      usage,
      since + 60 * SECOND,
    );
    expect((await h.checker.check('acme', 'tok', since + 60 * SECOND)).exact?.overage).toBe(
      scaledToDecimal(without.overage),
    );
  });

  it('hard limits deny access once the balance is 0, open window included; soft limits only report overage', async () => {
    h = new EntHarness({
      meters: [{ slug: 'calls', eventType: 'req', aggregation: 'COUNT', windowSize: 'MINUTE' }],
      entitlements: {
        features: [{ key: 'api', meter: 'calls' }],
        defaults: [{ feature: 'api', type: 'metered', usagePeriod: { interval: 'DAY' }, limit: 10 }],
        lookback: '10s',
      },
    });
    const ev = h.evaluator();
    const minute = Math.floor(Date.now() / 60_000) * 60_000;
    await ev.applyRollup(
      await h.writeWindow({ meter: 'calls', subject: 'hard', start: minute - 120_000, value: '6' }),
    );
    // The current window is open: written by the pipeline, no rollup yet.
    await h.writeWindow({ meter: 'calls', subject: 'hard', start: minute, value: '3' });
    let c = await h.checker.check('hard', 'api');
    expect(c).toMatchObject({
      hasAccess: true,
      usage: 9,
      balance: 1,
      overage: 0,
      limitType: 'hard',
      source: 'default',
    });
    expect(c.exact).toMatchObject({ appliedUsage: '6', liveUsage: '3' });
    await h.writeWindow({ meter: 'calls', subject: 'hard', start: minute, value: '10' });
    c = await h.checker.check('hard', 'api');
    expect(c).toMatchObject({ hasAccess: false, usage: 16, balance: 0, overage: 6 });

    await h.store.setEntitlement('soft', 'api', {
      type: 'metered',
      usagePeriod: { interval: 'DAY' },
      limit: 10,
      limitType: 'soft',
    });
    await h.writeWindow({ meter: 'calls', subject: 'soft', start: minute, value: '25' });
    c = await h.checker.check('soft', 'api');
    expect(c).toMatchObject({
      hasAccess: true,
      usage: 25,
      balance: 0,
      overage: 15,
      limitType: 'soft',
      source: 'explicit',
    });

    // Boolean and static entitlements, and none.
    await h.store.upsertFeature({ key: 'sso' });
    await h.store.upsertFeature({ key: 'models' });
    await h.store.setEntitlement('soft', 'sso', { type: 'boolean' });
    await h.store.setEntitlement('soft', 'models', { type: 'static', config: { allowed: ['gpt-5'] } });
    expect(await h.checker.check('soft', 'sso')).toMatchObject({ type: 'boolean', hasAccess: true });
    expect(await h.checker.check('soft', 'models')).toMatchObject({
      type: 'static',
      hasAccess: true,
      config: { allowed: ['gpt-5'] },
    });
    expect(await h.checker.check('hard', 'sso')).toMatchObject({ type: 'none', hasAccess: false });
    // A cached definition is never served stale: removing the entitlement shows at once.
    expect(await h.store.removeEntitlement('soft', 'sso')).toBe(true);
    expect(await h.checker.check('soft', 'sso')).toMatchObject({ type: 'none', hasAccess: false });
    const list = await h.store.list('soft');
    expect(list.map((e) => [e.feature.key, e.type, e.source])).toEqual([
      ['api', 'metered', 'explicit'],
      ['models', 'static', 'explicit'],
    ]);
  });

  it('sees group-by combinations no rollup has shown yet by scanning small window hashes, within a budget', async () => {
    const meters = [
      {
        slug: 'tokens',
        eventType: 'llm',
        aggregation: 'SUM',
        valueProperty: '$.t',
        groupBy: { model: '$.model', dir: '$.dir' },
        windowSize: 'MINUTE',
      },
    ];
    const entitlements = {
      features: [{ key: 'gpt5', meter: 'tokens', filter: { model: 'gpt-5' } }],
      defaults: [{ feature: 'gpt5', type: 'metered', usagePeriod: { interval: 'DAY' }, limit: 100 }],
      lookback: '10s',
    };
    h = new EntHarness({ meters, entitlements });
    const minute = Math.floor(Date.now() / 60_000) * 60_000;
    // Glob characters in the subject must not widen the scan to other subjects.
    const subject = 'a*b[1]?';
    await h.writeWindow({
      meter: 'tokens',
      subject,
      groupBy: { model: 'gpt-5', dir: 'in' },
      start: minute,
      value: '7',
    });
    await h.writeWindow({
      meter: 'tokens',
      subject,
      groupBy: { model: 'gpt-4', dir: 'in' },
      start: minute,
      value: '100',
    });
    await h.writeWindow({
      meter: 'tokens',
      subject: 'aXb1Z',
      groupBy: { model: 'gpt-5', dir: 'out' },
      start: minute,
      value: '50',
    });
    await h.writeWindow({
      meter: 'tokens',
      subject: 'a*b[1]?x',
      groupBy: { model: 'gpt-5', dir: 'out' },
      start: minute,
      value: '60',
    });
    expect((await h.checker.check(subject, 'gpt5')).exact).toMatchObject({ usage: '7', liveUsage: '7' });
    const other = await h.checker.check('aXb1Z', 'gpt5');
    expect(other.exact?.usage).toBe('50');

    // Without a scan budget, only combinations learned from rollups are probed.
    const blind = new EntHarness({ meters, entitlements: { ...entitlements, maxScanFields: 0 } });
    try {
      await blind.writeWindow({
        meter: 'tokens',
        subject: 's',
        groupBy: { model: 'gpt-5', dir: 'in' },
        start: minute,
        value: '7',
      });
      expect((await blind.checker.check('s', 'gpt5')).exact?.usage).toBe('0');
      await blind.knowTail('tokens', 'someone-else', { model: 'gpt-5', dir: 'in' });
      expect((await blind.checker.check('s', 'gpt5')).exact?.usage).toBe('7');
    } finally {
      await blind.close();
    }
  });

  it('attributes windows by start: a window straddling a period boundary counts where it starts (time zones, DST, month ends)', async () => {
    h = new EntHarness({
      meters: [
        { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.t', windowSize: 'HOUR' },
      ],
      entitlements: {
        features: [
          { key: 'ist', meter: 'tokens' },
          { key: 'berlin', meter: 'tokens' },
          { key: 'ny', meter: 'tokens' },
        ],
        defaults: [
          {
            feature: 'ist',
            type: 'metered',
            usagePeriod: { interval: 'DAY', timeZone: 'Asia/Kolkata' },
            limit: 1000,
          },
          {
            feature: 'berlin',
            type: 'metered',
            usagePeriod: { interval: 'DAY', timeZone: 'Europe/Berlin' },
            limit: 1000,
          },
          {
            feature: 'ny',
            type: 'metered',
            usagePeriod: { interval: 'MONTH', timeZone: 'America/New_York' },
            limit: 1000,
          },
        ],
        lookback: '1s',
      },
      // Long enough to keep 2024's windows (and their applied contributions) around.
      windows: { retention: '5000d' },
    });
    const ev = h.evaluator();
    const apply = async (subject: string, iso: string, value: string) =>
      ev.applyRollup(await h!.writeWindow({ meter: 'tokens', subject, start: Date.parse(iso), value }));
    const usageAt = async (subject: string, feature: string, iso: string) => {
      const c = await h!.checker.check(subject, feature, Date.parse(iso));
      return [c.periodStart, c.periodEnd, c.exact?.usage];
    };

    // IST midnight is 18:30Z: the 18:00Z window straddles it and belongs to the day it starts in.
    await apply('in', '2024-06-10T17:00:00Z', '1');
    await apply('in', '2024-06-10T18:00:00Z', '2');
    await apply('in', '2024-06-10T19:00:00Z', '4');
    expect(await usageAt('in', 'ist', '2024-06-10T18:20:00Z')).toEqual([
      '2024-06-09T18:30:00.000Z',
      '2024-06-10T18:30:00.000Z',
      '3',
    ]);
    expect(await usageAt('in', 'ist', '2024-06-10T19:10:00Z')).toEqual([
      '2024-06-10T18:30:00.000Z',
      '2024-06-11T18:30:00.000Z',
      '4',
    ]);

    // Berlin's 2024-10-27 has 25 hourly windows; the day before 24.
    for (let t = Date.parse('2024-10-25T22:00:00Z'); t < Date.parse('2024-10-27T23:00:00Z'); t += HOUR) {
      await apply('de', new Date(t).toISOString(), '1');
    }
    expect(await usageAt('de', 'berlin', '2024-10-26T12:00:00Z')).toEqual([
      '2024-10-25T22:00:00.000Z',
      '2024-10-26T22:00:00.000Z',
      '24',
    ]);
    expect(await usageAt('de', 'berlin', '2024-10-27T12:00:00Z')).toEqual([
      '2024-10-26T22:00:00.000Z',
      '2024-10-27T23:00:00.000Z',
      '25',
    ]);

    // New York month end: 2024-03-01T04:00Z is still Feb 29 there.
    await apply('us', '2024-03-01T04:00:00Z', '7');
    await apply('us', '2024-03-01T05:00:00Z', '11');
    expect(await usageAt('us', 'ny', '2024-03-01T04:30:00Z')).toEqual([
      '2024-02-01T05:00:00.000Z',
      '2024-03-01T05:00:00.000Z',
      '7',
    ]);
    expect(await usageAt('us', 'ny', '2024-03-20T00:00:00Z')).toEqual([
      '2024-03-01T05:00:00.000Z',
      '2024-04-01T04:00:00.000Z',
      '11',
    ]);
  });

  it('a new or re-periodised entitlement counts from the current window; limit changes keep usage', async () => {
    h = new EntHarness({
      meters: [{ slug: 'calls', eventType: 'req', aggregation: 'COUNT', windowSize: 'MINUTE' }],
      entitlements: { features: [{ key: 'api', meter: 'calls' }], lookback: '5m' },
    });
    const ev = h.evaluator();
    const minute = Math.floor(Date.now() / 60_000) * 60_000;
    // Usage before the entitlement exists is not counted, even if its rollup arrives later.
    const before = await h.writeWindow({ meter: 'calls', subject: 'x', start: minute - 60_000, value: '5' });
    const spec = { type: 'metered' as const, usagePeriod: { interval: 'DAY' }, limit: 100 };
    await h.store.setEntitlement('x', 'api', spec);
    expect((await ev.applyRollup(before)).map((o) => o.status)).toEqual(['before-start']);
    const open = await h.writeWindow({ meter: 'calls', subject: 'x', start: minute, value: '3' });
    expect((await h.checker.check('x', 'api')).exact).toMatchObject({ usage: '3', liveUsage: '3' });
    await ev.applyRollup(open);
    expect((await h.checker.check('x', 'api')).exact).toMatchObject({
      usage: '3',
      appliedUsage: '3',
      liveUsage: '0',
    });
    // A new limit keeps the usage.
    await h.store.setEntitlement('x', 'api', { ...spec, limit: 2 });
    expect(await h.checker.check('x', 'api')).toMatchObject({ usage: 3, hasAccess: false });
    // A new usage period restarts it at the current window.
    await h.store.setEntitlement('x', 'api', { ...spec, usagePeriod: { interval: 'WEEK' } });
    const c = await h.checker.check('x', 'api');
    expect(c.exact?.appliedUsage).toBe('0');
    // Feature measures cannot change.
    await expect(h.store.upsertFeature({ key: 'api', meter: 'calls', filter: {} })).resolves.toMatchObject({
      key: 'api',
    });
    await h.store.upsertFeature({ key: 'new', meter: 'calls' });
    await expect(h.store.upsertFeature({ key: 'new' })).rejects.toMatchObject({
      reason: 'feature-immutable',
    });
    await expect(h.store.setEntitlement('x', 'nope', spec)).rejects.toMatchObject({
      reason: 'unknown-feature',
    });
    await expect(h.store.addGrant('x', 'new', { amount: 1 })).rejects.toMatchObject({
      reason: 'not-metered',
    });
    await expect(
      h.store.addGrant('x', 'api', { amount: 1, expiresAt: new Date(Date.now() - 60_000).toISOString() }),
    ).rejects.toMatchObject({
      reason: 'invalid-grant',
    });
  });
});
