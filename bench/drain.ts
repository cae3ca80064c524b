/**
 * Scenario 1, backlog drain. N events (3 meters, `subjects` subjects, 2 group-by dimensions, 5%
 * duplicates, event times spread over two past hours, HOUR windows) are preloaded, then:
 *
 *  single-event entries (one event per stream entry — the worst case for Tally):
 *    bare consumer (ceiling), Tally worker process, bare, Tally, ..., bare (`--drain-rounds` Tally
 *    runs), the bare consumer in a fresh consumer group on the same stream each time, Tally on a copy.
 *    ratioToCeiling = median Tally events/s ÷ median bare entries/s. Apples to apples: both read the
 *    same entries with the same COUNT; the bare one does nothing else.
 *  batch entries (100 events per entry, what `sendBatch` writes): Tally and the bare consumer again.
 *    The bare consumer then moves 100× fewer entries, so its events/s is not a ceiling for Tally's work;
 *    it is reported, not used as a ratio.
 *
 * After each Tally drain every (meter, window, group) total in Redis is compared with the model, and the
 * worker's counters with the model's event, unique and duplicate counts.
 */
import type { Redis } from 'ioredis';
import type { WorkerStats } from '../src/index.js';
import { writeBenchConfig } from './config.js';
import type { GeneratorOptions, Model } from './events.js';
import type { BenchParams } from './params.js';
import { preload, type PreloadResult } from './preload.js';
import { takeProfile, type ProfileSummary } from './profile.js';
import { checkWindowTotals, scanKeys, memoryUsageOf } from './redis-stats.js';
import { runBareDrain, runTallyDrain, type DrainResult, type TallyDrainResult } from './runners.js';

export const HOUR_MS = 3_600_000;

export interface BenchContext {
  readonly redis: Redis;
  readonly url: string;
  /** Temp dir for configs. */
  readonly dir: string;
  /** Where profiles go (bench/results). */
  readonly resultsDir: string;
  readonly params: BenchParams;
  readonly log: (line: string) => void;
}

/** The drain workload: times spread evenly over the two hours that ended an hour ago. */
export function drainGenerator(params: BenchParams, events: number, idPrefix = 'e'): GeneratorOptions {
  const t0 = Math.floor((Date.now() - 3 * HOUR_MS) / HOUR_MS) * HOUR_MS;
  return {
    subjects: params.subjects,
    duplicateRate: params.duplicateRate,
    seed: params.seed,
    timeOf: (i) => t0 + Math.floor((i * 2 * HOUR_MS) / events),
    idPrefix,
  };
}

export function drainTimeoutMs(events: number): number {
  return 120_000 + events * 2;
}

/** Throws unless Redis's window totals and the worker's counters agree with the model. */
export async function verifyDrain(
  redis: Redis,
  prefix: string,
  model: Model,
  stats: WorkerStats,
): Promise<{ cells: number; events: number }> {
  const check = await checkWindowTotals(redis, prefix, model);
  const problems = [...check.mismatches];
  const expect = (name: string, got: number, want: number) => {
    if (got !== want) problems.push(`worker ${name}: ${got}, model: ${want}`);
  };
  expect('events', stats.events, model.events);
  expect('applied', stats.applied, model.unique);
  expect('duplicates', stats.duplicates, model.duplicates);
  expect('deadLettered', stats.deadLettered, 0);
  if (problems.length > 0) {
    throw new Error(
      `CORRECTNESS CHECK FAILED for ${prefix}: totals differ from the model:\n  ${problems.join('\n  ')}`,
    );
  }
  return { cells: check.cells, events: check.events };
}

export interface DrainScenario {
  readonly events: number;
  readonly uniqueEvents: number;
  readonly duplicates: number;
  readonly preloadSingle: Omit<PreloadResult, 'model'>;
  readonly preloadBatch: Omit<PreloadResult, 'model'>;
  /** Every bare-consumer run on the single-event entries (interleaved with the Tally runs). */
  readonly bareSingle: DrainResult[];
  /** The first Tally run on single-event entries (its command statistics and CPU figures). */
  readonly tallySingle: TallyDrainResult;
  /** One more run on the same entries with rollups.batchJobs. */
  readonly tallyBatchJobs: TallyDrainResult;
  readonly tallyEventsPerSecondEachRun: number[];
  readonly ceilingEntriesPerSecondEachRun: number[];
  readonly bareBatch: DrainResult;
  readonly tallyBatch: TallyDrainResult;
  readonly check: { cells: number; events: number };
  /** Bytes of dedup buckets per remembered event after the single-entry drain (MEMORY USAGE). */
  readonly dedupBytesPerEventAtDrain: number;
  readonly profile?: ProfileSummary & { drainSeconds: number; eventsPerSecond: number };
  /** Median of the bare-consumer runs (entries/s = events/s on single-event entries). */
  readonly ceilingEventsPerSecond: number;
  /** Median of the Tally runs. */
  readonly tallyEventsPerSecond: number;
  readonly ratioToCeiling: number;
  readonly tallyBatchEventsPerSecond: number;
  /** Lua (applyBatch EVALSHA) microseconds per event and Redis CPU per event, single-entry drain. */
  readonly luaMicrosPerEvent: number;
}

const strip = ({ model: _model, ...rest }: PreloadResult) => rest;

export async function runDrainScenario(ctx: BenchContext): Promise<DrainScenario> {
  const { redis, url, params, log } = ctx;
  const n = params.events;
  const timeoutMs = drainTimeoutMs(n);
  const gen = drainGenerator(params, n);

  // --- single-event entries ---
  log(
    `drain: preloading ${n} events as single-event entries (pipelined XADD via sendBatch, eventsPerEntry 1)`,
  );
  const single = await preload({
    url,
    prefix: 'drain-src',
    partitions: 1,
    mode: 'single',
    events: n,
    generator: gen,
  });
  const source = 'drain-src:{p0}:events';
  // Interleaved on a shared, noisy machine: bare, Tally, bare, Tally, ..., bare. The bare consumer reads
  // the source stream in a fresh group each time; each Tally run gets its own copy of the stream (Redis
  // COPY) under a fresh prefix, so it starts with no dedup or window state.
  const bareSingle: DrainResult[] = [];
  const tallyRuns: TallyDrainResult[] = [];
  let check = { cells: 0, events: 0 };
  for (let round = 0; ; round++) {
    log(`drain: bare consumer (ceiling), run ${round + 1}`);
    const bare = await runBareDrain(redis, url, source, `bare-${round}`, params.batchSize, timeoutMs);
    bareSingle.push(bare);
    log(`drain:   ${fmt(n / bare.seconds)} entries/s`);
    if (round === params.drainRounds) break;
    const prefix = `drain1r${round}`;
    await redis.copy(source, `${prefix}:{p0}:events`);
    log(`drain: Tally worker process on the same entries, run ${round + 1}`);
    const configPath = writeBenchConfig(ctx.dir, {
      url,
      prefix,
      partitions: 1,
      batchSize: params.batchSize,
      windowSize: 'HOUR',
    });
    const tally = await runTallyDrain(redis, {
      configPath,
      streams: [`${prefix}:{p0}:events`],
      group: 'tally',
      replicas: ['-'],
      timeoutMs,
    });
    tallyRuns.push(tally);
    log(`drain:   ${fmt(n / tally.seconds)} events/s`);
    check = await verifyDrain(redis, prefix, single.model, tally.stats);
    log(
      `drain: correctness OK: ${check.cells} (meter, window, group) totals equal the model (${single.model.unique} unique events, ${single.model.duplicates} duplicates dropped)`,
    );
  }
  const tallySingle = tallyRuns[0] as TallyDrainResult;

  // The same entries once more with rollups.batchJobs: the drain also closes ~26k windows' groups,
  // and a BullMQ job per rollup costs more than applying the ~8 events behind it.
  log('drain: Tally on the same entries with rollups.batchJobs (a job per outbox page)');
  await redis.copy(source, 'drainbj:{p0}:events');
  const tallyBatchJobs = await runTallyDrain(redis, {
    configPath: writeBenchConfig(ctx.dir, {
      url,
      prefix: 'drainbj',
      partitions: 1,
      batchSize: params.batchSize,
      windowSize: 'HOUR',
      batchJobs: true,
    }),
    streams: ['drainbj:{p0}:events'],
    group: 'tally',
    replicas: ['-'],
    timeoutMs,
  });
  log(`drain:   ${fmt(n / tallyBatchJobs.seconds)} events/s`);
  await verifyDrain(redis, 'drainbj', single.model, tallyBatchJobs.stats);
  const dedupKeys = await scanKeys(redis, 'drain1r0:{p0}:d:*');
  const dedupBytesPerEventAtDrain = (await memoryUsageOf(redis, dedupKeys)) / single.model.unique;

  let profile: DrainScenario['profile'];
  if (params.profile) {
    log(
      'drain: profiling one more Tally drain of the same entries with node --cpu-prof (not used for the figures)',
    );
    await redis.copy(source, 'prof:{p0}:events');
    for (let r = 0; r <= params.drainRounds; r++)
      await redis.xgroup('DESTROY', 'prof:{p0}:events', `bare-${r}`);
    const configP = writeBenchConfig(ctx.dir, {
      url,
      prefix: 'prof',
      partitions: 1,
      batchSize: params.batchSize,
      windowSize: 'HOUR',
    });
    const profiled = await runTallyDrain(redis, {
      configPath: configP,
      streams: ['prof:{p0}:events'],
      group: 'tally',
      replicas: ['-'],
      timeoutMs,
      cpuProfileDir: ctx.resultsDir,
    });
    const summary = takeProfile(
      ctx.resultsDir,
      profiled.pids[0] ?? -1,
      'worker-drain',
      profiled.profileWindow,
    );
    if (summary)
      profile = { ...summary, drainSeconds: profiled.seconds, eventsPerSecond: n / profiled.seconds };
  }
  await redis.flushall();

  // --- batch entries ---
  log(
    `drain: preloading the same ${n} events as batch entries (pipelined XADD via sendBatch, 100 events per entry)`,
  );
  const batch = await preload({
    url,
    prefix: 'drain100',
    partitions: 1,
    mode: 'batch',
    events: n,
    generator: drainGenerator(params, n),
  });
  const stream100 = 'drain100:{p0}:events';
  const bareBatch = await runBareDrain(redis, url, stream100, 'bare', params.batchSize, timeoutMs);
  log(`drain:   bare consumer ${fmt(batch.entries / bareBatch.seconds)} entries/s`);
  const config100 = writeBenchConfig(ctx.dir, {
    url,
    prefix: 'drain100',
    partitions: 1,
    batchSize: params.batchSize,
    windowSize: 'HOUR',
  });
  const tallyBatch = await runTallyDrain(redis, {
    configPath: config100,
    streams: [stream100],
    group: 'tally',
    replicas: ['-'],
    timeoutMs,
  });
  log(`drain:   Tally ${fmt(n / tallyBatch.seconds)} events/s`);
  await verifyDrain(redis, 'drain100', batch.model, tallyBatch.stats);
  log('drain: correctness OK (batch entries)');
  await redis.flushall();

  const ceilingEventsPerSecond = median(bareSingle.map((b) => n / b.seconds));
  const tallyEventsPerSecond = median(tallyRuns.map((t) => n / t.seconds));
  const lua = tallySingle.commands.evalsha ?? { calls: 0, usec: 0 };
  return {
    events: n,
    uniqueEvents: single.model.unique,
    duplicates: single.model.duplicates,
    preloadSingle: strip(single),
    preloadBatch: strip(batch),
    bareSingle,
    tallySingle,
    tallyBatchJobs,
    tallyEventsPerSecondEachRun: tallyRuns.map((t) => n / t.seconds),
    ceilingEntriesPerSecondEachRun: bareSingle.map((b) => n / b.seconds),
    bareBatch,
    tallyBatch,
    check,
    dedupBytesPerEventAtDrain,
    ...(profile ? { profile } : {}),
    ceilingEventsPerSecond,
    tallyEventsPerSecond,
    ratioToCeiling: tallyEventsPerSecond / ceilingEventsPerSecond,
    tallyBatchEventsPerSecond: n / tallyBatch.seconds,
    luaMicrosPerEvent: lua.usec / n,
  };
}

export function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
