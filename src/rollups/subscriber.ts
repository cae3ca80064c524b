import { UnrecoverableError, Worker, type ConnectionOptions, type Job, type WorkerOptions } from 'bullmq';
import {
  ROLLUP_BATCH_JOB_NAME,
  ROLLUP_JOB_NAME,
  rollupBatchJobChecker,
  rollupJobChecker,
  type RollupBatchJob,
  type RollupJob,
} from './schema.js';
import { guardWorker } from './worker-guard.js';

export type RollupHandler = (rollup: RollupJob, job: Job<RollupJob | RollupBatchJob>) => Promise<void>;

export interface RollupSubscriberOptions extends Partial<Omit<WorkerOptions, 'connection'>> {
  connection: ConnectionOptions;
}

/** The rollups a job carries: one (a `rollup` job) or a page of them (a `rollups` batch job). */
export function rollupsOfJob(job: Job<unknown>): RollupJob[] {
  if (job.name === ROLLUP_JOB_NAME) {
    if (rollupJobChecker.Check(job.data)) return [job.data];
    const first = rollupJobChecker.Errors(job.data).First();
    throw new UnrecoverableError(
      `invalid rollup job ${job.id}: ${first?.path ?? ''} ${first?.message ?? ''}`,
    );
  }
  if (job.name === ROLLUP_BATCH_JOB_NAME) {
    if (rollupBatchJobChecker.Check(job.data)) return job.data.rollups;
    const first = rollupBatchJobChecker.Errors(job.data).First();
    throw new UnrecoverableError(
      `invalid rollup batch job ${job.id}: ${first?.path ?? ''} ${first?.message ?? ''}`,
    );
  }
  return [];
}

/**
 * A BullMQ worker on a rollup queue that validates each job against its schema before calling
 * `handler`, once per rollup: a `rollup` job carries one, a `rollups` batch job (`rollups.batchJobs`)
 * a page of them, handled in order. Delivery is at least once (a stalled job can run twice, and a
 * batch that fails half-way runs again whole): make the handler idempotent on (meter, subject,
 * groupBy, windowStart, revision) and keep the highest revision. Guarded against spinning on an
 * error that repeats at once (see guardWorker).
 */
export function createRollupSubscriber(
  queue: string,
  handler: RollupHandler,
  options: RollupSubscriberOptions,
): Worker<RollupJob | RollupBatchJob> {
  const worker = new Worker<RollupJob | RollupBatchJob>(
    queue,
    async (job) => {
      for (const rollup of rollupsOfJob(job)) await handler(rollup, job);
    },
    options,
  );
  guardWorker(worker, queue);
  return worker;
}
