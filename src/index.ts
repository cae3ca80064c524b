/**
 * Tally: usage metering on Redis Streams. The public API: produce events, run workers, consume rollups.
 */
export { UsageProducer, partitionOf, defaultProducerOptions, type ProducerOptions } from './producer/index.js';
export { TallyWorker, type WorkerOptions, type WorkerStats } from './worker/index.js';
export {
  resolveConfig,
  loadConfigFile,
  ConfigSchema,
  type TallyConfig,
  type TallyConfigData,
  type TallyConfigInput,
} from './config/index.js';
export { UsageEventSchema, type UsageEvent } from './events/index.js';
export {
  RollupJobSchema,
  ROLLUP_JOB_NAME,
  createRollupSubscriber,
  rollupJobId,
  type RollupJob,
  type RollupHandler,
  type RollupSubscriberOptions,
} from './rollups/index.js';
export { Aggregations, type Aggregation } from './meters/index.js';
export { TallyKeys } from './redis/index.js';
export { ErrorCode, TallyError, TallyConfigError, TallyValidationError, TallyScriptError } from './errors/index.js';
