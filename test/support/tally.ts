/**
 * Test harness for the pipeline: a config with a unique prefix and fast windows, producers, in-process
 * or child-process workers, and readers for rollup jobs, dead letters and settled state.
 */
import { randomUUID } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { connect } from '../../src/redis/index.js';
import {
  resolveConfig,
  TallyKeys,
  TallyWorker,
  UsageProducer,
  type RollupJob,
  type TallyConfig,
} from '../../src/index.js';
import { createTestRedis, testRedisUrl, uniquePrefix, waitFor } from './redis.js';
import { rollupKey } from './model.js';

export interface HarnessOptions {
  meters: unknown[];
  partitions?: number;
  windows?: Record<string, unknown>;
  worker?: Record<string, unknown>;
  streams?: Record<string, unknown>;
  dedup?: Record<string, unknown>;
  rollups?: Record<string, unknown>;
  redisUrl?: string;
  /** Treat redisUrl as a startup node of a Redis Cluster. */
  cluster?: boolean;
  label?: string;
}

export interface DeadLetter {
  id: string;
  reason: string;
  detail: string;
  entry: string;
  index: string;
  field: string;
  payload: string;
  deliveries?: string;
  /** The one meter the event is dead-lettered for (it counts in the others). */
  meter?: string;
}

const CLI = resolve(import.meta.dirname, '../../dist/src/cli/main.js');

export class Harness {
  readonly config: TallyConfig;
  readonly raw: Record<string, unknown>;
  readonly keys: TallyKeys;
  readonly redis: Redis | Cluster;
  readonly queue: Queue;
  private readonly workers: TallyWorker[] = [];
  private readonly children = new Set<ChildProcess>();
  private readonly producers: UsageProducer[] = [];
  private readonly dir = mkdtempSync(join(tmpdir(), 'tally-test-'));

  constructor(options: HarnessOptions) {
    const prefix = uniquePrefix(options.label ?? 'pipe');
    const url = options.redisUrl ?? testRedisUrl();
    this.raw = {
      redis: { url, cluster: options.cluster ?? false },
      streams: { prefix, partitions: options.partitions ?? 1, ...options.streams },
      windows: { grace: '100ms', idleTimeout: '300ms', ...options.windows },
      ...(options.dedup ? { dedup: options.dedup } : {}),
      worker: { closeInterval: '50ms', claimIdle: '1s', blockMs: 200, leaseTtl: '1s', ...options.worker },
      rollups: {
        queues: [`${prefix}-billing`],
        keepCompleted: '1h',
        ...(options.cluster ? { queuePrefix: '{tally}' } : {}),
        ...options.rollups,
      },
      meters: options.meters,
    };
    this.config = resolveConfig(this.raw, {});
    this.keys = new TallyKeys(prefix);
    this.redis = options.cluster ? connect({ url, cluster: true }) : createTestRedis({ url });
    this.queue = new Queue(`${prefix}-billing`, {
      connection: this.redis,
      prefix: this.config.rollups.queuePrefix,
    });
    // Tests that stop Redis expect connection errors: without a listener BullMQ prints each to stderr.
    this.queue.on('error', () => undefined);
  }

  get prefix(): string {
    return this.config.prefix;
  }

  producer(): UsageProducer {
    const p = new UsageProducer({
      redis: this.config.redisUrl,
      cluster: this.config.redis.cluster ?? false,
      prefix: this.prefix,
      partitions: this.config.partitions,
    });
    this.producers.push(p);
    return p;
  }

  async startWorker(consumerName?: string): Promise<TallyWorker> {
    const w = new TallyWorker({
      config: this.config,
      logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
      ...(consumerName ? { consumerName } : {}),
    });
    this.workers.push(w);
    await w.start();
    return w;
  }

  /**
   * Runs `tally worker` as a child process (the built CLI), for tests that SIGKILL it. `changes`: config
   * sections that differ from the harness's (e.g. other meters, for a rolling deploy).
   */
  spawnWorker(changes: Record<string, unknown> = {}): ChildProcess {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
    const file = join(this.dir, `tally-${randomUUID()}.yaml`);
    writeFileSync(file, stringify({ ...this.raw, ...changes }));
    const child = spawn(process.execPath, [CLI, 'worker', '--config', file], {
      // The harness's Redis, also when REDIS_URL names another one (it would override the config).
      env: {
        ...process.env,
        REDIS_URL: this.config.redisUrl,
        LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Waits until every entry is applied, every window closed (none mid-close), every correction and rollup relayed. */
  async settle(timeoutMs = 20_000): Promise<void> {
    await waitFor(
      async () => {
        for (let p = 0; p < this.config.partitions; p++) {
          const groups = (await this.redis.xinfo('GROUPS', this.keys.events(p))) as unknown[][];
          const g = groups.map((x) => toRecord(x)).find((x) => x.name === this.config.consumerGroup);
          if (!g || Number(g.pending) > 0 || (g.lag !== null && Number(g.lag) > 0)) return false;
          if ((await this.redis.zcard(this.keys.windowIndex(p))) > 0) return false;
          // A big window leaves the index when its close starts and is written over several calls.
          if ((await this.redis.hexists(this.keys.state(p), 'closing')) === 1) return false;
          if ((await this.redis.scard(this.keys.corrections(p))) > 0) return false;
          if ((await this.redis.xlen(this.keys.outbox(p))) > 0) return false;
        }
        return true;
      },
      { timeoutMs, intervalMs: 100, message: 'pipeline to settle' },
    );
  }

  /** All rollup jobs in the billing queue. */
  async rollups(): Promise<RollupJob[]> {
    const jobs = await this.queue.getJobs(
      ['waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized'],
      0,
      -1,
    );
    // A `rollups` batch job (rollups.batchJobs) carries a page of rollups.
    return jobs.flatMap((j) =>
      j.name === 'rollups' ? (j.data as { rollups: RollupJob[] }).rollups : [j.data as RollupJob],
    );
  }

  /** Latest revision per rollup identity, and identities that appear twice with the same revision. */
  async finalRollups(): Promise<{ latest: Map<string, RollupJob>; repeated: string[] }> {
    const latest = new Map<string, RollupJob>();
    const seen = new Set<string>();
    const repeated: string[] = [];
    for (const r of await this.rollups()) {
      const key = rollupKey(r.meter, r.subject, r.groupBy, Date.parse(r.windowStart));
      if (seen.has(`${key}#${r.revision}`)) repeated.push(`${key}#${r.revision}`);
      seen.add(`${key}#${r.revision}`);
      const prev = latest.get(key);
      if (!prev || prev.revision < r.revision) latest.set(key, r);
    }
    return { latest, repeated };
  }

  async deadLetters(partition = 0): Promise<DeadLetter[]> {
    const entries = (await this.redis.xrange(this.keys.deadLetter(partition), '-', '+')) as [
      string,
      string[],
    ][];
    return entries.map(([id, fields]) => ({ id, ...(toRecord(fields) as Omit<DeadLetter, 'id'>) }));
  }

  async close(): Promise<void> {
    for (const child of this.children) child.kill('SIGKILL');
    await Promise.all(this.workers.map((w) => w.close()));
    await Promise.all(this.producers.map((p) => p.close()));
    await this.queue.close();
    if (this.config.redis.cluster) this.redis.disconnect();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function toRecord(flat: unknown[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1] as string;
  return out;
}

/** Compares final rollups with the model: returns human-readable mismatches (empty when exact). */
export function diffTotals(
  latest: Map<string, RollupJob>,
  expected: Map<string, { value: string; eventCount: number }>,
): string[] {
  const problems: string[] = [];
  for (const [key, want] of expected) {
    const got = latest.get(key);
    if (!got) problems.push(`missing ${key} (want ${want.value})`);
    else if (got.valueDecimal !== want.value || got.eventCount !== want.eventCount) {
      problems.push(
        `${key}: got ${got.valueDecimal}/${got.eventCount} want ${want.value}/${want.eventCount}`,
      );
    }
  }
  for (const key of latest.keys()) if (!expected.has(key)) problems.push(`unexpected ${key}`);
  return problems;
}
