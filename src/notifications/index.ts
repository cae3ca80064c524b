export {
  NotificationsConfigSchema,
  ChannelCreateSchema,
  RuleCreateSchema,
  ResendSchema,
  ThresholdValueTypes,
  RuleTypes,
  DeliveryStates,
  DEFAULT_RETRY_SCHEDULE,
  type ChannelCreate,
  type RuleCreate,
  type ThresholdValue,
  type RuleType,
} from './schema.js';
export { resolveNotificationsConfig, type NotificationsConfig } from './config.js';
export {
  NotificationInputError,
  ruleView,
  type Channel,
  type Rule,
  type StoredEvent,
  type DeliveryStatus,
} from './model.js';
export { NotificationStore, type EventFilter, type Page } from './store.js';
export { NotificationFeed, matchThreshold, thresholdLevel, eventId } from './feed.js';
export { WebhookDelivery } from './delivery.js';
export type { WebhookDeliveryOptions } from './options.js';
export { WebhookUrlPolicy } from './url-policy.js';
export { sign, signatureHeaders, generateSigningSecret } from './signing.js';
export { buildPayload, sampleJob } from './payload.js';
