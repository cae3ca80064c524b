import { Queue, type JobsOptions } from 'bullmq';
import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { aggregationOfCode, divideScaled, formatScaled, type MeterIndex } from '../meters/index.js';
import { RELAY_GROUP, TallyKeys, type RedisClient } from '../redis/index.js';
import { instruments } from '../telemetry/index.js';
import { formatIsoUtc } from '../windows/index.js';
import { rollupJobId } from './job-id.js';
import { ROLLUP_JOB_NAME, type RollupJob } from './schema.js';

type OutboxEntry = [id: string, fields: string[]];

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
  private readonly keys: TallyKeys;
  private readonly queues: Queue[];
  private readonly jobOptions: JobsOptions;

  constructor(
    private readonly client: RedisClient,
    private readonly config: TallyConfig,
    private readonly meters: MeterIndex,
    private readonly consumer: string,
    private readonly logger: Logger,
  ) {
    this.keys = new TallyKeys(config.prefix);
    this.queues = config.rollups.queues.map((name) => {
      const queue = new Queue(name, { connection: client, prefix: config.rollups.queuePrefix });
      // BullMQ re-emits the shared connection's errors on each queue and, with no listener, prints each
      // to stderr. Its outages are logged once by the connection's owner (redis/outages.ts).
      queue.on('error', (err) => logger.debug({ err, queue: name }, 'rollup queue connection error'));
      return queue;
    });
    this.jobOptions = {
      removeOnComplete: { age: Math.ceil(config.rollups.keepCompletedMs / 1000) },
      removeOnFail: false,
      attempts: config.rollups.attempts,
      backoff: { type: 'exponential', delay: 1000 },
    };
  }

  async ensureGroup(partition: number): Promise<void> {
    try {
      await this.client.xgroup('CREATE', this.keys.outbox(partition), RELAY_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err as Error).message.includes('BUSYGROUP')) throw err;
    }
  }

  /** Relays new outbox entries, then ones left pending by a dead relay. Returns how many were relayed. */
  async relay(partition: number): Promise<number> {
    const outbox = this.keys.outbox(partition);
    let total = 0;
    for (;;) {
      let entries: OutboxEntry[];
      try {
        const reply = (await this.client.xreadgroup('GROUP', RELAY_GROUP, this.consumer, 'COUNT', 2000, 'STREAMS', outbox, '>')) as
          | [string, OutboxEntry[]][]
          | null;
        entries = reply?.[0]?.[1] ?? [];
      } catch (err) {
        if (!(err as Error).message.includes('NOGROUP')) throw err;
        this.logger.error({ partition }, 'rollup outbox consumer group is missing (Redis lost its data?); recreating it');
        await this.ensureGroup(partition);
        continue;
      }
      if (entries.length === 0) break;
      await this.publish(partition, entries);
      total += entries.length;
    }
    const [, stale] = (await this.client.xautoclaim(outbox, RELAY_GROUP, this.consumer, this.config.worker.claimIdleMs, '0-0', 'COUNT', 500)) as [
      string,
      OutboxEntry[],
    ];
    const live = stale.filter((e) => e[1] !== null);
    if (live.length > 0) {
      await this.publish(partition, live);
      total += live.length;
    }
    return total;
  }

  private async publish(partition: number, entries: OutboxEntry[]): Promise<void> {
    const jobs = entries.map(([, fields]) => {
      const data = outboxToRollup(fields, this.meters, partition);
      const jobId = rollupJobId(data.meter, Date.parse(data.windowStart), fieldOf(fields, 'g'), data.revision);
      return { name: ROLLUP_JOB_NAME, data, opts: { ...this.jobOptions, jobId } };
    });
    await Promise.all(this.queues.map((queue) => queue.addBulk(jobs)));
    const ids = entries.map(([id]) => id);
    const outbox = this.keys.outbox(partition);
    await this.client.pipeline().xack(outbox, RELAY_GROUP, ...ids).xdel(outbox, ...ids).exec();
    instruments.rollupsEmitted.add(entries.length, { 'tally.partition': partition });
  }

  async close(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.close()));
  }
}

function fieldOf(fields: readonly string[], name: string): string {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1] as string;
  return '';
}
