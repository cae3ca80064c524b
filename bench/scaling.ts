/**
 * Scenario 3, scaling: the same backlog (single-event entries over 4 partitions) drained by 1, 2 and 4
 * worker processes. The backlog is written once and copied (Redis COPY) to a fresh prefix per replica
 * count, so each run starts from the same entries with no dedup or window state. Replicas get static
 * partition sets (`tally worker --partitions`: 1 → 0,1,2,3; 2 → 0,1 + 2,3; 4 → one each), so lease
 * rebalancing time (a few lease ticks) is not part of the figure. Totals are checked after every run.
 * With `--scaling-rounds 2` (the default) the counts run 1,2,4 then 4,2,1 and each figure is a mean.
 */
import { writeBenchConfig } from './config.js';
import { drainGenerator, drainTimeoutMs, fmt, verifyDrain, type BenchContext } from './drain.js';
import { preload } from './preload.js';
import { scanKeys } from './redis-stats.js';
import { runTallyDrain } from './runners.js';

const PARTITIONS = 4;

export interface ScalingRun {
  readonly replicas: number;
  readonly seconds: number;
  /** Mean over the rounds. */
  readonly eventsPerSecond: number;
  readonly eventsPerSecondEachRun: number[];
  /** events/s relative to the 1-replica run. */
  readonly speedup: number;
  readonly redisCpuShare: number;
  readonly workerCpuSeconds: number;
  readonly totalsExact: boolean;
}

export interface ScalingScenario {
  readonly events: number;
  readonly partitions: number;
  readonly runs: ScalingRun[];
}

function partitionSets(replicas: number): string[] {
  return Array.from({ length: replicas }, (_, r) =>
    Array.from({ length: PARTITIONS }, (_, p) => p)
      .filter((p) => p % replicas === r || replicas > PARTITIONS)
      .join(','),
  ).map((set) => set || '-');
}

export async function runScalingScenario(ctx: BenchContext): Promise<ScalingScenario> {
  const { redis, url, params, log } = ctx;
  const n = params.scalingEvents;
  log(`scaling: preloading ${n} events as single-event entries over ${PARTITIONS} partitions`);
  const source = await preload({
    url,
    prefix: 'scale-src',
    partitions: PARTITIONS,
    mode: 'single',
    events: n,
    generator: drainGenerator(params, n, 's'),
  });
  // Replica counts in order, then in reverse (1,2,4,4,2,1 for 2 rounds): load drifting on a shared
  // machine then biases no replica count; each count's figure is the mean of its runs.
  const order = Array.from({ length: params.scalingRounds }, (_, r) =>
    r % 2 === 0 ? params.replicas : [...params.replicas].reverse(),
  ).flat();
  const measured = new Map<number, { seconds: number[]; redisCpu: number[]; workerCpu: number[] }>();
  for (const [i, replicas] of order.entries()) {
    const prefix = `scale${i}r${replicas}`;
    const streams = Array.from({ length: PARTITIONS }, (_, p) => `${prefix}:{p${p}}:events`);
    for (let p = 0; p < PARTITIONS; p++) await redis.copy(`scale-src:{p${p}}:events`, streams[p] as string);
    const config = writeBenchConfig(ctx.dir, {
      url,
      prefix,
      partitions: PARTITIONS,
      batchSize: params.batchSize,
      windowSize: 'HOUR',
    });
    const result = await runTallyDrain(redis, {
      configPath: config,
      streams,
      group: 'tally',
      replicas: partitionSets(replicas),
      timeoutMs: drainTimeoutMs(n),
    });
    await verifyDrain(redis, prefix, source.model, result.stats);
    const m = measured.get(replicas) ?? { seconds: [], redisCpu: [], workerCpu: [] };
    m.seconds.push(result.seconds);
    m.redisCpu.push(result.redisCpuSeconds / result.seconds);
    m.workerCpu.push(result.consumerCpuSeconds);
    measured.set(replicas, m);
    log(`scaling: ${replicas} replica(s): ${fmt(n / result.seconds)} events/s, totals exact`);
    const keys = await scanKeys(redis, `${prefix}:*`);
    for (let k = 0; k < keys.length; k += 1000) await redis.unlink(...keys.slice(k, k + 1000));
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const runs: ScalingRun[] = [];
  for (const replicas of params.replicas) {
    const m = measured.get(replicas);
    if (!m) continue;
    const eventsPerSecond = mean(m.seconds.map((sec) => n / sec));
    runs.push({
      replicas,
      seconds: mean(m.seconds),
      eventsPerSecond,
      eventsPerSecondEachRun: m.seconds.map((sec) => n / sec),
      speedup: eventsPerSecond / (runs[0]?.eventsPerSecond ?? eventsPerSecond),
      redisCpuShare: mean(m.redisCpu),
      workerCpuSeconds: mean(m.workerCpu),
      totalsExact: true,
    });
  }
  return { events: n, partitions: PARTITIONS, runs };
}
