/**
 * Scenario 2, live end to end: a producer process (sendBatch at a target rate, events timed "now") and
 * a worker process run together on one partition, with 1 s windows, 200 ms grace and a 100 ms close
 * interval. Reported: offered and sustained events/s (the worker's processed events over the measured
 * interval, after a warm-up), how far behind the worker fell, and the latency from each window's close
 * point (end + grace) to its rollup job being in the BullMQ queue (job.timestamp, set by the relay as it
 * adds the job), p50/p99, for windows closing inside the measured interval. The sums of the final
 * rollups (highest revision per window and group) are checked against the producer's own model.
 */
import { Queue, type Job } from 'bullmq';
import type { RollupJob, WorkerStats } from '../src/index.js';
import { writeBenchConfig } from './config.js';
import { fmt, type BenchContext } from './drain.js';
import { BENCH_METERS, toMicro } from './events.js';
import { Child } from './procs.js';
import { takeProfile, type ProfileSummary } from './profile.js';
import { benchClient, groupProgress, redisCpuSeconds, waitForDrain } from './redis-stats.js';

const GRACE_MS = 200;

export interface Percentiles {
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

export interface LiveRun {
  readonly targetRate: number;
  readonly subjects: number;
  /** Run with rollups.batchJobs (a job per outbox page). */
  readonly batchJobs: boolean;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly offeredEventsPerSecond: number;
  readonly sustainedEventsPerSecond: number;
  /** sustained ÷ offered: 1 means the worker kept up. */
  readonly keptUp: number;
  /** Largest consumer-group lag seen (stream entries not yet read), and the time the worker needed
   * after the producer stopped to apply everything. */
  readonly maxLagEntries: number;
  readonly tailSeconds: number;
  readonly rollupsPerSecond: number;
  readonly corrections: number;
  /** Close point → job in the queue, ms, per rollup job (first revision). */
  readonly latencyMs: Percentiles;
  /** Close point → last job of the window in the queue, ms, per window. */
  readonly windowLatencyMs: Percentiles;
  /** [close point in s since the producer started, ms until the window's last job was queued], per window. */
  readonly windowTimeline: [number, number][];
  readonly redisCpuShare: number;
  readonly workerCpuShare: number;
  /** Longest Redis call while the producer ran and the worker drained (SLOWLOG, ms; 0 when none took 5 ms). */
  readonly maxRedisCallMs: number;
  /** The slowest calls: [ms, command]. */
  readonly slowCalls: [number, string][];
  readonly totalsExact: boolean;
  readonly workerStats: WorkerStats;
  readonly profile?: ProfileSummary;
}

export function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return {
    count: sorted.length,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    max: sorted[sorted.length - 1] ?? NaN,
  };
}

async function readJobs(queue: Queue<RollupJob>): Promise<Job<RollupJob>[]> {
  const jobs: Job<RollupJob>[] = [];
  for (let start = 0; ; start += 2000) {
    const page = await queue.getJobs(['wait'], start, start + 1999, true);
    jobs.push(...page.filter((j): j is Job<RollupJob> => j !== undefined && j !== null));
    if (page.length < 2000) return jobs;
  }
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`live: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface LiveScenario {
  /** One run per subject count (`--live-subjects`); the first is the headline. */
  readonly runs: LiveRun[];
}

export async function runLiveScenario(ctx: BenchContext): Promise<LiveScenario> {
  const runs: LiveRun[] = [];
  for (const [i, subjects] of ctx.params.liveSubjects.entries()) {
    await ctx.redis.flushall();
    runs.push(await runLive(ctx, subjects, ctx.params.profileLive && i === 0, false));
  }
  // The headline subject count again, with rollups.batchJobs: how far the relay, not the metering,
  // sets the latency.
  const [head] = ctx.params.liveSubjects;
  if (head !== undefined) {
    await ctx.redis.flushall();
    runs.push(await runLive(ctx, head, false, true));
  }
  return { runs };
}

async function runLive(
  ctx: BenchContext,
  subjects: number,
  profile: boolean,
  batchJobs: boolean,
): Promise<LiveRun> {
  const { redis, url, params, log } = ctx;
  const prefix = `live${subjects}${batchJobs ? 'b' : ''}`;
  const stream = `${prefix}:{p0}:events`;
  const config = writeBenchConfig(ctx.dir, {
    url,
    prefix,
    partitions: 1,
    batchSize: params.batchSize,
    windowSize: '1s',
    grace: `${GRACE_MS}ms`,
    idleTimeout: '1s',
    closeInterval: '100ms',
    batchJobs,
  });
  const totalMs = (params.liveSeconds + params.liveWarmupSeconds) * 1000;
  const execArgv = profile ? ['--cpu-prof', '--cpu-prof-dir', ctx.resultsDir] : [];
  const worker = new Child('worker-child', [config, '-', 'live-0'], { execArgv });
  const producer = new Child('producer-child', [
    JSON.stringify({
      url,
      prefix,
      partitions: 1,
      rate: params.liveRate,
      durationMs: totalMs,
      subjects,
      duplicateRate: params.duplicateRate,
      seed: params.seed + 1,
      tickMs: 50,
    }),
  ]);
  const connection = benchClient(url);
  const queue = new Queue<RollupJob>(`${prefix}-rollups`, { connection });
  try {
    await Promise.all([worker.receive('loaded', 30_000), producer.receive('loaded', 30_000)]);
    worker.send({ type: 'go' });
    await worker.receive('ready', 30_000);
    log(
      `live: producer at ${fmt(params.liveRate)} events/s for ${params.liveWarmupSeconds}+${params.liveSeconds} s, ${subjects} subjects, 1 s windows, grace ${GRACE_MS} ms`,
    );
    const cpu0 = await redisCpuSeconds(redis);
    await redis.config('SET', 'slowlog-log-slower-than', '5000');
    await redis.slowlog('RESET');
    producer.send({ type: 'go' });
    const done = producer.receive<{
      type: 'done';
      startMs: number;
      endMs: number;
      sent: number;
      totals: Record<string, { count: number; micro: string }>;
      behindTicks: number;
    }>('done', totalMs + 60_000);
    let finished = false;
    void done.then(
      () => (finished = true),
      () => (finished = true),
    );
    const samples: { t: number; events: number; lag: number }[] = [];
    let maxLag = 0;
    while (!finished) {
      const [stats, progress] = await Promise.all([
        worker.request<{ type: 'stats'; stats: WorkerStats; at: number }>({ type: 'stats' }, 'stats', 10_000),
        redis.xinfo('GROUPS', stream) as Promise<unknown[][]>,
      ]);
      const g = progress.find((x) => x[1] === 'tally') ?? [];
      const lag = Number(g[g.indexOf('lag') + 1] ?? 0);
      maxLag = Math.max(maxLag, lag);
      samples.push({ t: stats.at, events: stats.stats.events, lag });
      await new Promise((r) => setTimeout(r, 250));
    }
    const produced = await done;
    const cpu1 = await redisCpuSeconds(redis);
    const drained = await waitForDrain(redis, [stream], 'tally', { timeoutMs: 120_000 });
    const tailSeconds = Math.max(0, (drained.endMs - produced.endMs) / 1000);
    await until(
      async () => {
        const [zcard, scard, outbox, closing] = await Promise.all([
          redis.zcard(`${prefix}:{p0}:windows`),
          redis.scard(`${prefix}:{p0}:corrections`),
          redis.xlen(`${prefix}:{p0}:outbox:v2`),
          redis.hexists(`${prefix}:{p0}:state`, 'closing'),
        ]);
        return zcard === 0 && scard === 0 && outbox === 0 && closing === 0;
      },
      60_000,
      'every window to close and every rollup to be relayed',
    );
    const slow = ((await redis.slowlog('GET', 128)) as [number, number, number, string[]][])
      .map((e): [number, string] => [Number(e[2]) / 1000, (e[3] ?? []).slice(0, 1).join(' ')])
      .sort((a, b) => b[0] - a[0]);
    const stopped = await worker.request<{
      type: 'stopped';
      stats: WorkerStats;
      cpuMs: number;
      goMicros: number;
      stopMicros: number;
    }>({ type: 'stop' }, 'stopped', 30_000);
    await worker.exit;
    const profileSummary = profile
      ? takeProfile(ctx.resultsDir, worker.pid, 'worker-live', [stopped.goMicros, stopped.stopMicros])
      : undefined;
    const progress = await groupProgress(redis, [stream], 'tally');

    // Sustained rate over the measured interval (after the warm-up, until the producer stopped).
    const t0 = produced.startMs + params.liveWarmupSeconds * 1000;
    const first = samples.find((s) => s.t >= t0);
    const last = [...samples].reverse().find((s) => s.t <= produced.endMs);
    const sustained =
      first && last && last.t > first.t ? ((last.events - first.events) * 1000) / (last.t - first.t) : 0;
    const offered = produced.sent / ((produced.endMs - produced.startMs) / 1000);

    const jobs = await readJobs(queue);
    const latencies: number[] = [];
    const windowDone = new Map<string, { close: number; last: number }>();
    const finalByIdentity = new Map<string, { revision: number; data: RollupJob }>();
    let corrections = 0;
    // A batch job (rollups.batchJobs) carries a page of rollups, all added at its timestamp.
    const items = jobs.flatMap((job) =>
      job.name === 'rollups'
        ? (job.data as unknown as { rollups: RollupJob[] }).rollups.map((data) => ({
            data,
            timestamp: job.timestamp,
          }))
        : [{ data: job.data, timestamp: job.timestamp }],
    );
    for (const job of items) {
      const d = job.data;
      const identity = `${d.meter}|${d.subject}|${JSON.stringify(Object.entries(d.groupBy).sort())}|${d.windowStart}`;
      const prev = finalByIdentity.get(identity);
      if (!prev || d.revision > prev.revision)
        finalByIdentity.set(identity, { revision: d.revision, data: d });
      if (d.revision > 1) {
        corrections++;
        continue;
      }
      const close = Date.parse(d.windowEnd) + GRACE_MS;
      // Windows closing in the last 500 ms close by the idle timeout (no later events): left out.
      if (close < t0 || close > produced.endMs - 500) continue;
      latencies.push(job.timestamp - close);
      const w = `${d.meter}|${d.windowStart}`;
      const entry = windowDone.get(w) ?? { close, last: 0 };
      entry.last = Math.max(entry.last, job.timestamp);
      windowDone.set(w, entry);
    }
    const sums = new Map<string, { count: number; micro: bigint }>();
    for (const { data } of finalByIdentity.values()) {
      const s = sums.get(data.meter) ?? { count: 0, micro: 0n };
      s.count += data.eventCount;
      if (data.aggregation !== 'COUNT') s.micro += toMicro(data.valueDecimal);
      sums.set(data.meter, s);
    }
    const problems: string[] = [];
    for (const m of BENCH_METERS) {
      const want = produced.totals[m.slug] ?? { count: 0, micro: '0' };
      const got = sums.get(m.slug) ?? { count: 0, micro: 0n };
      if (got.count !== want.count || (m.aggregation !== 'COUNT' && got.micro.toString() !== want.micro)) {
        problems.push(
          `${m.slug}: want ${want.count} events, sum ${want.micro}; rollups say ${got.count} events, sum ${got.micro}`,
        );
      }
    }
    if (progress[0]?.pending !== 0) problems.push(`entries still pending: ${progress[0]?.pending}`);
    if (problems.length > 0)
      throw new Error(
        `CORRECTNESS CHECK FAILED (live): rollup sums differ from the producer's model:\n  ${problems.join('\n  ')}`,
      );

    const measuredSeconds = (produced.endMs - produced.startMs) / 1000;
    const result: LiveRun = {
      targetRate: params.liveRate,
      subjects,
      batchJobs,
      seconds: params.liveSeconds,
      warmupSeconds: params.liveWarmupSeconds,
      offeredEventsPerSecond: offered,
      sustainedEventsPerSecond: sustained,
      keptUp: offered > 0 ? sustained / offered : 0,
      maxLagEntries: maxLag,
      tailSeconds,
      rollupsPerSecond: (items.length - corrections) / measuredSeconds,
      corrections,
      latencyMs: percentiles(latencies),
      windowLatencyMs: percentiles([...windowDone.values()].map((w) => w.last - w.close)),
      windowTimeline: [...windowDone.values()]
        .sort((a, b) => a.close - b.close)
        .map((w): [number, number] => [
          Math.round((w.close - produced.startMs) / 100) / 10,
          w.last - w.close,
        ]),
      redisCpuShare: (cpu1 - cpu0) / measuredSeconds,
      workerCpuShare: stopped.cpuMs / 1000 / (measuredSeconds + tailSeconds),
      maxRedisCallMs: slow[0]?.[0] ?? 0,
      slowCalls: slow.slice(0, 3),
      totalsExact: true,
      workerStats: stopped.stats,
      ...(profileSummary ? { profile: profileSummary } : {}),
    };
    log(
      `live (${subjects} subjects${batchJobs ? ', batchJobs' : ''}): offered ${fmt(offered)}/s, sustained ${fmt(sustained)}/s, ${fmt(result.rollupsPerSecond)} rollups/s, ` +
        `latency p50 ${fmt(result.latencyMs.p50)} ms p99 ${fmt(result.latencyMs.p99)} ms, longest Redis call ${result.maxRedisCallMs.toFixed(1)} ms, rollup sums exact`,
    );
    return result;
  } finally {
    await Promise.all([worker.kill(), producer.kill()]);
    await queue.close();
    connection.disconnect();
  }
}
