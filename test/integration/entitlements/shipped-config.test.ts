/**
 * The first-hour entitlement scenario (issue 13), end to end with the built CLI and the shipped
 * config/tally.yaml on a Redis of its own (so the config runs unchanged, prefix `tally` and all).
 *
 * Before: a worker on a config without an `entitlements:` section ran an evaluator that consumed the
 * `tally-entitlements` rollups and wrote nothing, and `tally check` with a config that had them showed
 * the usage while the window was read live, then 0 once it was older than grace + lookback.
 * Now: that evaluator leaves the rollups waiting, the check says nobody applies its definitions, and a
 * worker on the shipped config publishes them and applies the waiting rollups, so the usage stays
 * after the window closed and after `lookback`.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseUsagePeriod, periodAt } from '../../../src/entitlements/index.js';
import { loadConfigFile, UsageProducer, type EntitlementCheck } from '../../../src/index.js';
import { ROOT, run, start } from '../../support/cli.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { waitFor } from '../../support/redis.js';

const HOUR = 3_600_000;
const SHIPPED = join(ROOT, 'config/tally.yaml');

describe('entitlement usage with the shipped config (worker, then check after the window closed and after lookback)', () => {
  let server: RedisServerHandle;
  let redis: Redis;
  let dir: string;
  beforeAll(async () => {
    server = await startRedisServer();
    redis = new Redis(server.url, { maxRetriesPerRequest: null });
    dir = mkdtempSync(join(tmpdir(), 'tally-shipped-'));
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(
    'keeps the usage: rollups wait for an evaluator with definitions, which applies them',
    { timeout: 150_000 },
    async () => {
      const env = { REDIS_URL: server.url, LOG_LEVEL: 'info' };
      const shipped = parse(readFileSync(SHIPPED, 'utf8')) as Record<string, unknown>;
      const config = await loadConfigFile(SHIPPED, { REDIS_URL: server.url });
      const lookback = config.windows.graceMs + config.entitlements.lookbackMs;

      // An hourly window that ended hours ago, in the same gpt5_tokens period (a Berlin calendar month)
      // as the instants checked: just after its end, and after grace + lookback.
      const period = parseUsagePeriod({ interval: 'MONTH', timeZone: 'Europe/Berlin' });
      let windowStart = Math.floor(Date.now() / HOUR) * HOUR - 2 * HOUR;
      while (
        periodAt(period, windowStart).start !== periodAt(period, windowStart + HOUR + lookback + 60_000).start
      )
        windowStart -= HOUR;
      const windowEnd = windowStart + HOUR;
      const afterClose = new Date(windowEnd + 60_000).toISOString();
      const afterLookback = new Date(windowEnd + lookback + 60_000).toISOString();

      // 1. A worker on a config without an entitlements section (the old shipped config).
      const bareFile = join(dir, 'no-entitlements.yaml');
      const withoutEntitlements = { ...shipped };
      delete withoutEntitlements.entitlements;
      writeFileSync(bareFile, stringify(withoutEntitlements));
      const bare = start(['worker', '--config', bareFile], env);
      await bare.waitForOutput(
        /no entitlement features .*not consuming tally-entitlements; its rollups wait there/,
      );

      const producer = new UsageProducer({
        redis: server.url,
        prefix: config.prefix,
        partitions: config.partitions,
      });
      const event = (tokens: number, model: string, minute: number) => ({
        id: randomUUID(),
        source: 'first-hour-test',
        type: 'llm.completion',
        subject: 'customer-42',
        time: new Date(windowStart + minute * 60_000).toISOString(),
        data: { tokens, model, direction: 'output' },
      });
      await producer.sendBatch([
        event(1200, 'gpt-5', 5),
        event(2000, 'gpt-5', 20),
        event(368, 'gpt-5', 59),
        event(500, 'claude-4', 30),
      ]);
      await producer.close();

      // The window closes on the idle partition; one rollup per model lands in each queue.
      const billing = new Queue('tally-billing', { connection: redis, prefix: 'bull' });
      const entitlements = new Queue('tally-entitlements', { connection: redis, prefix: 'bull' });
      try {
        await waitFor(async () => (await billing.getJobCounts('waiting')).waiting === 2, {
          timeoutMs: 40_000,
          message: 'two rollups in tally-billing',
        });
        await waitFor(async () => (await entitlements.getJobCounts('waiting')).waiting === 2, {
          timeoutMs: 10_000,
          message: 'two rollups in tally-entitlements',
        });

        const check = async (file: string, at?: string) => {
          const r = await run(
            ['check', '--config', file, 'customer-42', 'gpt5_tokens', ...(at ? ['--at', at] : [])],
            { REDIS_URL: server.url },
          );
          const notes = r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('tally: Redis '));
          return { code: r.code, notes, result: JSON.parse(r.stdout) as EntitlementCheck };
        };
        // Nobody applies the rollups yet: the check says so, and after lookback sees no usage.
        const early = await check(SHIPPED, afterLookback);
        expect(early.notes).toEqual([
          expect.stringMatching(
            /^tally: no evaluator has published entitlement definitions to this Redis \(prefix tally\)/,
          ),
        ]);
        expect(early.result.exact).toMatchObject({ usage: '0', appliedUsage: '0' });
        expect((await check(SHIPPED, afterClose)).result.exact).toMatchObject({
          usage: '3568',
          appliedUsage: '0',
          liveUsage: '3568',
        });
        // Still waiting, untouched, after the bare worker's evaluator looked for definitions many times.
        expect(await entitlements.getJobCounts('waiting', 'completed')).toEqual({ waiting: 2, completed: 0 });

        // 2. A worker on the shipped config: it publishes the definitions and applies the waiting rollups.
        const worker = start(['worker', '--config', SHIPPED], env);
        await worker.waitForOutput(/published the config's entitlement definitions \(v1, published .* by /);
        await waitFor(async () => (await entitlements.getJobCounts('completed')).completed === 2, {
          timeoutMs: 20_000,
          message: 'rollups applied',
        });

        for (const at of [afterClose, afterLookback]) {
          const c = await check(SHIPPED, at);
          expect(c.code, at).toBe(0);
          expect(c.notes, at).toEqual([]);
          expect(c.result, at).toMatchObject({
            type: 'metered',
            source: 'default',
            hasAccess: true,
            usage: 3568,
            limit: 1_000_000,
            balance: 996_432,
          });
          expect(c.result.exact, at).toMatchObject({ appliedUsage: '3568', liveUsage: '0' });
        }
        // Now, when the window is long past lookback (unless a new month began since).
        const now = await check(SHIPPED);
        if (now.result.periodStart === new Date(periodAt(period, windowStart).start).toISOString())
          expect(now.result.usage).toBe(3568);

        // A check with a config that disagrees says so in one line, and answers from what the workers apply.
        const otherFile = join(dir, 'other-limits.yaml');
        const other = structuredClone(shipped) as { entitlements: { defaults: { limit?: number }[] } };
        other.entitlements.defaults[0]!.limit = 2_000_000;
        writeFileSync(otherFile, stringify(other));
        const disagreeing = await check(otherFile, afterLookback);
        expect(disagreeing.notes).toHaveLength(1);
        expect(disagreeing.notes[0]).toMatch(
          new RegExp(
            `^tally: ${otherFile} has other entitlement definitions than those the workers apply \\(v1, published \\S+Z by \\S+\\): checking with theirs$`,
          ),
        );
        expect(disagreeing.result).toMatchObject({ usage: 3568, limit: 1_000_000 });

        expect(await worker.stop()).toBe(0);
        expect(await bare.stop()).toBe(0);
        expect(worker.output()).not.toMatch(/"level":5\d/);
      } finally {
        await billing.close();
        await entitlements.close();
      }
    },
  );
});
