/**
 * Scenario 4, the BullMQ alternative: the first M events of the drain's workload (same generator, same
 * seed, same times) as one BullMQ job each, enqueued with `addBulk` (1000 jobs per call, completed jobs
 * removed), then drained by one BullMQ worker process (concurrency 100) doing SET NX EX + HINCRBY per
 * event. The same M events are then drained by Tally as single-event entries (its worst case), and
 * ratioToBullmq = Tally events/s ÷ BullMQ events/s. Both totals are checked against the model.
 */
import { Queue } from 'bullmq';
import type { UsageEvent } from '../src/index.js';
import { writeBenchConfig } from './config.js';
import { drainGenerator, drainTimeoutMs, fmt, HOUR_MS, verifyDrain, type BenchContext } from './drain.js';
import { BENCH_METERS, EventGenerator, Model } from './events.js';
import { preload } from './preload.js';
import { Child } from './procs.js';
import { runTallyDrain } from './runners.js';
import { benchClient, scanKeys } from './redis-stats.js';

export interface BullmqScenario {
  /** Tally draining the same m events as single-event entries, in this run. */
  readonly tallySeconds: number;
  readonly tallyEventsPerSecond: number;
  /** Tally events/s ÷ BullMQ events/s on the same events. */
  readonly ratioToBullmq: number;
  readonly events: number;
  readonly concurrency: number;
  readonly enqueueEventsPerSecond: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  readonly workerCpuSeconds: number;
  readonly duplicatesDropped: number;
  readonly totalsExact: boolean;
}

const QUEUE = 'per-event';

export async function runBullmqScenario(ctx: BenchContext): Promise<BullmqScenario> {
  const { redis, url, params, log } = ctx;
  const m = Math.min(params.bullmqEvents, params.events);
  // The same events as the drain: the first m of its sequence (times spread as for `events`).
  const generator = new EventGenerator(drainGenerator(params, params.events));
  const model = new Model(HOUR_MS);
  const connection = benchClient(url);
  const queue = new Queue<UsageEvent>(QUEUE, { connection });
  let child: Child | undefined;
  try {
    log(`bullmq: enqueueing ${m} events as one job each (addBulk of 1000)`);
    let enqueueMs = 0;
    for (let done = 0; done < m;) {
      const k = Math.min(1000, m - done);
      const { events } = generator.take(k);
      for (const e of events) model.add(e);
      const started = performance.now();
      await queue.addBulk(
        events.map((data) => ({ name: 'usage', data, opts: { removeOnComplete: true, removeOnFail: 1000 } })),
      );
      enqueueMs += performance.now() - started;
      done += k;
    }
    child = new Child('bullmq-child', [
      url,
      QUEUE,
      String(m),
      String(params.bullmqConcurrency),
      '2764800',
      String(HOUR_MS),
    ]);
    await child.receive('loaded', 30_000);
    const done = child.receive<{
      type: 'done';
      firstMs: number;
      lastMs: number;
      processed: number;
      duplicates: number;
      cpuMs: number;
    }>('done', 120_000 + m * 5);
    const failed = child.receive<{ type: 'failed'; error: string }>('failed', 120_000 + m * 5).then(
      (f) => Promise.reject(new Error(`a BullMQ job failed: ${f.error}`)),
      () => new Promise<never>(() => undefined),
    );
    child.send({ type: 'go' });
    const result = await Promise.race([done, failed]);
    child.send({ type: 'stop' });
    await Promise.race([child.exit, new Promise((r) => setTimeout(r, 5000))]);
    const seconds = (result.lastMs - result.firstMs) / 1000;

    // Correctness: every per-window hash field equals the model's cell.
    const problems: string[] = [];
    const actual = new Map<string, bigint>();
    for (const key of await scanKeys(redis, 'agg:*')) {
      const [, meter = '', start = '0'] = key.split(':');
      for (const [group, v] of Object.entries(await redis.hgetall(key)))
        actual.set(Model.cellKey(meter, Number(start), group), BigInt(v));
    }
    for (const [key, cell] of model.cells) {
      const meter = BENCH_METERS.find((bm) => bm.slug === key.split('\u0000')[0]);
      const want = meter?.aggregation === 'COUNT' ? BigInt(cell.count) : cell.micro;
      if (actual.get(key) !== want) problems.push(`${key}: want ${want}, got ${actual.get(key)}`);
    }
    if (actual.size !== model.cells.size)
      problems.push(`cells: want ${model.cells.size}, got ${actual.size}`);
    if (result.duplicates !== model.duplicates)
      problems.push(`duplicates: want ${model.duplicates}, got ${result.duplicates}`);
    if (problems.length > 0)
      throw new Error(
        `CORRECTNESS CHECK FAILED for the BullMQ alternative:\n  ${problems.slice(0, 10).join('\n  ')}`,
      );
    log(
      `bullmq: ${fmt(m / seconds)} events/s (worker concurrency ${params.bullmqConcurrency}), totals exact`,
    );

    // Tally on exactly these m events, as single-event entries, in the same run.
    const same = await preload({
      url,
      prefix: 'same',
      partitions: 1,
      mode: 'single',
      events: m,
      generator: drainGenerator(params, params.events),
    });
    const config = writeBenchConfig(ctx.dir, {
      url,
      prefix: 'same',
      partitions: 1,
      batchSize: params.batchSize,
      windowSize: 'HOUR',
    });
    const tally = await runTallyDrain(redis, {
      configPath: config,
      streams: ['same:{p0}:events'],
      group: 'tally',
      replicas: ['-'],
      timeoutMs: drainTimeoutMs(m),
    });
    await verifyDrain(redis, 'same', same.model, tally.stats);
    log(
      `bullmq: Tally on the same ${m} events (single-event entries): ${fmt(m / tally.seconds)} events/s, totals exact`,
    );
    return {
      tallySeconds: tally.seconds,
      tallyEventsPerSecond: m / tally.seconds,
      ratioToBullmq: m / tally.seconds / (m / seconds),
      events: m,
      concurrency: params.bullmqConcurrency,
      enqueueEventsPerSecond: m / (enqueueMs / 1000),
      seconds,
      eventsPerSecond: m / seconds,
      workerCpuSeconds: result.cpuMs / 1000,
      duplicatesDropped: result.duplicates,
      totalsExact: true,
    };
  } finally {
    await child?.kill();
    await queue.close();
    connection.disconnect();
  }
}
