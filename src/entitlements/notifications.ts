import { createHash } from 'node:crypto';
import {
  Queue,
  UnrecoverableError,
  Worker,
  type ConnectionOptions,
  type JobsOptions,
  type Job,
  type WorkerOptions,
} from 'bullmq';
import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { formatScaled } from '../meters/index.js';
import { TallyKeys, type RedisClient } from '../redis/index.js';
import { guardWorker, OutboxReader, outboxJobOptions } from '../rollups/index.js';
import { formatIsoUtc } from '../windows/index.js';
import {
  notificationJobChecker,
  NotificationTypes,
  type NotificationJob,
  type NotificationType,
} from './schema.js';

/** The consumer group the notification relay uses on each partition's entitlement outbox. */
export const NOTIFICATION_RELAY_GROUP = 'tally-entitlement-relay';

/** Decodes one outbox entry (written by applyEntitlementRollup.lua / resetEntitlementPeriod.lua). */
export function outboxToNotification(fields: readonly string[]): NotificationJob {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i] as string] = fields[i + 1] as string;
  const type = `entitlement.${f.t ?? ''}` as NotificationType;
  const key = f.k ?? '';
  const job: NotificationJob = {
    version: 1,
    type: NotificationTypes.includes(type) ? type : 'entitlement.threshold',
    subject: f.s ?? '',
    feature: f.f ?? '',
    periodStart: formatIsoUtc(Number(f.ps)),
    periodEnd: formatIsoUtc(Number(f.pe)),
    usage: formatScaled(f.u ?? '0'),
    balance: formatScaled(f.b ?? '0'),
    overage: formatScaled(f.o ?? '0'),
    allowance: formatScaled(f.a ?? '0'),
    at: formatIsoUtc(Number(f.at)),
  };
  if (job.type === 'entitlement.threshold') {
    const threshold: NonNullable<NotificationJob['threshold']> = { id: key, level: formatScaled(f.l ?? '0') };
    if (key.startsWith('p')) threshold.percent = Number(key.slice(1));
    else if (key.startsWith('v')) threshold.value = key.slice(1);
    job.threshold = threshold;
  }
  return job;
}

/**
 * The deterministic BullMQ job id of a notification: one per (type, subject, feature, period,
 * threshold), so a relay re-adding it after a crash is a no-op while the first job is kept. No ':'
 * (BullMQ forbids it) and never all digits.
 */
export function notificationJobId(job: NotificationJob): string {
  const who = createHash('sha1').update(`${job.subject}\n${job.feature}`).digest('hex').slice(0, 20);
  return `${job.type}.${who}.${Date.parse(job.periodStart)}.${job.threshold?.id ?? job.type.slice(12)}`;
}

/**
 * Moves notifications from each partition's entitlement outbox to the notifications queue, as
 * RollupRelay does for rollups: read through a consumer group, acknowledged only after the queue
 * accepted the job, pending entries of a dead relay claimed after `claimIdleMs`.
 */
export class NotificationRelay {
  private readonly queue: Queue;
  private readonly jobOptions: JobsOptions;
  private readonly outbox: OutboxReader;

  constructor(
    client: RedisClient,
    config: TallyConfig,
    consumer: string,
    logger: Logger,
    private readonly onNotifications?: (jobs: NotificationJob[]) => Promise<void>,
  ) {
    const keys = new TallyKeys(config.prefix);
    this.queue = new Queue(config.entitlements.notificationsQueue, {
      connection: client,
      prefix: config.rollups.queuePrefix,
    });
    // As in RollupRelay: without a listener BullMQ prints every error of the shared connection to stderr;
    // its outages are logged once by the connection's owner.
    this.queue.on('error', (err) =>
      logger.debug(
        { err, queue: config.entitlements.notificationsQueue },
        'notification queue connection error',
      ),
    );
    this.jobOptions = outboxJobOptions(config);
    this.outbox = new OutboxReader(client, {
      key: (p) => keys.entitlementOutbox(p),
      group: NOTIFICATION_RELAY_GROUP,
      consumer,
      claimIdleMs: config.worker.claimIdleMs,
      count: 200,
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

  /** Relays new entries, then those a dead relay left pending; returns how many were relayed. */
  relay(partition: number): Promise<number> {
    return this.outbox.drain(partition, async (entries) => {
      const jobs = entries.map(([, fields]) => {
        const data = outboxToNotification(fields);
        return { name: data.type, data, opts: { ...this.jobOptions, jobId: notificationJobId(data) } };
      });
      await this.queue.addBulk(jobs);
      // Before the entries are acknowledged: a crash here replays them, and the hook is idempotent.
      if (this.onNotifications) await this.onNotifications(jobs.map((j) => j.data));
    });
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}

export type NotificationHandler = (notification: NotificationJob, job: Job<NotificationJob>) => Promise<void>;

export interface NotificationSubscriberOptions extends Partial<Omit<WorkerOptions, 'connection'>> {
  connection: ConnectionOptions;
}

/**
 * A BullMQ worker on the notifications queue that validates each job before calling `handler`.
 * Delivery is at least once: make the handler idempotent on the job id. Guarded against spinning on
 * an error that repeats at once (see guardWorker).
 */
export function createNotificationSubscriber(
  queue: string,
  handler: NotificationHandler,
  options: NotificationSubscriberOptions,
): Worker<NotificationJob> {
  const worker = new Worker<NotificationJob>(
    queue,
    async (job) => {
      if (!notificationJobChecker.Check(job.data)) {
        const first = notificationJobChecker.Errors(job.data).First();
        throw new UnrecoverableError(
          `invalid notification job ${job.id}: ${first?.path ?? ''} ${first?.message ?? ''}`,
        );
      }
      await handler(job.data, job);
    },
    options,
  );
  guardWorker(worker, queue);
  return worker;
}
