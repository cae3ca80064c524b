/**
 * Tally: usage metering on Redis Streams. The public API: produce events, run workers, consume rollups.
 */
export {
  UsageProducer,
  partitionOf,
  defaultProducerOptions,
  type ProducerOptions,
} from './producer/index.js';
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
export {
  ErrorCode,
  TallyError,
  TallyConfigError,
  TallyValidationError,
  TallyScriptError,
} from './errors/index.js';
export {
  EntitlementStore,
  EntitlementChecker,
  EntitlementEvaluator,
  createNotificationSubscriber,
  notificationJobId,
  publishDefinitions,
  readPublished,
  definitionsNote,
  EntitlementsConfigSchema,
  EntitlementSpecSchema,
  FeatureSchema,
  GrantInputSchema,
  NotificationJobSchema,
  NotificationTypes,
  type EntitlementCheck,
  type EntitlementView,
  type GrantView,
  type ApplyOutcome,
  type EntitlementsOptions,
  type CheckerOptions,
  type EvaluatorOptions,
  type EvaluatorStats,
  type EntitlementSpecInput,
  type FeatureInput,
  type GrantInput,
  type NotificationJob,
  type NotificationType,
  type NotificationHandler,
  type Feature,
  type DefinitionCatalog,
  type PublishResult,
} from './entitlements/index.js';
export { UsageQuery, type UsageQueryOptions, type UsageQueryParams, type UsageRow } from './usage/index.js';
export {
  status,
  listDeadLetters,
  replayDeadLetters,
  planReplay,
  formatStatus,
  type TallyStatus,
  type PartitionStatus,
  type ReplicaStatus,
  type DeadLetter,
  type ReplayPlan,
  type ReplayResult,
  type ListDeadLettersOptions,
  type ReplayDeadLettersOptions,
} from './admin/index.js';
export {
  TallyHttpServer,
  startObservabilityServer,
  type HttpServerOptions,
  type ListenOptions,
  type Problem,
  type MeterQueryResult,
} from './http/index.js';
export { installPrometheus, bindInstruments, type PrometheusMetrics } from './telemetry/index.js';
export { type BatchOutcome } from './producer/index.js';
