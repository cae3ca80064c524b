export {
  EntitlementsConfigSchema,
  EntitlementSpecSchema,
  FeatureSchema,
  GrantInputSchema,
  NotificationJobSchema,
  NotificationTypes,
  notificationJobChecker,
  type EntitlementSpecInput,
  type EntitlementType,
  type FeatureInput,
  type GrantInput,
  type NotificationJob,
  type NotificationType,
} from './schema.js';
export { resolveEntitlementsConfig, type EntitlementsConfig } from './config.js';
export { parseUsagePeriod, periodAt, type UsagePeriod, type PeriodBounds } from './period.js';
export { type Entitlement, type MeteredEntitlement, type Feature, type Grant } from './model.js';
export { burnPlan, type BurnPlan } from './burn-plan.js';
export { Definitions, type SubjectDefinition } from './definitions.js';
export { EntitlementStore, type EntitlementView, type GrantView } from './store.js';
export { EntitlementChecker, type EntitlementCheck, type AllowanceState } from './checker.js';
export { EntitlementEvaluator, type ApplyOutcome } from './evaluator.js';
export {
  publishDefinitions,
  readPublished,
  publishedVersion,
  configCatalog,
  definitionsNote,
  describeVersion,
  hasDefinitions,
  type DefinitionCatalog,
  type PublishResult,
} from './published.js';
export {
  NotificationRelay,
  NOTIFICATION_RELAY_GROUP,
  createNotificationSubscriber,
  notificationJobId,
  outboxToNotification,
  type NotificationHandler,
  type NotificationSubscriberOptions,
} from './notifications.js';
export type { EntitlementsOptions, CheckerOptions, EvaluatorOptions, EvaluatorStats } from './options.js';
