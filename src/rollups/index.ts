export {
  RollupJobSchema,
  rollupJobChecker,
  ROLLUP_JOB_NAME,
  RollupBatchJobSchema,
  rollupBatchJobChecker,
  ROLLUP_BATCH_JOB_NAME,
  type RollupJob,
  type RollupBatchJob,
} from './schema.js';
export { RollupRelay, outboxToRollup, outboxToRollups } from './relay.js';
export { rollupJobId } from './job-id.js';
export {
  createRollupSubscriber,
  rollupsOfJob,
  type RollupHandler,
  type RollupSubscriberOptions,
} from './subscriber.js';
export { OutboxReader, outboxJobOptions, type OutboxEntry, type OutboxReaderOptions } from './outbox.js';
export { guardWorker } from './worker-guard.js';
