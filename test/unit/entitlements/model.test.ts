import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/config/index.js';
import { burnPlan } from '../../../src/entitlements/burn-plan.js';
import {
  groupProbe,
  normalizeEntitlement,
  type Grant,
  type MeteredEntitlement,
} from '../../../src/entitlements/model.js';
import { periodAt } from '../../../src/entitlements/period.js';
import { TallyConfigError } from '../../../src/errors/index.js';

const METERS = [
  {
    slug: 'tokens',
    eventType: 'llm',
    aggregation: 'SUM',
    valueProperty: '$.tokens',
    groupBy: { model: '$.model', direction: '$.dir' },
  },
  { slug: 'calls', eventType: 'req', aggregation: 'COUNT' },
  { slug: 'peak', eventType: 'gpu', aggregation: 'MAX', valueProperty: '$.n' },
];

function config(entitlements: unknown, queues = ['billing', 'ents']) {
  return resolveConfig({ meters: METERS, rollups: { queues }, entitlements }, {});
}

function configError(entitlements: unknown, queues?: string[]): TallyConfigError {
  try {
    config(entitlements, queues);
  } catch (err) {
    expect(err).toBeInstanceOf(TallyConfigError);
    return err as TallyConfigError;
  }
  return expect.unreachable('expected a config error');
}

const M = 1_000_000n;

function metered(limit: string, thresholds: unknown[] = []): MeteredEntitlement {
  const cfg = config({
    features: [{ key: 'f', meter: 'tokens' }],
    defaults: [{ feature: 'f', type: 'metered', usagePeriod: { interval: 'MONTH' }, limit, thresholds }],
  });
  return cfg.entitlements.defaults.get('f') as MeteredEntitlement;
}

const grant = (id: string, amount: bigint, activeFrom: number, expiresAt?: number, priority = 1): Grant => ({
  id,
  amount,
  effectiveAt: activeFrom,
  expiresAt,
  priority,
  activeFrom,
  createdAt: activeFrom,
});

describe('entitlements config', () => {
  it('resolves features, defaults and the evaluator queue', () => {
    const cfg = config({
      features: [{ key: 'gpt5', meter: 'tokens', filter: { model: 'gpt-5' } }, { key: 'sso' }],
      defaults: [
        {
          feature: 'gpt5',
          type: 'metered',
          usagePeriod: { interval: 'MONTH', timeZone: 'Europe/Berlin' },
          limit: '1000.5',
          limitType: 'soft',
          thresholds: [{ percent: 80 }, { value: 10 }],
        },
        { feature: 'sso', type: 'boolean' },
      ],
      lookback: '2m',
    });
    const e = cfg.entitlements;
    expect(e.queue).toBe('ents');
    expect(e.lookbackMs).toBe(120_000);
    const d = e.defaults.get('gpt5') as MeteredEntitlement;
    expect(d.limit).toBe(1000_500_000n);
    expect(d.limitType).toBe('soft');
    expect(d.thresholds.map((t) => t.id)).toEqual(['p80', 'v10']);
    expect(e.defaults.get('sso')?.type).toBe('boolean');
    // No second rollup queue: no evaluator queue unless named.
    expect(config({}, ['billing']).entitlements.queue).toBeUndefined();
  });

  it('names the bad field', () => {
    expect(configError({ features: [{ key: 'x', meter: 'nope' }] }).field).toBe(
      'entitlements.features[0].meter',
    );
    expect(configError({ features: [{ key: 'x', meter: 'peak' }] }).message).toMatch(/SUM or COUNT/);
    expect(configError({ features: [{ key: 'x', meter: 'tokens', filter: { region: 'eu' } }] }).field).toBe(
      'entitlements.features[0].filter.region',
    );
    expect(configError({ features: [{ key: 'x', filter: { model: 'a' } }] }).field).toBe(
      'entitlements.features[0].filter',
    );
    expect(configError({ defaults: [{ feature: 'x', type: 'boolean' }] }).field).toBe(
      'entitlements.defaults[0].feature',
    );
    expect(
      configError({
        features: [{ key: 'x', meter: 'tokens' }],
        defaults: [{ feature: 'x', type: 'metered', limit: 5 }],
      }).field,
    ).toBe('entitlements.defaults[0].usagePeriod');
    expect(
      configError({
        features: [{ key: 'x' }],
        defaults: [{ feature: 'x', type: 'metered', limit: 5, usagePeriod: { interval: 'DAY' } }],
      }).field,
    ).toBe('entitlements.defaults[0].type');
    expect(
      configError({ features: [{ key: 'x' }], defaults: [{ feature: 'x', type: 'boolean', limit: 5 }] })
        .field,
    ).toBe('entitlements.defaults[0].limit');
    expect(
      configError({ features: [{ key: 'x' }], defaults: [{ feature: 'x', type: 'static' }] }).field,
    ).toBe('entitlements.defaults[0].config');
    expect(
      configError({
        features: [{ key: 'x', meter: 'calls' }],
        defaults: [
          {
            feature: 'x',
            type: 'metered',
            limit: 5,
            usagePeriod: { interval: 'DAY', timeZone: 'Nowhere/Land' },
          },
        ],
      }).field,
    ).toBe('entitlements.defaults[0].usagePeriod.timeZone');
    expect(configError({ queue: 'other' }).field).toBe('entitlements.queue');
    expect(configError({ notificationsQueue: 'billing' }).field).toBe('entitlements.notificationsQueue');
    expect(configError({ lookback: 'soon' }).field).toBe('entitlements.lookback');
  });

  it('refuses amounts with more than 6 decimals or negative', () => {
    expect(() =>
      normalizeEntitlement(
        { type: 'metered', limit: -1, usagePeriod: { interval: 'DAY' } },
        { key: 'f', meter: 'm', filter: {} },
      ),
    ).toThrow(/limit/);
    expect(() =>
      normalizeEntitlement(
        { type: 'metered', limit: '1.0000001', usagePeriod: { interval: 'DAY' } },
        { key: 'f', meter: 'm', filter: {} },
      ),
    ).toThrow(/limit/);
    expect(
      normalizeEntitlement(
        { type: 'metered', limit: '1.5000000', usagePeriod: { interval: 'DAY' } },
        { key: 'f', meter: 'm', filter: {} },
      ),
    ).toMatchObject({ limit: 1_500_000n });
    expect(() =>
      normalizeEntitlement(
        { type: 'metered', limit: 0.0000001, usagePeriod: { interval: 'DAY' } },
        { key: 'f', meter: 'm', filter: {} },
      ),
    ).toThrow(/limit/);
  });
});

describe('burn-down plans', () => {
  const ent = metered('100', [{ percent: 80 }, { percent: 33.3 }, { value: '150.5' }]);
  const period = periodAt(ent.usagePeriod, Date.parse('2024-05-10T00:00:00Z'));
  const day = 86_400_000;

  it('orders allowances by priority, then end of coverage, limit first on a tie, then start and id', () => {
    const p = period.start;
    const plan = burnPlan(
      ent,
      [
        grant('late-expiry', 5n * M, p + day),
        grant('soon', 5n * M, p + day, p + 3 * day),
        grant('urgent', 5n * M, p + 2 * day, undefined, 0),
        grant('b', 1n * M, p + 4 * day),
        grant('a', 1n * M, p + 4 * day),
        grant('low', 1n * M, p + day, p + 2 * day, 5),
      ],
      period,
    );
    expect(plan.allowances.map((a) => a.id)).toEqual([
      'urgent',
      'soon',
      'limit',
      'late-expiry',
      'a',
      'b',
      'low',
    ]);
    expect(plan.total).toBe(118n * M);
    expect(plan.grantsTotal).toBe(18n * M);
    expect(plan.boundaries).toEqual([p + day, p + 2 * day, p + 3 * day, p + 4 * day]);
  });

  it('counts a grant only in the period its coverage starts in, clipped to that period', () => {
    const p = period.start;
    const plan = burnPlan(
      ent,
      [
        grant('before', 7n * M, p - day, p + 5 * day),
        grant('next', 7n * M, period.end + 1),
        grant('spans', 3n * M, period.end - day, period.end + 10 * day),
      ],
      period,
    );
    expect(plan.allowances.map((a) => [a.id, a.to])).toEqual([
      ['limit', period.end],
      ['spans', period.end],
    ]);
  });

  it('threshold levels: percent of limit + grants rounded up, absolute values as given', () => {
    const plan = burnPlan(ent, [grant('g', 1n, period.start)], period); // total 100.000001
    const levels = Object.fromEntries(plan.thresholds.map((t) => [t.id, t.level]));
    expect(levels.p80).toBe(80_000_001n); // 80.0000008 rounded up
    expect(levels['p33.3']).toBe(33_300_001n); // 33.3000003 rounded up
    expect(levels['v150.5']).toBe(150_500_000n);
  });

  it('probes one fixed group when the filter pins every group-by key, else the tails matching it', () => {
    const cfg = config({
      features: [
        { key: 'a', meter: 'tokens', filter: { model: 'gpt-5', direction: 'in' } },
        { key: 'b', meter: 'tokens', filter: { model: 'gpt-5' } },
        { key: 'c', meter: 'calls' },
      ],
    });
    const meter = cfg.meters.find((m) => m.slug === 'tokens')!;
    const calls = cfg.meters.find((m) => m.slug === 'calls')!;
    const f = cfg.entitlements.features;
    // group keys sorted: direction, model
    expect(groupProbe(meter, f.get('a')!)).toEqual({ mode: 'fixed', tail: '["in","gpt-5"]' });
    expect(groupProbe(meter, f.get('b')!)).toEqual({ mode: 'tails', filter: '{"2":"gpt-5"}' });
    expect(groupProbe(calls, f.get('c')!)).toEqual({ mode: 'fixed', tail: '[]' });
  });
});
