/**
 * Entitlement definitions have one source of truth at run time: an evaluator publishes its config's
 * features and defaults to Redis when it starts (versioned), checks and other evaluators use the
 * published ones and say when their own config disagrees, and an evaluator without any feature leaves
 * rollups waiting in its queue instead of consuming and dropping them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  definitionsNote,
  EntitlementChecker,
  EntitlementEvaluator,
  publishDefinitions,
  readPublished,
  resolveConfig,
  type TallyConfig,
} from '../../../src/index.js';
import { captureLogs, LogLevel } from '../../support/log-capture.js';
import { waitFor } from '../../support/redis.js';
import { EntHarness, logger, TOKENS_BY_MODEL_HOURLY } from './helpers.js';

const HOUR = 3_600_000;
const meters = [TOKENS_BY_MODEL_HOURLY];
const gpt5 = { key: 'gpt5', meter: 'tokens', filter: { model: 'gpt-5' } };
const daily = (limit: number | string, thresholds: unknown[] = [{ percent: 80 }, { value: 900 }]) => ({
  features: [gpt5],
  defaults: [{ feature: 'gpt5', type: 'metered', usagePeriod: { interval: 'DAY' }, limit, thresholds }],
});

describe('published entitlement definitions', () => {
  let h: EntHarness | undefined;
  const closers: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    await Promise.all(closers.splice(0).map((c) => c.close()));
    await h?.close();
    h = undefined;
  });

  /** The harness's config on the same prefix and queues, with another entitlements section. */
  const variant = (entitlements: Record<string, unknown>): TallyConfig =>
    resolveConfig(
      {
        ...h!.raw,
        entitlements: { ...(h!.raw.entitlements as object), features: [], defaults: [], ...entitlements },
      },
      {},
    );
  const checkerFor = (config: TallyConfig) => {
    const c = new EntitlementChecker({ config, connection: h!.redis, logger, definitionsRefreshMs: 0 });
    closers.push(c);
    return c;
  };

  it('are published at evaluator start, versioned; checks and evaluators use them and say when their config disagrees', async () => {
    h = new EntHarness({ meters, entitlements: daily(1000), label: 'pub' });
    const bare = variant({});
    const bareChecker = checkerFor(bare);

    // Nothing published yet: each process has only its own config, and says so.
    expect(definitionsNote(await bareChecker.definitionsCatalog(), bare, 'bare.yaml')).toMatch(
      /^no entitlement definitions in bare.yaml or in this Redis/,
    );
    expect(await bareChecker.check('acme', 'gpt5')).toMatchObject({ type: 'none', hasAccess: false });
    const own = await h.checker.definitionsCatalog();
    expect(own.source).toBe('config');
    expect(definitionsNote(own, h.config)).toMatch(
      /^no evaluator has published entitlement definitions to this Redis \(prefix t-pub-\w+\): checking with the config's; usage counts only windows still read live/,
    );

    const ev1 = h.evaluator('ev1');
    await ev1.start();
    expect(ev1.consuming).toBe(true);
    const v1 = await readPublished(h.redis, h.config);
    expect(v1).toMatchObject({ source: 'published', version: 1, publishedBy: 'ev1', invalid: [] });
    expect([...v1!.defaults.keys()]).toEqual(['gpt5']);
    // The same definitions, spelled differently (a string limit, thresholds in another order): no new version.
    const same = variant(daily('1000', [{ value: '900' }, { percent: 80 }]));
    expect(await publishDefinitions(h.redis, same, 'other')).toMatchObject({
      status: 'unchanged',
      version: 1,
      publishedBy: 'ev1',
    });
    expect(definitionsNote(await checkerFor(same).definitionsCatalog(), same)).toBeUndefined();

    // A check with a config without entitlements answers from the published definitions, and says so.
    expect(await bareChecker.check('acme', 'gpt5')).toMatchObject({
      type: 'metered',
      source: 'default',
      limit: 1000,
    });
    expect(definitionsNote(await bareChecker.definitionsCatalog(), bare, 'bare.yaml')).toMatch(
      /^bare.yaml has no entitlement definitions; using those the workers apply \(v1, published \d{4}-.*Z by ev1\)$/,
    );

    // Another evaluator starts with other definitions: a new version, which everybody then applies.
    const doubled = variant(daily(2000));
    const logs = captureLogs('info');
    const ev2 = new EntitlementEvaluator({ config: doubled, logger: logs.logger, consumerName: 'ev2' });
    closers.push(ev2);
    await ev2.start();
    expect(
      logs.matching(
        /^published the config's entitlement definitions as v2, replacing v1, published .* by ev1/,
        LogLevel.warn,
      ),
    ).toHaveLength(1);
    const oldChecker = checkerFor(h.config);
    expect(await oldChecker.check('acme', 'gpt5')).toMatchObject({ limit: 2000, balance: 2000 });
    expect(definitionsNote(await oldChecker.definitionsCatalog(), h.config, 'old.yaml')).toMatch(
      /^old.yaml has other entitlement definitions than those the workers apply \(v2, .* by ev2\): checking with theirs$/,
    );
    // ev1 takes v2 up on its next maintenance tick: its own loop (every 50 ms here) may have run one
    // already, so it holds v1 or v2 now, and v2 after a tick.
    expect([1, 2]).toContain(ev1.definitions.catalog.version);
    await ev1.tick();
    expect(ev1.definitions.catalog.version).toBe(2);
    // ev1, started with the old config, applies the new defaults.
    const hour = Math.floor(Date.now() / HOUR) * HOUR - HOUR;
    const rollup = await h.writeWindow({
      meter: 'tokens',
      subject: 'acme',
      groupBy: { model: 'gpt-5' },
      start: hour,
      value: '1500',
    });
    expect(await ev1.applyRollup(rollup)).toMatchObject([{ feature: 'gpt5', status: 'applied' }]);
    expect(await oldChecker.check('acme', 'gpt5')).toMatchObject({
      usage: 1500,
      limit: 2000,
      balance: 500,
      hasAccess: true,
    });
  });

  it('an evaluator without any feature leaves rollups waiting in its queue, says so, and consumes them once features are published', async () => {
    h = new EntHarness({ meters, entitlements: daily(1000), label: 'wait' });
    const bare = variant({});
    const logs = captureLogs('info');
    const ev = new EntitlementEvaluator({ config: bare, logger: logs.logger, consumerName: 'bare' });
    closers.push(ev);
    await ev.start();
    expect(ev.consuming).toBe(false);
    const queue = h.config.entitlements.queue as string;
    expect(
      logs.matching(
        new RegExp(`^no entitlement features .*: not consuming ${queue}; its rollups wait there`),
        LogLevel.warn,
      ),
    ).toHaveLength(1);

    const hour = Math.floor(Date.now() / HOUR) * HOUR - HOUR;
    const rollup = await h.writeWindow({
      meter: 'tokens',
      subject: 'acme',
      groupBy: { model: 'gpt-5' },
      start: hour,
      value: '250',
    });
    await h.rollupQueue.add('rollup', rollup, { jobId: 'tokens.wait.r1' });
    // Maintenance rounds pass (each looks for definitions): the job stays in the queue, untouched.
    for (let i = 0; i < 3; i++) await ev.tick();
    expect(await h.rollupQueue.getJobCounts('waiting', 'active', 'completed')).toEqual({
      waiting: 1,
      active: 0,
      completed: 0,
    });
    expect(ev.getStats().rollups).toBe(0);

    // Definitions are published (another evaluator's start would do the same): it starts consuming.
    await publishDefinitions(h.redis, h.config, 'elsewhere');
    await ev.tick();
    expect(ev.consuming).toBe(true);
    expect(logs.matching(new RegExp(`^entitlement evaluator consuming ${queue}`))).toHaveLength(1);
    await waitFor(async () => (await h!.rollupQueue.getJobCounts('completed')).completed === 1, {
      message: 'the waiting rollup applied',
    });
    expect(await h.checker.check('acme', 'gpt5')).toMatchObject({
      source: 'default',
      usage: 250,
      balance: 750,
    });
    expect(ev.getStats()).toMatchObject({ rollups: 1, applied: 1 });
  });

  it('only move forward: an older config never takes the catalog back, and an evaluator republishes it when Redis lost it', async () => {
    h = new EntHarness({ meters, entitlements: daily(1000), label: 'forward' });
    const older = h.config;
    const newer = variant(daily(2000));
    expect(await publishDefinitions(h.redis, older, 'old')).toMatchObject({
      status: 'published',
      version: 1,
    });
    expect(await publishDefinitions(h.redis, newer, 'new')).toMatchObject({
      status: 'published',
      version: 2,
    });
    // The older config again (a replica of the previous deploy restarting): nothing changes.
    expect(await publishDefinitions(h.redis, older, 'old-again')).toMatchObject({
      status: 'older',
      version: 2,
      publishedBy: 'new',
      supersededVersion: 1,
    });
    const logs = captureLogs('info');
    const ev = new EntitlementEvaluator({ config: older, logger: logs.logger, consumerName: 'old-pod' });
    closers.push(ev);
    await ev.start();
    expect(
      logs.matching(
        /^the config's entitlement definitions were published as v1 and replaced since/,
        LogLevel.warn,
      ),
    ).toHaveLength(1);
    expect(ev.definitions.catalog).toMatchObject({ source: 'published', version: 2 });
    expect(await readPublished(h.redis, h.config)).toMatchObject({ version: 2, publishedBy: 'new' });

    // Redis lost the catalog: the evaluator publishes its own again on its next maintenance tick.
    await h.redis.del(h.keys.entitlementDefinitions());
    await ev.tick();
    expect(
      logs.matching(
        /^the published entitlement definitions were missing .*: published the config's again/,
        LogLevel.warn,
      ),
    ).toHaveLength(1);
    expect(await readPublished(h.redis, h.config)).toMatchObject({ version: 1, publishedBy: 'old-pod' });
    expect(ev.definitions.catalog).toMatchObject({ source: 'published', version: 1 });
  });
});
