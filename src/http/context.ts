// The schema fields @fastify/swagger adds (tags, summary, hide, operationId).
import type {} from '@fastify/swagger';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TallyConfig } from '../config/index.js';
import type { EntitlementChecker } from '../entitlements/index.js';
import type { MeterIndex } from '../meters/index.js';
import type { NotificationStore } from '../notifications/index.js';
import type { RegistryFollower } from '../registry/index.js';
import type { UsageProducer } from '../producer/index.js';
import type { UsageQuery } from '../usage/index.js';

/** The fastify instance with the TypeBox type provider. */
export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** What the API routes share: one connection's producer, query and checker, and the config. */
export interface ApiContext {
  readonly config: TallyConfig;
  /** The registry's meters, followed (updated in place within about a second of a change). */
  readonly meters: MeterIndex;
  readonly registry: RegistryFollower;
  readonly producer: UsageProducer;
  readonly usage: UsageQuery;
  readonly checker: EntitlementChecker;
  /** Notification channels, rules and events (src/notifications). */
  readonly notifications: NotificationStore;
}
