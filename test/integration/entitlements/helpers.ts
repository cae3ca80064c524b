/**
 * Helpers of the entitlement integration tests: a config with a unique prefix, the entitlement
 * components on the shared test Redis, closed windows written the way the pipeline writes them, and an
 * independent model of the burn-down (per window, in time order, straight from the documented rules).
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import {
  EntitlementChecker,
  EntitlementEvaluator,
  EntitlementStore,
  resolveConfig,
  TallyKeys,
  type NotificationJob,
  type RollupJob,
  type TallyConfig,
} from '../../../src/index.js';
import { createTestRedis, testRedisUrl, uniquePrefix } from '../../support/redis.js';

export const M = 1_000_000n;

/** An hourly SUM meter of tokens (`$.t`) by model, the meter most entitlement tests count with. */
export const TOKENS_BY_MODEL_HOURLY = {
  slug: 'tokens',
  eventType: 'llm',
  aggregation: 'SUM',
  valueProperty: '$.t',
  groupBy: { model: '$.model' },
  windowSize: 'HOUR',
};
export const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export interface EntHarnessOptions {
  meters: unknown[];
  entitlements?: Record<string, unknown>;
  windows?: Record<string, unknown>;
  worker?: Record<string, unknown>;
  partitions?: number;
  label?: string;
}

export class EntHarness {
  readonly config: TallyConfig;
  readonly raw: Record<string, unknown>;
  readonly keys: TallyKeys;
  readonly redis: Redis;
  readonly store: EntitlementStore;
  readonly checker: EntitlementChecker;
  readonly notificationsQueue: Queue;
  readonly rollupQueue: Queue;
  private readonly evaluators: EntitlementEvaluator[] = [];

  constructor(options: EntHarnessOptions) {
    const prefix = uniquePrefix(options.label ?? 'ent');
    this.raw = {
      redis: { url: testRedisUrl() },
      streams: { prefix, partitions: options.partitions ?? 1 },
      windows: { grace: '100ms', idleTimeout: '300ms', ...options.windows },
      worker: { closeInterval: '50ms', claimIdle: '500ms', blockMs: 200, leaseTtl: '1s', ...options.worker },
      rollups: { queues: [`${prefix}-billing`, `${prefix}-ent`], keepCompleted: '1h' },
      meters: options.meters,
      entitlements: {
        notificationsQueue: `${prefix}-notify`,
        interval: '50ms',
        lookback: '2s',
        ...options.entitlements,
      },
    };
    this.config = resolveConfig(this.raw, {});
    this.keys = new TallyKeys(prefix);
    this.redis = createTestRedis();
    this.store = new EntitlementStore({ config: this.config, connection: this.redis, logger });
    this.checker = new EntitlementChecker({ config: this.config, connection: this.redis, logger });
    this.notificationsQueue = new Queue(`${prefix}-notify`, {
      connection: this.redis,
      prefix: this.config.rollups.queuePrefix,
    });
    this.rollupQueue = new Queue(`${prefix}-ent`, {
      connection: this.redis,
      prefix: this.config.rollups.queuePrefix,
    });
  }

  get prefix(): string {
    return this.config.prefix;
  }

  /** An evaluator on its own connection (so it can be closed like a replica); not started. */
  evaluator(name?: string): EntitlementEvaluator {
    const e = new EntitlementEvaluator({
      config: this.config,
      logger,
      ...(name ? { consumerName: name } : {}),
    });
    this.evaluators.push(e);
    return e;
  }

  /** The group JSON a window hash uses: [subject, ...values in sorted group-key order]. */
  group(meterSlug: string, subject: string, groupBy: Record<string, string | null>): string {
    const meter = this.config.meters.find((m) => m.slug === meterSlug);
    if (!meter) throw new Error(`no meter ${meterSlug}`);
    return JSON.stringify([subject, ...meter.groupKeys.map((k) => groupBy[k] ?? null)]);
  }

  /**
   * Writes a window's aggregate as the pipeline does (c:/v: fields of the window hash in the subject's
   * home partition) and returns the rollup job a close would emit for it.
   */
  async writeWindow(w: WindowInput): Promise<RollupJob> {
    const meter = this.config.meters.find((m) => m.slug === w.meter);
    if (!meter) throw new Error(`no meter ${w.meter}`);
    const p = this.checker.definitions.partitionOf(w.subject);
    const key = this.keys.window(p, w.meter, w.start);
    const group = this.group(w.meter, w.subject, w.groupBy ?? {});
    const count = w.count ?? 1;
    const scaled = decimalToScaled(w.value);
    if (meter.aggregation === 'COUNT') await this.redis.hset(key, `c:${group}`, w.value);
    else await this.redis.hset(key, `c:${group}`, count, `v:${group}`, scaled.toString());
    const end = w.end ?? w.start + meter.window.sizeMs;
    return {
      version: 1,
      meter: w.meter,
      aggregation: meter.aggregation,
      subject: w.subject,
      groupBy: Object.fromEntries(meter.groupKeys.map((k) => [k, w.groupBy?.[k] ?? null])),
      windowStart: new Date(w.start).toISOString(),
      windowEnd: new Date(end).toISOString(),
      value: Number(w.value),
      valueDecimal: w.value,
      eventCount: meter.aggregation === 'COUNT' ? Number(w.value) : count,
      revision: w.revision ?? 1,
      partition: p,
    };
  }

  /** Registers a group tail as the evaluator does when it applies a rollup (for live-only groups). */
  async knowTail(meterSlug: string, subject: string, groupBy: Record<string, string | null>): Promise<void> {
    const meter = this.config.meters.find((m) => m.slug === meterSlug)!;
    const p = this.checker.definitions.partitionOf(subject);
    await this.redis.sadd(
      this.keys.entitlementGroups(p, meterSlug),
      JSON.stringify(meter.groupKeys.map((k) => groupBy[k] ?? null)),
    );
  }

  async notifications(): Promise<NotificationJob[]> {
    const jobs = await this.notificationsQueue.getJobs(
      ['waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized'],
      0,
      -1,
    );
    // Jobs written by one step share `at`: then by type and threshold id.
    const order = (j: NotificationJob) =>
      `${j.at}|${j.type}|${j.threshold?.id ?? ''}|${j.subject}|${j.feature}`;
    return jobs
      .map((j) => j.data as NotificationJob)
      .sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
  }

  async outbox(partition = 0): Promise<Record<string, string>[]> {
    const entries = (await this.redis.xrange(this.keys.entitlementOutbox(partition), '-', '+')) as [
      string,
      string[],
    ][];
    return entries.map(([, f]) =>
      Object.fromEntries(f.flatMap((v, i) => (i % 2 === 0 ? [[v, f[i + 1] as string]] : []))),
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.evaluators.map((e) => e.close()));
    await this.checker.close();
    await this.store.close();
    await this.notificationsQueue.close();
    await this.rollupQueue.close();
  }
}

export interface WindowInput {
  meter: string;
  subject: string;
  groupBy?: Record<string, string | null>;
  start: number;
  end?: number;
  /** Decimal value (SUM) or count (COUNT). */
  value: string;
  count?: number;
  revision?: number;
}

export function decimalToScaled(v: string): bigint {
  const neg = v.startsWith('-');
  const [int = '0', frac = ''] = (neg ? v.slice(1) : v).split('.');
  const scaled = BigInt(int) * M + BigInt(frac.padEnd(6, '0').slice(0, 6));
  return neg ? -scaled : scaled;
}

export function scaledToDecimal(v: bigint): string {
  const neg = v < 0n;
  const abs = neg ? -v : v;
  const frac = (abs % M).toString().padStart(6, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${abs / M}${frac ? `.${frac}` : ''}`;
}

// ---- Independent burn-down model -------------------------------------------------------------------

export interface ModelGrant {
  id: string;
  amount: bigint;
  /** When it starts covering usage. */
  from: number;
  expiresAt?: number;
  priority?: number;
}

export interface ModelResult {
  usage: bigint;
  balance: bigint;
  overage: bigint;
  remaining: Map<string, bigint>;
}

/**
 * The documented rules, window by window: a grant counts in the period its coverage starts in, until
 * it expires or the period ends; the limit covers the whole period with priority 1. Each window's
 * usage (attributed by window start) is taken from the allowances covering that instant, in order of
 * priority, end of coverage (the limit first on a tie), start, id; what none covers is overage. The
 * balance is what is left of the allowances covering `at`.
 */
export function burnDownModel(
  limit: bigint,
  grants: readonly ModelGrant[],
  period: { start: number; end: number },
  usage: readonly { start: number; amount: bigint }[],
  at: number,
): ModelResult {
  type A = { id: string; left: bigint; from: number; to: number; priority: number; isLimit: boolean };
  const all: A[] = [
    { id: 'limit', left: limit, from: period.start, to: period.end, priority: 1, isLimit: true },
  ];
  for (const g of grants) {
    if (g.from < period.start || g.from >= period.end) continue;
    const to = Math.min(g.expiresAt ?? period.end, period.end);
    if (to > g.from)
      all.push({ id: g.id, left: g.amount, from: g.from, to, priority: g.priority ?? 1, isLimit: false });
  }
  const order = [...all].sort(
    (a, b) =>
      a.priority - b.priority ||
      a.to - b.to ||
      (a.isLimit === b.isLimit ? 0 : a.isLimit ? -1 : 1) ||
      a.from - b.from ||
      a.id.localeCompare(b.id),
  );
  let overage = 0n;
  let total = 0n;
  const windows = usage
    .filter((u) => u.start >= period.start && u.start < period.end)
    .sort((a, b) => a.start - b.start);
  for (const w of windows) {
    total += w.amount;
    let need = w.amount > 0n ? w.amount : 0n;
    for (const a of order) {
      if (need === 0n) break;
      if (!(a.from <= w.start && w.start < a.to)) continue;
      const take = a.left < need ? a.left : need;
      a.left -= take;
      need -= take;
    }
    overage += need;
  }
  const t = Math.min(at, period.end - 1);
  const balance = all.filter((a) => a.from <= t && t < a.to).reduce((s, a) => s + a.left, 0n);
  return { usage: total, balance, overage, remaining: new Map(all.map((a) => [a.id, a.left])) };
}
