import { Queue, type JobsOptions } from 'bullmq';
import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { aggregationOfCode, divideScaled, formatScaled, type MeterIndex } from '../meters/index.js';
import { RELAY_GROUP, TallyKeys, type RedisClient } from '../redis/index.js';
import { instruments } from '../telemetry/index.js';
import { formatIsoUtc } from '../windows/index.js';
import { rollupJobId } from './job-id.js';
import { OutboxReader, outboxJobOptions } from './outbox.js';
import { ROLLUP_BATCH_JOB_NAME, ROLLUP_JOB_NAME, type RollupBatchJob, type RollupJob } from './schema.js';

/**
 * Jobs per addBulk. BullMQ's addBulk is one MULTI/EXEC of an add-job script per job, which Redis runs
 * as one call: at ~14 us per job (SLOWLOG, 2-core reference machine) a page of 2,000 held Redis for
 * ~28 ms. Pages of 250 keep each call near ~3.5 ms (issue 10's 5 ms ceiling), and measured faster too
 * (BullMQ addBulk alone: ~15.8k jobs/s in pages of 250 vs ~12.2k in pages of 2,000).
 */
const JOBS_PER_ADD = 250;
/**
 * Rollups per read (entries per read: this over the rollups an entry lately held, since a page entry
 * of a window's close holds up to 160). XREADGROUP of 2,000 rollups and the XDEL of their ids each
 * held Redis for 13-20 ms (SLOWLOG, relay bench scenario); 250 keeps both near 2 ms, one addBulk page
 * per queue.
 */
const OUTBOX_READ_COUNT = 250;

/** One rollup as job data, from its window, group and stored count and value (as closeWindows writes them). */
function rollupOf(
  meters: MeterIndex,
  partition: number,
  f: { m: string; a: string; ws: string; we: string },
  group: string,
  raw: string,
  count: string,
  revision: number,
): RollupJob {
  const aggregation = aggregationOfCode(f.a) ?? 'SUM';
  let valueDecimal: string;
  switch (aggregation) {
    case 'COUNT':
    case 'UNIQUE_COUNT':
      valueDecimal = aggregation === 'COUNT' ? count : raw;
      break;
    case 'AVG':
      valueDecimal = divideScaled(raw, BigInt(count));
      break;
    default:
      valueDecimal = formatScaled(raw);
  }
  const [subject, ...values] = JSON.parse(group) as [string, ...(string | null)[]];
  const keys = meters.bySlug(f.m)?.groupKeys ?? [];
  const groupBy: Record<string, string | null> = {};
  values.forEach((v, i) => {
    groupBy[keys[i] ?? `group${i}`] = v;
  });
  return {
    version: 1,
    meter: f.m,
    aggregation,
    subject,
    groupBy,
    windowStart: formatIsoUtc(Number(f.ws)),
    windowEnd: formatIsoUtc(Number(f.we)),
    value: Number(valueDecimal),
    valueDecimal,
    eventCount: Number(count),
    revision,
    partition,
  };
}

function fieldsOf(fields: readonly string[]): Record<string, string> {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i] as string] = fields[i + 1] as string;
  return f;
}

/** Decodes a one-rollup outbox entry (a correction, written by closeWindows.lua) into rollup job data. */
export function outboxToRollup(fields: readonly string[], meters: MeterIndex, partition: number): RollupJob {
  const f = fieldsOf(fields);
  const window = { m: f.m ?? '', a: f.a ?? '', ws: f.ws ?? '0', we: f.we ?? '0' };
  return rollupOf(meters, partition, window, f.g ?? '[""]', f.v ?? '0', f.c ?? '0', Number(f.r));
}

/** A rollup of an outbox entry, with its group key as stored (the job id hashes it). */
export interface OutboxRollup {
  readonly data: RollupJob;
  readonly group: string;
}

/**
 * Decodes any outbox entry written by closeWindows.lua: a page of one window's close (`rollups`: a JSON
 * array of group, value, count, revision) or a single rollup (a correction).
 */
export function outboxToRollups(
  fields: readonly string[],
  meters: MeterIndex,
  partition: number,
): OutboxRollup[] {
  const f = fieldsOf(fields);
  if (f.rollups === undefined) {
    return [{ data: outboxToRollup(fields, meters, partition), group: f.g ?? '[""]' }];
  }
  const window = { m: f.m ?? '', a: f.a ?? '', ws: f.ws ?? '0', we: f.we ?? '0' };
  const page = JSON.parse(f.rollups) as (string | number)[];
  const out: OutboxRollup[] = [];
  for (let i = 0; i + 3 < page.length; i += 4) {
    const group = String(page[i]);
    out.push({
      data: rollupOf(
        meters,
        partition,
        window,
        group,
        String(page[i + 1]),
        String(page[i + 2]),
        Number(page[i + 3]),
      ),
      group,
    });
  }
  return out;
}

/**
 * Moves rollups from each partition's outbox stream to the BullMQ queues. The outbox is read through a
 * consumer group, so an entry is acknowledged only after every queue accepted its job; a relay that
 * dies in between leaves it pending, and another relay re-adds it under the same deterministic job id,
 * which BullMQ ignores while the first job is still stored (`rollups.keepCompleted`).
 */
export class RollupRelay {
  private readonly queues: Queue[];
  private readonly jobOptions: JobsOptions;
  private readonly outbox: OutboxReader;
  /** The outbox of versions before pages, relayed while it exists (entries of not yet upgraded workers). */
  private readonly legacy: OutboxReader;
  private readonly legacyKey: (partition: number) => string;
  private readonly graceMs: number;
  private readonly batchJobs: boolean;
  /** Rollups per outbox entry lately (moving average): reads and pages are sized in rollups. */
  private rollupsPerEntry = 1;

  constructor(
    private readonly client: RedisClient,
    config: TallyConfig,
    private readonly meters: MeterIndex,
    consumer: string,
    logger: Logger,
  ) {
    const keys = new TallyKeys(config.prefix);
    this.queues = config.rollups.queues.map((name) => {
      const queue = new Queue(name, { connection: client, prefix: config.rollups.queuePrefix });
      // BullMQ re-emits the shared connection's errors on each queue and, with no listener, prints each
      // to stderr. Its outages are logged once by the connection's owner (redis/outages.ts).
      queue.on('error', (err) => logger.debug({ err, queue: name }, 'rollup queue connection error'));
      return queue;
    });
    this.jobOptions = outboxJobOptions(config);
    this.graceMs = config.windows.graceMs;
    this.batchJobs = config.rollups.batchJobs;
    const reader = (key: (p: number) => string) =>
      new OutboxReader(client, {
        key,
        group: RELAY_GROUP,
        consumer,
        claimIdleMs: config.worker.claimIdleMs,
        count: () => Math.max(1, Math.round(OUTBOX_READ_COUNT / this.rollupsPerEntry)),
        logger,
      });
    this.outbox = reader((p) => keys.outbox(p));
    this.legacyKey = (p) => keys.legacyOutbox(p);
    this.legacy = reader(this.legacyKey);
  }

  /** Forgets relay consumers with nothing pending: this one (`minIdleMs` null) or others idle that long. */
  async forgetConsumers(partition: number, minIdleMs: number | null): Promise<number> {
    const legacy = (await this.client.exists(this.legacyKey(partition)))
      ? await this.legacy.forget(partition, minIdleMs)
      : 0;
    return legacy + (await this.outbox.forget(partition, minIdleMs));
  }

  ensureGroup(partition: number): Promise<void> {
    return this.outbox.ensureGroup(partition);
  }

  /**
   * Relays new outbox entries, then ones left pending by a dead relay. Returns how many rollups were
   * relayed. A job per rollup, or with `rollups.batchJobs` a job per outbox entry, under the entry's id.
   */
  async relay(partition: number): Promise<number> {
    let relayed = 0;
    // `stream` tells the two outboxes apart in batch job ids: their entry ids are not unique across them.
    const publish = (stream: string) => async (entries: [string, string[]][]) => {
      const jobs: { name: string; data: RollupJob | RollupBatchJob; opts: JobsOptions }[] = [];
      let rollups = 0;
      const now = Date.now();
      for (const [id, fields] of entries) {
        const page = outboxToRollups(fields, this.meters, partition);
        if (page.length === 0) continue;
        rollups += page.length;
        for (const { data } of page) {
          // Latency of first emissions only: a correction is late by nature.
          if (data.revision === 1)
            instruments.rollupLatency.record(Math.max(0, now - Date.parse(data.windowEnd) - this.graceMs), {
              'tally.partition': partition,
            });
        }
        if (this.batchJobs) {
          const first = page[0] as OutboxRollup;
          const jobId = `${first.data.meter}.${Date.parse(first.data.windowStart)}.p${partition}${stream}.${id}`;
          jobs.push({
            name: ROLLUP_BATCH_JOB_NAME,
            data: { version: 1, rollups: page.map((r) => r.data) },
            opts: { ...this.jobOptions, jobId },
          });
        } else {
          for (const { data, group } of page) {
            const jobId = rollupJobId(data.meter, Date.parse(data.windowStart), group, data.revision);
            jobs.push({ name: ROLLUP_JOB_NAME, data, opts: { ...this.jobOptions, jobId } });
          }
        }
      }
      this.rollupsPerEntry = 0.7 * this.rollupsPerEntry + (0.3 * rollups) / Math.max(1, entries.length);
      // Every queue and page at once (pipelined on the connection); acked by drain only after all of
      // them accepted. A failed page leaves the whole read unacked: re-adding the pages that did go in
      // is a no-op under their deterministic job ids.
      const pages: (typeof jobs)[] = [];
      const perPage = this.batchJobs
        ? Math.max(1, Math.floor(JOBS_PER_ADD / this.rollupsPerEntry))
        : JOBS_PER_ADD;
      for (let i = 0; i < jobs.length; i += perPage) pages.push(jobs.slice(i, i + perPage));
      await Promise.all(this.queues.flatMap((queue) => pages.map((p) => queue.addBulk(p))));
      instruments.rollupsEmitted.add(rollups, { 'tally.partition': partition });
      relayed += rollups;
    };
    // What workers of a version before pages wrote (a rolling upgrade), first: it is older.
    if (await this.client.exists(this.legacyKey(partition)))
      await this.legacy.drain(partition, publish('.legacy'));
    await this.outbox.drain(partition, publish(''));
    return relayed;
  }

  async close(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.close()));
  }
}
