export { RollupJobSchema, rollupJobChecker, ROLLUP_JOB_NAME, type RollupJob } from './schema.js';
export { RollupRelay, outboxToRollup } from './relay.js';
export { rollupJobId } from './job-id.js';
export { createRollupSubscriber, type RollupHandler, type RollupSubscriberOptions } from './subscriber.js';
export { OutboxReader, outboxJobOptions, type OutboxEntry, type OutboxReaderOptions } from './outbox.js';
export { guardWorker } from './worker-guard.js';
