/**
 * Scenario 7, the relay ceiling (issue 10): the partitions' outbox streams are filled with N rollups,
 * written as closeWindows.lua writes them, and one Tally worker process (its relay, nothing else to do)
 * moves them into both default rollup queues (billing and entitlements). Reported: rollups per second
 * from the first to the last job added (BullMQ's job.timestamp, set as the relay adds each page), Redis
 * and worker CPU per rollup, the longest Redis call (SLOWLOG), and the same jobs added straight to the
 * two queues with addBulk (no outbox, no decoding) as the ceiling, measured in the same run.
 */
import { Queue, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { resolveConfig, ROLLUP_JOB_NAME, type RollupJob } from '../src/index.js';
import { outboxJobOptions } from '../src/rollups/index.js';
import { benchConfig, writeBenchConfig } from './config.js';
import { fmt, type BenchContext } from './drain.js';
import { BENCH_METERS } from './events.js';
import { Child } from './procs.js';
import { benchClient, redisCpuSeconds } from './redis-stats.js';

const PARTITIONS = 4;
const QUEUES = ['billing', 'entitlements'];
/** Outbox entries per pipeline while filling, and jobs per addBulk of the ceiling run. */
const PAGE = 2000;

export interface RelayScenario {
  readonly rollups: number;
  readonly partitions: number;
  readonly queues: number;
  /** Rollups moved from the outboxes into every queue per second, first to last job added. */
  readonly rollupsPerSecond: number;
  /** Worker ready → every outbox empty and every job in its queue. */
  readonly wallSeconds: number;
  readonly redisUsPerRollup: number;
  readonly workerUsPerRollup: number;
  /** Longest Redis call during the relay (SLOWLOG, ms; 0 when none took 5 ms). */
  readonly maxRedisCallMs: number;
  /** The slowest calls: [ms, command and first argument]. */
  readonly slowCalls: [number, string][];
  /** The same jobs added with addBulk straight to the queues (pages of 2,000, all queues at once). */
  readonly addBulkRollupsPerSecond: number;
  /** rollupsPerSecond ÷ addBulkRollupsPerSecond. */
  readonly ratioToAddBulk: number;
}

/** One rollup as closeWindows.lua writes it to the outbox (meter m, aggregation code a, window, group, value, count, revision). */
function outboxFields(i: number, windowStart: number): string[] {
  const meter = BENCH_METERS[i % BENCH_METERS.length] ?? BENCH_METERS[0];
  const code = meter?.aggregation === 'COUNT' ? 'C' : 'S';
  const group = JSON.stringify([`subject-${i % 500}`, `model-${i % 7}`, `region-${Math.floor(i / 3500)}`]);
  const count = String((i % 50) + 1);
  return [
    'm',
    meter?.slug ?? 'tokens',
    'a',
    code,
    'ws',
    String(windowStart),
    'we',
    String(windowStart + 1000),
    'g',
    group,
    'v',
    String(((i % 50) + 1) * 1_234_567),
    'c',
    count,
    'r',
    '1',
  ];
}

async function jobSpan(queues: Queue[]): Promise<{ count: number; first: number; last: number }> {
  let count = 0;
  let first = Infinity;
  let last = -Infinity;
  for (const q of queues) {
    count += await q.count();
    const [oldest] = (await q.getJobs(['wait'], 0, 0, true)) as (Job | undefined)[];
    const [newest] = (await q.getJobs(['wait'], 0, 0, false)) as (Job | undefined)[];
    if (oldest) first = Math.min(first, oldest.timestamp);
    if (newest) last = Math.max(last, newest.timestamp);
  }
  return { count, first, last };
}

async function fill(redis: Redis, prefix: string, n: number): Promise<void> {
  const windowStart = Math.floor(Date.now() / 1000) * 1000 - 60_000;
  for (let i = 0; i < n; i += PAGE) {
    const pipeline = redis.pipeline();
    for (let j = i; j < Math.min(n, i + PAGE); j++) {
      pipeline.xadd(
        `${prefix}:{p${j % PARTITIONS}}:outbox`,
        '*',
        ...outboxFields(j, windowStart + 1000 * (j % 30)),
      );
    }
    await pipeline.exec();
  }
}

async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('relay: timed out waiting for the outboxes to drain');
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function runRelayScenario(ctx: BenchContext): Promise<RelayScenario> {
  const { redis, url, params, log } = ctx;
  const n = params.relayRollups;
  const prefix = 'relay';
  const queueNames = QUEUES.map((q) => `${prefix}-${q}`);
  const raw = {
    ...benchConfig({ url, prefix, partitions: PARTITIONS, batchSize: params.batchSize, windowSize: '1s' }),
    rollups: { queues: queueNames },
  };
  const config = writeBenchConfig(
    ctx.dir,
    { url, prefix, partitions: PARTITIONS, batchSize: params.batchSize, windowSize: '1s' },
    raw,
  );
  const connection = benchClient(url);
  const queues = queueNames.map((name) => new Queue<RollupJob>(name, { connection }));
  const worker = new Child('worker-child', [config, '-', 'relay-0']);
  try {
    // The ceiling first: the same number of jobs, added straight to both queues.
    const jobOptions = outboxJobOptions(resolveConfig(raw, {}));
    const job = (i: number) => ({
      name: ROLLUP_JOB_NAME,
      data: {
        version: 1,
        meter: 'tokens',
        subject: `subject-${i % 500}`,
        revision: 1,
        i,
      } as unknown as RollupJob,
      opts: { ...jobOptions, jobId: `tokens.${i}.ceiling.r1` },
    });
    const c0 = Date.now();
    for (let i = 0; i < n; i += PAGE) {
      const page = Array.from({ length: Math.min(PAGE, n - i) }, (_, k) => job(i + k));
      await Promise.all(queues.map((q) => q.addBulk(page)));
    }
    const addBulkRollupsPerSecond = n / ((Date.now() - c0) / 1000);
    await redis.flushall();

    log(`relay: filling ${PARTITIONS} outbox streams with ${fmt(n)} rollups`);
    await fill(redis, prefix, n);
    await worker.receive('loaded', 30_000);
    await redis.config('SET', 'slowlog-log-slower-than', '5000');
    await redis.slowlog('RESET');
    const cpu0 = await redisCpuSeconds(redis);
    worker.send({ type: 'go' });
    await worker.receive('ready', 30_000);
    const ready = Date.now();
    await until(async () => {
      const lengths = await Promise.all(
        Array.from({ length: PARTITIONS }, (_, p) => redis.xlen(`${prefix}:{p${p}}:outbox`)),
      );
      if (lengths.some((l) => l > 0)) return false;
      return (await Promise.all(queues.map((q) => q.count()))).every((c) => c === n);
    }, 300_000);
    const wallSeconds = (Date.now() - ready) / 1000;
    const cpu1 = await redisCpuSeconds(redis);
    const slow = (await redis.slowlog('GET', 128)) as [number, number, number, string[]][];
    const stopped = await worker.request<{ type: 'stopped'; cpuMs: number }>(
      { type: 'stop' },
      'stopped',
      30_000,
    );
    await worker.exit;
    const span = await jobSpan(queues);
    if (span.count !== n * queues.length)
      throw new Error(`CORRECTNESS CHECK FAILED (relay): ${span.count} jobs, want ${n * queues.length}`);
    // The first page's jobs carry its timestamp: the span covers n - one page per partition.
    const rollupsPerSecond = (n - PAGE) / Math.max(0.001, (span.last - span.first) / 1000);
    const result: RelayScenario = {
      rollups: n,
      partitions: PARTITIONS,
      queues: queues.length,
      rollupsPerSecond,
      wallSeconds,
      redisUsPerRollup: ((cpu1 - cpu0) / n) * 1e6,
      workerUsPerRollup: (stopped.cpuMs * 1000) / n,
      maxRedisCallMs: Math.max(0, ...slow.map((e) => Number(e[2]) / 1000)),
      slowCalls: slow
        .map((e): [number, string] => [Number(e[2]) / 1000, (e[3] ?? []).slice(0, 2).join(' ')])
        .sort((a, b) => b[0] - a[0])
        .slice(0, 5),
      addBulkRollupsPerSecond,
      ratioToAddBulk: rollupsPerSecond / addBulkRollupsPerSecond,
    };
    log(
      `relay: ${fmt(rollupsPerSecond)} rollups/s into ${queues.length} queues (addBulk alone ${fmt(addBulkRollupsPerSecond)}/s), ` +
        `Redis ${result.redisUsPerRollup.toFixed(1)} us/rollup, worker ${result.workerUsPerRollup.toFixed(1)} us/rollup`,
    );
    return result;
  } finally {
    await worker.kill();
    await Promise.all(queues.map((q) => q.close()));
    connection.disconnect();
  }
}
