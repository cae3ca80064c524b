/**
 * Real-time checks end to end: UsageProducer → TallyWorker (windows, rollups) → BullMQ →
 * EntitlementEvaluator, with checks while windows are open, after they close, and notifications.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { TallyWorker, UsageProducer, type EntitlementCheck, type UsageEvent } from '../../../src/index.js';
import { waitFor } from '../../support/redis.js';
import { EntHarness, logger } from './helpers.js';

const WINDOW_MS = 5_000;

describe('real-time entitlement checks', () => {
  let h: EntHarness | undefined;
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await h?.close();
    h = undefined;
  });

  it('counts the open window live, the same usage once its rollup is applied, and enforces a hard limit before the window closes', async () => {
    h = new EntHarness({
      meters: [
        {
          slug: 'tokens',
          eventType: 'llm',
          aggregation: 'SUM',
          valueProperty: '$.tokens',
          groupBy: { model: '$.model' },
          windowSize: '5s',
        },
      ],
      entitlements: {
        features: [
          { key: 'gpt5', meter: 'tokens', filter: { model: 'gpt-5' } },
          { key: 'all', meter: 'tokens' },
        ],
        defaults: [
          {
            feature: 'all',
            type: 'metered',
            usagePeriod: { interval: 'DAY' },
            limit: 1000,
            thresholds: [{ percent: 10 }],
          },
        ],
        lookback: '3s',
      },
    });
    await h.store.setEntitlement('acme', 'gpt5', {
      type: 'metered',
      usagePeriod: { interval: 'DAY' },
      limit: 100,
      thresholds: [{ percent: 50 }],
    });
    const worker = new TallyWorker({ config: h.config, logger });
    closers.push(() => worker.close());
    await worker.start();
    const evaluator = h.evaluator('ev-1');
    await evaluator.waitUntilReady();
    const producer = new UsageProducer({
      redis: h.config.redisUrl,
      prefix: h.prefix,
      partitions: h.config.partitions,
    });
    closers.push(() => producer.close());

    let n = 0;
    const event = (model: string, tokens: number): UsageEvent => ({
      id: `e${++n}`,
      source: 'test',
      type: 'llm',
      subject: 'acme',
      time: new Date().toISOString(),
      data: { tokens, model },
    });
    const model = { gpt5: 0, all: 0 };
    const send = async (events: UsageEvent[]) => {
      await producer.sendBatch(events);
      for (const e of events) {
        const data = e.data as { tokens: number; model: string };
        model.all += data.tokens;
        if (data.model === 'gpt-5') model.gpt5 += data.tokens;
      }
    };
    // Start early in a window, so it is still open while we look.
    const startOfNextUsefulWindow = async () => {
      const into = Date.now() % WINDOW_MS;
      if (into > 1_500) await new Promise((r) => setTimeout(r, WINDOW_MS - into + 50));
    };
    const check = (feature: string) => h!.checker.check('acme', feature);

    await startOfNextUsefulWindow();
    await send([event('gpt-5', 10), event('gpt-5', 10), event('gpt-4', 20), event('gpt-5', 10)]);
    const live = await waitFor(
      async () => {
        const c = await check('gpt5');
        return c.exact?.usage === String(model.gpt5) && c;
      },
      { message: 'gpt5 usage from the open window' },
    );
    expect(live.exact).toMatchObject({ appliedUsage: '0', liveUsage: '30' });
    expect(live).toMatchObject({ hasAccess: true, balance: 70 });

    // Once the window closes and its rollup is applied, the same usage is applied, not live: no double count.
    const applied = await waitFor(
      async () => {
        const c = await check('gpt5');
        return c.exact?.appliedUsage === '30' && c;
      },
      { message: 'gpt5 rollup applied' },
    );
    expect(applied.exact).toMatchObject({ usage: '30', liveUsage: '0' });
    // The window's other group (gpt-4) is a rollup of its own, which may be applied a moment later.
    const allApplied = await waitFor(
      async () => {
        const c = await check('all');
        return c.exact?.appliedUsage === String(model.all) && c;
      },
      { message: 'both rollups of the window applied to all' },
    );
    expect(allApplied.exact).toMatchObject({
      usage: String(model.all),
      appliedUsage: String(model.all),
    });

    // Next window: the hard limit bites while the window is still open.
    await startOfNextUsefulWindow();
    await send([event('gpt-5', 50), event('gpt-5', 30), event('gpt-4', 5)]);
    const denied = await waitFor(
      async () => {
        const c = await check('gpt5');
        return c.exact?.usage === String(model.gpt5) && c;
      },
      { message: 'gpt5 usage over the limit, live' },
    );
    expect(denied).toMatchObject({ hasAccess: false, usage: 110, balance: 0, overage: 10 });
    expect(denied.exact?.liveUsage).toBe('80');
    // Group-by combinations learned from earlier rollups make unfiltered features real-time too.
    const all: EntitlementCheck = await check('all');
    expect(all.exact).toMatchObject({ usage: String(model.all), liveUsage: '85' });

    // Notifications: once each, after the rollups are applied.
    const expected = [
      ['entitlement.exhausted', 'gpt5', ''],
      ['entitlement.threshold', 'all', 'p10'],
      ['entitlement.threshold', 'gpt5', 'p50'],
    ];
    const seen = () =>
      h!.notifications().then((jobs) => jobs.map((j) => [j.type, j.feature, j.threshold?.id ?? '']).sort());
    await waitFor(async () => (await seen()).length >= expected.length, {
      message: 'notifications',
      timeoutMs: 15_000,
    });
    await new Promise((r) => setTimeout(r, 500));
    expect(await seen()).toEqual(expected);
    const final = await waitFor(async () => {
      const c = await check('gpt5');
      return c.exact?.appliedUsage === '110' && c;
    });
    expect(final).toMatchObject({ usage: 110, hasAccess: false, overage: 10 });
    expect(evaluator.getStats()).toMatchObject({ failedJobs: 0 });
  });
});
