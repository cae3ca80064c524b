import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfigFile, resolveConfig, TallyConfigError } from '../../../src/index.js';
import { demoConfigData } from '../../../src/cli/demo-config.js';

const meter = { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens' };

function configError(input: unknown, env: NodeJS.ProcessEnv = {}): TallyConfigError {
  try {
    resolveConfig(input, env);
  } catch (err) {
    expect(err).toBeInstanceOf(TallyConfigError);
    return err as TallyConfigError;
  }
  throw new Error('expected a TallyConfigError');
}

describe('config', () => {
  it('fills defaults and resolves durations', () => {
    const c = resolveConfig({ meters: [meter] }, {});
    expect(c.prefix).toBe('tally');
    expect(c.partitions).toBe(1);
    expect(c.consumerGroup).toBe('tally');
    expect(c.dedup.horizonMs).toBe(32 * 86_400_000);
    expect(c.dedup.epochMs * c.dedup.generations).toBeGreaterThanOrEqual(c.dedup.horizonMs);
    expect(c.windows).toMatchObject({ graceMs: 5000, latePolicy: 'correct', retentionMs: 35 * 86_400_000 });
    expect(c.rollups.queues).toEqual(['tally-billing', 'tally-entitlements']);
    expect(c.meters[0]).toMatchObject({ slug: 'tokens', code: 'S', groupKeys: [] });
  });

  it('lets REDIS_URL override the configured Redis', () => {
    expect(
      resolveConfig({ redis: { url: 'redis://a:1' } }, { REDIS_URL: 'rediss://user:pw@b:2' }).redisUrl,
    ).toBe('rediss://user:pw@b:2');
  });

  it.each([
    [{ streams: { partitions: 0 } }, 'streams.partitions'],
    [{ streams: { partitions: 'four' } }, 'streams.partitions'],
    [{ windows: { latePolicy: 'ignore' } }, 'windows.latePolicy'],
    [{ windows: { grace: 'soon' } }, 'windows.grace'],
    [{ windows: { grace: '1h', retention: '30m' } }, 'windows.retention'],
    [{ dedup: { horizon: '1s' } }, 'dedup.horizon'],
    [{ redis: { url: 'http://x' } }, 'redis.url'],
    [{ redis: { url: 'redis://x', cluster: true } }, 'rollups.queuePrefix'],
    [{ unknownSection: {} }, 'unknownSection'],
    [{ meters: [{ ...meter, aggregation: 'MEDIAN' }] }, 'meters[0].aggregation'],
    [{ meters: [{ ...meter, slug: 'Bad Slug' }] }, 'meters[0].slug'],
    [{ meters: [{ ...meter, valueProperty: undefined }] }, 'meters[0].valueProperty'],
    [
      { meters: [{ slug: 'c', eventType: 'x', aggregation: 'COUNT', valueProperty: '$.v' }] },
      'meters[0].valueProperty',
    ],
    [{ meters: [{ ...meter, valueProperty: '$..tokens' }] }, 'meters[0].valueProperty'],
    [{ meters: [{ ...meter, groupBy: { model: 'model' } }] }, 'meters[0].groupBy.model'],
    [{ meters: [{ ...meter, windowSize: '7m' }] }, 'meters[0].windowSize'],
    [{ meters: [{ ...meter, timeZone: 'Mars/Olympus' }] }, 'meters[0].timeZone'],
    [{ meters: [meter, meter] }, 'meters[1].slug'],
  ])('rejects %j naming %s', (input, field) => {
    const err = configError(input);
    expect(err.field).toBe(field);
    expect(err.message.startsWith(field)).toBe(true);
  });

  it('names the bad value in the message', () => {
    expect(configError({ streams: { partitions: 'four' } }).message).toContain('"four"');
    expect(configError({ meters: [{ ...meter, windowSize: '7m' }] }).message).toContain('7m');
  });

  it('lists the allowed values of an enum, and the one a wrong case meant', () => {
    expect(configError({ meters: [{ ...meter, aggregation: 'count' }] }).message).toBe(
      'meters[0].aggregation: expected one of SUM, COUNT, MIN, MAX, AVG, UNIQUE_COUNT, LATEST (got "count"; did you mean COUNT?)',
    );
    expect(configError({ windows: { latePolicy: 'drop' } }).message).toBe(
      'windows.latePolicy: expected one of correct, dead-letter (got "drop")',
    );
  });

  it('shows a YAML error whole, in one line with the offending line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tally-yaml-'));
    try {
      const file = join(dir, 'tally.yaml');
      const lines = [
        'meters:',
        '  - slug: tokens',
        '    eventType: llm: completion',
        '    aggregation: COUNT',
      ];
      writeFileSync(file, lines.join('\n'));
      const err = await loadConfigFile(file, {}).then(
        () => undefined,
        (e: unknown) => e as TallyConfigError,
      );
      expect(err).toBeInstanceOf(TallyConfigError);
      expect(err?.message).toBe(
        `config: ${file} is not valid YAML: line 3, column 16: Nested mappings are not allowed in compact mappings, in "    eventType: llm: completion"`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loads the shipped example configs', async () => {
    const c = await loadConfigFile('config/tally.yaml', {});
    expect(c.meters.map((m) => m.slug)).toEqual(['llm_tokens', 'api_calls', 'gpu_seconds', 'active_users']);
    expect(c.meters[2]?.window).toMatchObject({ kind: 'day', timeZone: 'America/New_York' });
    expect([...c.entitlements.features.keys()]).toEqual([
      'gpt5_tokens',
      'all_tokens',
      'api',
      'sso',
      'models',
    ]);
    expect(c.entitlements.queue).toBe('tally-entitlements');
    // The demo runs on the same file, with short windows and periods.
    const demo = resolveConfig(demoConfigData(parse(readFileSync('config/tally.yaml', 'utf8'))), {});
    expect(demo.prefix).toBe('tally-demo');
    expect(demo.meters.map((m) => [m.slug, m.window.sizeMs])).toEqual(c.meters.map((m) => [m.slug, 10_000]));
    expect([...demo.entitlements.defaults.keys()]).toEqual([...c.entitlements.defaults.keys()]);
    expect(demo.entitlements.defaults.get('gpt5_tokens')).toMatchObject({
      limit: 1_000_000_000_000n,
      usagePeriod: { interval: 'PT1M' },
    });
    expect(parse(readFileSync('config/tally.yaml', 'utf8'))).toHaveProperty('meters');
  });

  it('reports unreadable and malformed files', async () => {
    await expect(loadConfigFile('config/missing.yaml', {})).rejects.toThrow(/cannot read/);
  });

  it('refuses worker timings below their minimums, naming the field and the value', () => {
    for (const [field, value, min] of [
      ['closeInterval', 0, '10ms'],
      ['closeInterval', '5ms', '10ms'],
      ['claimIdle', 0, '100ms'],
      ['claimIdle', '0s', '100ms'],
      ['leaseTtl', '100ms', '300ms'],
      ['shutdownTimeout', 0, '100ms'],
      ['connectTimeout', '50ms', '100ms'],
    ] as const) {
      expect(configError({ worker: { [field]: value } }).message).toBe(
        `worker.${field}: must be at least ${min}, got ${JSON.stringify(value)}`,
      );
    }
    const c = resolveConfig(
      { worker: { closeInterval: '10ms', claimIdle: '100ms', leaseTtl: '300ms', shutdownTimeout: '2s' } },
      {},
    );
    expect(c.worker).toMatchObject({
      closeIntervalMs: 10,
      claimIdleMs: 100,
      leaseTtlMs: 300,
      shutdownTimeoutMs: 2_000,
    });
    expect(resolveConfig({}, {}).worker.shutdownTimeoutMs).toBe(10_000);
    expect(resolveConfig({}, {}).worker.connectTimeoutMs).toBe(10_000);
    expect(resolveConfig({ worker: { connectTimeout: '2m' } }, {}).worker.connectTimeoutMs).toBe(120_000);
    expect(resolveConfig({}, {}).maxEventsPerEntry).toBe(10_000);
  });
});
