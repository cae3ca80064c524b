import { Queue, type JobsOptions } from 'bullmq';
import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { aggregationOfCode, divideScaled, formatScaled, type MeterIndex } from '../meters/index.js';
import { RELAY_GROUP, TallyKeys, type RedisClient } from '../redis/index.js';
import { instruments } from '../telemetry/index.js';
import { formatIsoUtc } from '../windows/index.js';
import { rollupJobId } from './job-id.js';
import { OutboxReader, outboxJobOptions } from './outbox.js';
import { ROLLUP_JOB_NAME, type RollupJob } from './schema.js';

/**
 * Jobs per addBulk. BullMQ's addBulk is one MULTI/EXEC of an add-job script per job, which Redis runs
 * as one call: at ~14 us per job (SLOWLOG, 2-core reference machine) a page of 2,000 held Redis for
 * ~28 ms. Pages of 250 keep each call near ~3.5 ms (issue 10's 5 ms ceiling), and measured faster too
 * (BullMQ addBulk alone: ~15.8k jobs/s in pages of 250 vs ~12.2k in pages of 2,000).
 */
const JOBS_PER_ADD = 250;
/**
 * Outbox entries per read. XREADGROUP of 2,000 rollups and the XDEL of their ids each held Redis for
 * 13-20 ms (SLOWLOG, relay bench scenario); 250 keeps both near 2 ms, one addBulk page per queue.
 */
const OUTBOX_READ_COUNT = 250;

/** Decodes one outbox entry (written by closeWindows.lua) into rollup job data. */
export function outboxToRollup(fields: readonly string[], meters: MeterIndex, partition: number): RollupJob {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i] as string] = fields[i + 1] as string;
  const slug = f.m ?? '';
  const aggregation = aggregationOfCode(f.a ?? '') ?? 'SUM';
  const count = f.c ?? '0';
  const raw = f.v ?? '0';
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
  const [subject, ...values] = JSON.parse(f.g ?? '[""]') as [string, ...(string | null)[]];
  const keys = meters.bySlug(slug)?.groupKeys ?? [];
  const groupBy: Record<string, string | null> = {};
  values.forEach((v, i) => {
    groupBy[keys[i] ?? `group${i}`] = v;
  });
  return {
    version: 1,
    meter: slug,
    aggregation,
    subject,
    groupBy,
    windowStart: formatIsoUtc(Number(f.ws)),
    windowEnd: formatIsoUtc(Number(f.we)),
    value: Number(valueDecimal),
    valueDecimal,
    eventCount: Number(count),
    revision: Number(f.r),
    partition,
  };
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
  private readonly graceMs: number;

  constructor(
    client: RedisClient,
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
    this.outbox = new OutboxReader(client, {
      key: (p) => keys.outbox(p),
      group: RELAY_GROUP,
      consumer,
      claimIdleMs: config.worker.claimIdleMs,
      count: OUTBOX_READ_COUNT,
      logger,
    });
  }

  /** Forgets relay consumers with nothing pending: this one (`minIdleMs` null) or others idle that long. */
  forgetConsumers(partition: number, minIdleMs: number | null): Promise<number> {
    return this.outbox.forget(partition, minIdleMs);
  }

  ensureGroup(partition: number): Promise<void> {
    return this.outbox.ensureGroup(partition);
  }

  /** Relays new outbox entries, then ones left pending by a dead relay. Returns how many were relayed. */
  async relay(partition: number): Promise<number> {
    return this.outbox.drain(partition, async (entries) => {
      const jobs = entries.map(([, fields]) => {
        const data = outboxToRollup(fields, this.meters, partition);
        const jobId = rollupJobId(
          data.meter,
          Date.parse(data.windowStart),
          fieldOf(fields, 'g'),
          data.revision,
        );
        return { name: ROLLUP_JOB_NAME, data, opts: { ...this.jobOptions, jobId } };
      });
      // Every queue and page at once (pipelined on the connection); acked by drain only after all of
      // them accepted. A failed page leaves the whole read unacked: re-adding the pages that did go in
      // is a no-op under their deterministic job ids.
      const pages: (typeof jobs)[] = [];
      for (let i = 0; i < jobs.length; i += JOBS_PER_ADD) pages.push(jobs.slice(i, i + JOBS_PER_ADD));
      await Promise.all(this.queues.flatMap((queue) => pages.map((page) => queue.addBulk(page))));
      instruments.rollupsEmitted.add(entries.length, { 'tally.partition': partition });
      // Latency of first emissions only: a correction is late by nature.
      const now = Date.now();
      for (const { data } of jobs) {
        if (data.revision === 1)
          instruments.rollupLatency.record(Math.max(0, now - Date.parse(data.windowEnd) - this.graceMs), {
            'tally.partition': partition,
          });
      }
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.close()));
  }
}

function fieldOf(fields: readonly string[], name: string): string {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1] as string;
  return '';
}
