import { UnrecoverableError, Worker, type ConnectionOptions, type Job, type WorkerOptions } from 'bullmq';
import { ROLLUP_JOB_NAME, rollupJobChecker, type RollupJob } from './schema.js';
import { guardWorker } from './worker-guard.js';

export type RollupHandler = (rollup: RollupJob, job: Job<RollupJob>) => Promise<void>;

export interface RollupSubscriberOptions extends Partial<Omit<WorkerOptions, 'connection'>> {
  connection: ConnectionOptions;
}

/**
 * A BullMQ worker on a rollup queue that validates each job against the rollup schema before calling
 * `handler`. Delivery is at least once (a stalled job can run twice): make the handler idempotent on
 * (meter, subject, groupBy, windowStart, revision) and keep the highest revision. Guarded against
 * spinning on an error that repeats at once (see guardWorker).
 */
export function createRollupSubscriber(
  queue: string,
  handler: RollupHandler,
  options: RollupSubscriberOptions,
): Worker<RollupJob> {
  const worker = new Worker<RollupJob>(
    queue,
    async (job) => {
      if (job.name !== ROLLUP_JOB_NAME) return;
      if (!rollupJobChecker.Check(job.data)) {
        const first = rollupJobChecker.Errors(job.data).First();
        throw new UnrecoverableError(
          `invalid rollup job ${job.id}: ${first?.path ?? ''} ${first?.message ?? ''}`,
        );
      }
      await handler(job.data, job);
    },
    options,
  );
  guardWorker(worker, queue);
  return worker;
}
