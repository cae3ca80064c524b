export { TallyKeys, RELAY_GROUP } from './keys.js';
export { Scripts, registerScripts, runScript, type RedisClient, type ScriptName } from './scripts.js';
export { connect, duplicate, maskUrl, type RedisTarget, type RedisTls } from './connection.js';
export { OutageLog } from './outages.js';
export {
  MeteringScripts,
  type ApplyBatchParams,
  type ApplyBatchReply,
  type CloseWindowsReply,
  type WindowParams,
} from './metering-scripts.js';
export { StreamGroup, STALE_CONSUMER_MS } from './stream-group.js';
export { FailureLog } from './failure-log.js';
export { RedisComponent, processConsumerName, type ComponentOptions } from './component.js';
export { EntitlementScripts, type DefineOp, type EntitlementTarget } from './entitlement-scripts.js';
export { checkEvictionPolicy, checkRedisAccess, type AccessScope, type ServerFacts } from './access.js';
export {
  RegistryScripts,
  type MeterRegistration,
  type RegisterReply,
  type SyncReply,
} from './registry-scripts.js';
export { NotificationScripts } from './notification-scripts.js';
export { NotificationKeyKinds, type NotificationKeyKind } from './keys.js';
