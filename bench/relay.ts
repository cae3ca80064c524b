/**
 * Scenario 7, the relay ceiling (issue 10): the partitions' outbox streams are filled with N rollups,
 * written as closeWindows.lua writes them (pages of up to 160 rollups of one window per entry), and one
 * Tally worker process (its relay, nothing else to do) moves them into both default rollup queues
 * (billing and entitlements). Reported: rollups per second from the first to the last job added
 * (BullMQ's job.timestamp, set as the relay adds each page), Redis and worker CPU per rollup, the
 * longest Redis call (SLOWLOG), and the same jobs added straight to the two queues with addBulk (no
 * outbox, no decoding) as the ceiling, measured in the same run. Then the same rollups again with
 * `rollups.batchJobs` (one job per outbox page).
 */
import { Queue } from 'bullmq';
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

/** One relay run: the outboxes drained by one worker process into both queues. */
export interface RelayRun {
  /** Rollups moved from the outboxes into every queue per second (worker ready → outboxes empty). */
  readonly rollupsPerSecond: number;
  readonly wallSeconds: number;
  readonly redisUsPerRollup: number;
  readonly workerUsPerRollup: number;
  /** Longest Redis call during the relay (SLOWLOG, ms; 0 when none took 5 ms). */
  readonly maxRedisCallMs: number;
  /** The slowest calls: [ms, command and first argument]. */
  readonly slowCalls: [number, string][];
}

/** A job per rollup (the default), with the ceiling and the `rollups.batchJobs` run beside it. */
export interface RelayScenario extends RelayRun {
  readonly rollups: number;
  readonly partitions: number;
  readonly queues: number;
  /** The same jobs added with addBulk straight to the queues (pages of 2,000, all queues at once). */
  readonly addBulkRollupsPerSecond: number;
  /** rollupsPerSecond ÷ addBulkRollupsPerSecond. */
  readonly ratioToAddBulk: number;
  /** The same rollups with `rollups.batchJobs`: one job per outbox page. */
  readonly batch: RelayRun & { readonly jobsPerQueue: number };
}

/** Rollups per outbox entry, as closeWindows.lua pages a big window (MAX_ROLLUPS_PER_CALL). */
const ROLLUPS_PER_ENTRY = 160;

/** A group, value, count and revision of one rollup, as closeWindows.lua puts them in a page entry. */
function pageItem(i: number): (string | number)[] {
  const group = JSON.stringify([`subject-${i % 500}`, `model-${i % 7}`, `region-${Math.floor(i / 3500)}`]);
  return [group, String(((i % 50) + 1) * 1_234_567), String((i % 50) + 1), 1];
}

/** Fills the outboxes with page entries: per partition and window, up to ROLLUPS_PER_ENTRY rollups each. */
async function fill(redis: Redis, prefix: string, n: number): Promise<void> {
  const windowStart = Math.floor(Date.now() / 1000) * 1000 - 60_000;
  const pages = new Map<string, { p: number; w: number; meter: number; items: (string | number)[] }>();
  const entries: { p: number; fields: string[] }[] = [];
  const flush = (page: { p: number; w: number; meter: number; items: (string | number)[] }) => {
    const meter = BENCH_METERS[page.meter] ?? BENCH_METERS[0];
    const ws = windowStart + 1000 * page.w;
    entries.push({
      p: page.p,
      fields: [
        'm',
        meter?.slug ?? 'tokens',
        'a',
        meter?.aggregation === 'COUNT' ? 'C' : 'S',
        'ws',
        String(ws),
        'we',
        String(ws + 1000),
        'n',
        String(page.items.length / 4),
        'rollups',
        JSON.stringify(page.items),
      ],
    });
    page.items = [];
  };
  for (let i = 0; i < n; i++) {
    const p = i % PARTITIONS;
    const w = Math.floor(i / PARTITIONS) % 30;
    const meter = Math.floor(i / (PARTITIONS * 30)) % BENCH_METERS.length;
    const key = `${p}.${w}.${meter}`;
    let page = pages.get(key);
    if (!page) pages.set(key, (page = { p, w, meter, items: [] }));
    page.items.push(...pageItem(i));
    if (page.items.length / 4 >= ROLLUPS_PER_ENTRY) flush(page);
  }
  for (const page of pages.values()) if (page.items.length > 0) flush(page);
  for (let i = 0; i < entries.length; i += PAGE) {
    const pipeline = redis.pipeline();
    for (const e of entries.slice(i, i + PAGE))
      pipeline.xadd(`${prefix}:{p${e.p}}:outbox:v2`, '*', ...e.fields);
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

/** Fills the outboxes, lets one worker process relay them, and measures it. */
async function relayRun(
  ctx: BenchContext,
  n: number,
  prefix: string,
  batchJobs: boolean,
): Promise<RelayRun & { jobsPerQueue: number }> {
  const { redis, url, params } = ctx;
  const queueNames = QUEUES.map((q) => `${prefix}-${q}`);
  const options = { url, prefix, partitions: PARTITIONS, batchSize: params.batchSize, windowSize: '1s' };
  const raw = { ...benchConfig(options), rollups: { queues: queueNames, batchJobs } };
  const config = writeBenchConfig(ctx.dir, options, raw);
  const connection = benchClient(url);
  const queues = queueNames.map((name) => new Queue(name, { connection }));
  const worker = new Child('worker-child', [config, '-', 'relay-0']);
  try {
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
        Array.from({ length: PARTITIONS }, (_, p) => redis.xlen(`${prefix}:{p${p}}:outbox:v2`)),
      );
      return lengths.every((l) => l === 0);
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
    // Every rollup in every queue, once (an outbox entry is deleted only after its jobs are in).
    const jobsPerQueue = await queues[0]!.count();
    for (const q of queues) {
      const jobs = batchJobs ? await q.getJobs(['wait'], 0, -1) : [];
      const rollups = batchJobs
        ? jobs.reduce((sum, j) => sum + (j.data as { rollups: unknown[] }).rollups.length, 0)
        : await q.count();
      if (rollups !== n)
        throw new Error(`CORRECTNESS CHECK FAILED (relay): ${rollups} rollups in ${q.name}, want ${n}`);
    }
    return {
      rollupsPerSecond: n / wallSeconds,
      wallSeconds,
      redisUsPerRollup: ((cpu1 - cpu0) / n) * 1e6,
      workerUsPerRollup: (stopped.cpuMs * 1000) / n,
      maxRedisCallMs: Math.max(0, ...slow.map((e) => Number(e[2]) / 1000)),
      slowCalls: slow
        .map((e): [number, string] => [Number(e[2]) / 1000, (e[3] ?? []).slice(0, 2).join(' ')])
        .sort((a, b) => b[0] - a[0])
        .slice(0, 5),
      jobsPerQueue,
    };
  } finally {
    await worker.kill();
    await Promise.all(queues.map((q) => q.close()));
    connection.disconnect();
  }
}

export async function runRelayScenario(ctx: BenchContext): Promise<RelayScenario> {
  const { redis, url, log } = ctx;
  const n = ctx.params.relayRollups;

  // The ceiling first: the same number of jobs, added straight to both queues.
  const connection = benchClient(url);
  const queues = QUEUES.map((q) => new Queue<RollupJob>(`ceiling-${q}`, { connection }));
  const jobOptions = outboxJobOptions(resolveConfig({ meters: [] }, {}));
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
  try {
    for (let i = 0; i < n; i += PAGE) {
      const page = Array.from({ length: Math.min(PAGE, n - i) }, (_, k) => job(i + k));
      await Promise.all(queues.map((q) => q.addBulk(page)));
    }
  } finally {
    await Promise.all(queues.map((q) => q.close()));
    connection.disconnect();
  }
  const addBulkRollupsPerSecond = n / ((Date.now() - c0) / 1000);
  await redis.flushall();

  log(`relay: ${fmt(n)} rollups in ${PARTITIONS} outboxes, one job per rollup`);
  const single = await relayRun(ctx, n, 'relay', false);
  log(
    `relay: ${fmt(single.rollupsPerSecond)} rollups/s into ${QUEUES.length} queues (addBulk alone ${fmt(addBulkRollupsPerSecond)}/s), ` +
      `Redis ${single.redisUsPerRollup.toFixed(1)} us/rollup, worker ${single.workerUsPerRollup.toFixed(1)} us/rollup`,
  );
  await redis.flushall();
  log(`relay: the same rollups with rollups.batchJobs (one job per outbox page)`);
  const batch = await relayRun(ctx, n, 'relaybatch', true);
  log(
    `relay: ${fmt(batch.rollupsPerSecond)} rollups/s in ${fmt(batch.jobsPerQueue)} jobs per queue, ` +
      `Redis ${batch.redisUsPerRollup.toFixed(1)} us/rollup, worker ${batch.workerUsPerRollup.toFixed(1)} us/rollup`,
  );
  await redis.flushall();
  return {
    rollups: n,
    partitions: PARTITIONS,
    queues: QUEUES.length,
    rollupsPerSecond: single.rollupsPerSecond,
    wallSeconds: single.wallSeconds,
    redisUsPerRollup: single.redisUsPerRollup,
    workerUsPerRollup: single.workerUsPerRollup,
    maxRedisCallMs: single.maxRedisCallMs,
    slowCalls: single.slowCalls,
    addBulkRollupsPerSecond,
    ratioToAddBulk: single.rollupsPerSecond / addBulkRollupsPerSecond,
    batch,
  };
}
