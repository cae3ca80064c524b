/**
 * Drains a preloaded backlog with Tally worker processes or with the bare consumer, timed the same
 * way for both (consumer-group polling, see waitForDrain), with Redis CPU and command statistics over
 * the drain.
 */
import type { Redis } from 'ioredis';
import type { WorkerStats } from '../src/index.js';
import { Child } from './procs.js';
import {
  commandStats,
  redisCpuSeconds,
  waitForDrain,
  type CommandStat,
  type DrainTiming,
} from './redis-stats.js';

export interface DrainResult extends DrainTiming {
  /** Redis server CPU seconds spent during the drain (from INFO cpu). */
  readonly redisCpuSeconds: number;
  /** CPU seconds of the consumer process(es), from start to stop. */
  readonly consumerCpuSeconds: number;
  /** INFO commandstats accumulated during the drain (reset before it). */
  readonly commands: Record<string, CommandStat>;
  /** SLOWLOG entries over 5 ms during the drain: [duration µs, command]. */
  readonly slow: { count: number; maxMicros: number; top: [number, string][] };
}

export interface TallyDrainResult extends DrainResult {
  readonly stats: WorkerStats;
  /** First replica's go..stop window in CLOCK_MONOTONIC µs (for the CPU profile summary). */
  readonly profileWindow: [number, number];
  readonly pids: number[];
}

async function measure<T>(
  redis: Redis,
  run: () => Promise<T>,
): Promise<{
  value: T;
  redisCpuSeconds: number;
  commands: Record<string, CommandStat>;
  slow: DrainResult['slow'];
}> {
  await redis.config('SET', 'slowlog-log-slower-than', '5000');
  await redis.slowlog('RESET');
  await redis.config('RESETSTAT');
  const cpu0 = await redisCpuSeconds(redis);
  const value = await run();
  const cpu1 = await redisCpuSeconds(redis);
  const commands = await commandStats(redis);
  const log = (await redis.slowlog('GET', 128)) as [number, number, number, string[]][];
  const top = log
    .map((e): [number, string] => [Number(e[2]), (e[3] ?? []).slice(0, 1).join(' ')])
    .sort((a, b) => b[0] - a[0]);
  return {
    value,
    redisCpuSeconds: cpu1 - cpu0,
    commands,
    slow: { count: log.length, maxMicros: top[0]?.[0] ?? 0, top: top.slice(0, 3) },
  };
}

function addStats(a: WorkerStats, b: WorkerStats): WorkerStats {
  const out = { ...a };
  for (const k of Object.keys(b) as (keyof WorkerStats)[]) out[k] = (a[k] ?? 0) + b[k];
  return out;
}

export interface TallyDrainOptions {
  readonly configPath: string;
  readonly streams: readonly string[];
  readonly group: string;
  /** One entry per replica: its partitions as a comma list, or '-' for all of them. */
  readonly replicas: readonly string[];
  readonly timeoutMs: number;
  /** Run the worker under `node --cpu-prof`, writing the profile into this directory. */
  readonly cpuProfileDir?: string;
}

/** Starts the replicas together, waits until every entry is applied and acked, stops them. */
export async function runTallyDrain(redis: Redis, o: TallyDrainOptions): Promise<TallyDrainResult> {
  const execArgv = o.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', o.cpuProfileDir] : [];
  const children = o.replicas.map(
    (partitions, i) => new Child('worker-child', [o.configPath, partitions, `bench-${i}`], { execArgv }),
  );
  try {
    await Promise.all(children.map((c) => c.receive('loaded', 30_000)));
    const { value: timing, ...rest } = await measure(redis, async () => {
      for (const c of children) c.send({ type: 'go' });
      return waitForDrain(redis, o.streams, o.group, { timeoutMs: o.timeoutMs });
    });
    const stopped = await Promise.all(
      children.map((c) =>
        c.request<{
          type: 'stopped';
          stats: WorkerStats;
          cpuMs: number;
          goMicros: number;
          stopMicros: number;
        }>({ type: 'stop' }, 'stopped', 60_000),
      ),
    );
    await Promise.all(children.map((c) => c.exit));
    const stats = stopped.map((s) => s.stats).reduce(addStats);
    const consumerCpuSeconds = stopped.reduce((sum, s) => sum + s.cpuMs, 0) / 1000;
    const first = stopped[0];
    const profileWindow: [number, number] = [first?.goMicros ?? 0, first?.stopMicros ?? 0];
    return { ...timing, ...rest, stats, consumerCpuSeconds, profileWindow, pids: children.map((c) => c.pid) };
  } finally {
    await Promise.all(children.map((c) => c.kill()));
  }
}

/** The ceiling: the bare consumer on the same stream, in its own consumer group (created at 0). */
export async function runBareDrain(
  redis: Redis,
  url: string,
  stream: string,
  group: string,
  batchSize: number,
  timeoutMs: number,
): Promise<DrainResult> {
  await redis.xgroup('CREATE', stream, group, '0');
  const child = new Child('bare-consumer-child', [url, stream, group, String(batchSize)]);
  try {
    await child.receive('loaded', 30_000);
    const { value: timing, ...rest } = await measure(redis, async () => {
      child.send({ type: 'go' });
      return waitForDrain(redis, [stream], group, { timeoutMs });
    });
    const stopped = await child.request<{ type: 'stopped'; cpuMs: number }>(
      { type: 'stop' },
      'stopped',
      30_000,
    );
    await child.exit;
    return { ...timing, ...rest, consumerCpuSeconds: stopped.cpuMs / 1000 };
  } finally {
    await child.kill();
  }
}
