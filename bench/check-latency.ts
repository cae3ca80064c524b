/**
 * Entitlement check latency (issue 4): p50/p99 of `EntitlementChecker.check` over 10k checks of a
 * 1k-subject population, plus the Redis time per check (INFO commandstats of EVALSHA, measured as a
 * delta over the run).
 *
 * The population is realistic for the LLM-token example of config/tally.yaml: an hourly SUM meter
 * grouped by model and direction (6 group-by combinations), 4 partitions, a monthly metered default
 * for everyone, and for one subject in ten its own entitlement with two grants and thresholds. Every
 * subject has two closed hours applied by the evaluator and usage in the open hour, so each check reads
 * the applied usage, the burn-down counters, and the live window hashes (thousands of fields each).
 *
 * Called by bench/run.ts; also runs alone: `node dist/bench/check-latency.js [redis-url]` (against a
 * Redis you do not mind it writing to; it deletes its keys afterwards).
 */
import { randomBytes } from 'node:crypto';
import { random } from '../test/support/random.js';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { resolveConfig } from '../src/config/index.js';
import { EntitlementChecker, EntitlementEvaluator, EntitlementStore } from '../src/entitlements/index.js';
import { connect, TallyKeys } from '../src/redis/index.js';
import type { RollupJob } from '../src/rollups/index.js';

export interface CheckLatencyOptions {
  /** Subjects in the population. @defaultValue 1000 */
  subjects?: number;
  /** Measured checks. @defaultValue 10000 */
  checks?: number;
  /** Checks before measuring (fill caches, warm the JIT). @defaultValue 2000 */
  warmup?: number;
  /** Stream partitions. @defaultValue 4 */
  partitions?: number;
  /** Key prefix; a random one by default. */
  prefix?: string;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface CheckLatencyResult {
  /** Client-observed latency of one check (one EVALSHA round trip on a warm cache), sequential. */
  p50Ms: number;
  p99Ms: number;
  checks: number;
  subjects: number;
  /** Redis CPU time per check script call (commandstats usec / calls), in µs. */
  redisUsPerCheck: number;
  /** Checks per second with 32 in flight (one connection). */
  concurrentChecksPerSecond: number;
  /** Window hash fields a check probes: (windows read) x (group-by combinations). */
  probesPerCheck: number;
  /** Fields of one live window hash (all subjects of a partition). */
  fieldsPerWindowHash: number;
}

const MODELS = ['gpt-5', 'claude-4', 'llama-4'];
const DIRECTIONS = ['input', 'output'];
const HOUR = 3_600_000;

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function evalshaStats(redis: Redis): Promise<{ calls: number; usec: number }> {
  const info = await redis.info('commandstats');
  const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(info);
  return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0) };
}

export async function runCheckLatency(
  redisUrl: string,
  opts: CheckLatencyOptions = {},
): Promise<CheckLatencyResult> {
  const subjects = opts.subjects ?? 1000;
  const checks = opts.checks ?? 10_000;
  const warmup = opts.warmup ?? 2000;
  const partitions = opts.partitions ?? 4;
  const prefix = opts.prefix ?? `bench-ent-${randomBytes(4).toString('hex')}`;
  const log = opts.log ?? (() => undefined);
  const config = resolveConfig(
    {
      redis: { url: redisUrl },
      streams: { prefix, partitions },
      rollups: { queues: [`${prefix}-billing`, `${prefix}-entitlements`] },
      meters: [
        {
          slug: 'llm_tokens',
          eventType: 'llm.completion',
          aggregation: 'SUM',
          valueProperty: '$.tokens',
          groupBy: { model: '$.model', direction: '$.direction' },
          windowSize: 'HOUR',
        },
      ],
      entitlements: {
        features: [{ key: 'tokens', meter: 'llm_tokens' }],
        defaults: [
          {
            feature: 'tokens',
            type: 'metered',
            usagePeriod: { interval: 'MONTH', timeZone: 'Europe/Berlin' },
            limit: 5_000_000,
            thresholds: [{ percent: 80 }, { percent: 100 }],
          },
        ],
      },
    },
    {},
  );
  const logger = pino({ level: 'warn' });
  const client = connect(config.redis);
  const admin = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const store = new EntitlementStore({ config, connection: client, logger });
  const evaluator = new EntitlementEvaluator({ config, connection: client, logger });
  const checker = new EntitlementChecker({ config, connection: client, logger });
  const keys = new TallyKeys(prefix);
  try {
    const rnd = random(4);
    const names = Array.from({ length: subjects }, (_, i) => `customer-${i}`);
    const now = Date.now();
    const open = Math.floor(now / HOUR) * HOUR;
    log(`check latency: populating ${subjects} subjects (${partitions} partitions)`);
    for (let i = 0; i < subjects; i += 10) {
      const subject = names[i] as string;
      await store.setEntitlement(subject, 'tokens', {
        type: 'metered',
        usagePeriod: { interval: 'MONTH' },
        limit: 2_000_000,
        limitType: 'soft',
        thresholds: [{ percent: 50 }],
      });
      await store.addGrant(subject, 'tokens', {
        amount: 100_000,
        priority: 0,
        expiresAt: new Date(now + 7 * 86_400_000).toISOString(),
      });
      await store.addGrant(subject, 'tokens', { amount: 250_000.5, priority: 2 });
    }
    // Two closed hours (windows written, rollups applied) and the open hour (live only), for everyone.
    const pipeline = client.pipeline();
    const rollups: RollupJob[] = [];
    for (const subject of names) {
      const p = evaluator.definitions.partitionOf(subject);
      for (const ws of [open - 2 * HOUR, open - HOUR, open]) {
        for (const model of MODELS) {
          for (const direction of DIRECTIONS) {
            const tokens = 1 + Math.floor(rnd() * 20_000);
            const group = JSON.stringify([subject, direction, model]);
            pipeline.hset(
              keys.window(p, 'llm_tokens', ws),
              `c:${group}`,
              1 + Math.floor(rnd() * 50),
              `v:${group}`,
              `${tokens}000000`,
            );
            if (ws < open) {
              rollups.push({
                version: 1,
                meter: 'llm_tokens',
                aggregation: 'SUM',
                subject,
                groupBy: { direction, model },
                windowStart: new Date(ws).toISOString(),
                windowEnd: new Date(ws + HOUR).toISOString(),
                value: tokens,
                valueDecimal: String(tokens),
                eventCount: 1,
                revision: 1,
                partition: p,
              });
            }
          }
        }
      }
    }
    await pipeline.exec();
    for (let i = 0; i < rollups.length; i += 64)
      await Promise.all(rollups.slice(i, i + 64).map((r) => evaluator.applyRollup(r)));
    const fieldsPerWindowHash = await admin.hlen(keys.window(0, 'llm_tokens', open));

    const pick = () => names[Math.floor(rnd() * subjects)] as string;
    for (let i = 0; i < warmup; i++) await checker.check(pick(), 'tokens');
    // customer-1 has the default entitlement, so its closed hours count (one in ten subjects got its own
    // entitlement just now: those count from the open hour on).
    const sample = await checker.check(names[1] as string, 'tokens');
    if (!sample.exact || sample.exact.liveUsage === '0' || sample.exact.appliedUsage === '0') {
      throw new Error(`check latency: population not as intended (${JSON.stringify(sample.exact)})`);
    }

    log(`check latency: ${checks} sequential checks`);
    const before = await evalshaStats(admin);
    const latencies = new Float64Array(checks);
    for (let i = 0; i < checks; i++) {
      const subject = pick();
      const t0 = performance.now();
      await checker.check(subject, 'tokens');
      latencies[i] = performance.now() - t0;
    }
    const after = await evalshaStats(admin);
    const sorted = [...latencies].sort((a, b) => a - b);

    const inFlight = 32;
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < checks) {
          next++;
          await checker.check(pick(), 'tokens');
        }
      }),
    );
    const concurrentChecksPerSecond = Math.round(checks / ((performance.now() - t0) / 1000));
    const calls = after.calls - before.calls;
    const round = (ms: number) => Math.round(ms * 1000) / 1000;
    return {
      p50Ms: round(percentile(sorted, 50)),
      p99Ms: round(percentile(sorted, 99)),
      checks,
      subjects,
      redisUsPerCheck: calls > 0 ? Math.round(((after.usec - before.usec) / calls) * 10) / 10 : 0,
      concurrentChecksPerSecond,
      probesPerCheck: 2 * MODELS.length * DIRECTIONS.length,
      fieldsPerWindowHash,
    };
  } finally {
    await checker.close();
    await evaluator.close();
    await store.close();
    let cursor = '0';
    do {
      const [nextCursor, found] = await admin.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = nextCursor;
      if (found.length > 0) await admin.unlink(...found);
    } while (cursor !== '0');
    admin.disconnect();
    await client.quit().catch(() => undefined);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.argv[2] ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  runCheckLatency(url, { log: (line) => console.log(line) })
    .then((r) => console.log(JSON.stringify(r, null, 2)))
    .catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
}
