/** The roles `tally worker` can run; `--roles` picks some (default: all). */
import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { EntitlementEvaluator } from '../entitlements/index.js';
import { NotificationFeed, NotificationStore, WebhookDelivery } from '../notifications/index.js';
import { connect } from '../redis/index.js';
import { TallyConfigError } from '../errors/index.js';

export const WorkerRoles = ['metering', 'entitlements', 'notifications'] as const;
export type WorkerRole = (typeof WorkerRoles)[number];
/**
 * The roles without `--roles`. `notifications` (webhook delivery) is opt-in: it calls out to the
 * network, which an operator turns on deliberately (docs/notifications.md).
 */
export const DefaultWorkerRoles: readonly WorkerRole[] = ['metering', 'entitlements'];

export function parseRoles(value: string | undefined): { roles: Set<WorkerRole>; explicit: boolean } {
  if (value === undefined) return { roles: new Set(DefaultWorkerRoles), explicit: false };
  const roles = new Set<WorkerRole>();
  for (const part of value
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean)) {
    if (!(WorkerRoles as readonly string[]).includes(part)) {
      throw new TallyConfigError(
        '--roles',
        `unknown role ${JSON.stringify(part)}; roles are ${WorkerRoles.join(', ')}`,
      );
    }
    roles.add(part as WorkerRole);
  }
  if (roles.size === 0)
    throw new TallyConfigError('--roles', `expected a comma-separated list of ${WorkerRoles.join(', ')}`);
  return { roles, explicit: true };
}

/**
 * The entitlement evaluator role of `tally worker`. On by default; without a rollup queue for it (a
 * single rollup queue and no `entitlements.queue`) it is skipped unless asked for explicitly.
 */
export async function startEvaluatorRole(
  config: TallyConfig,
  logger: Logger,
  explicit: boolean,
  allowEviction = false,
): Promise<{ close(): Promise<void> } | undefined> {
  if (config.entitlements.queue === undefined) {
    if (explicit)
      throw new TallyConfigError(
        'entitlements.queue',
        'the entitlements role needs a rollup queue: set entitlements.queue or a second rollups.queues entry',
      );
    logger.info(
      'no rollup queue for entitlements (one rollups.queues entry, no entitlements.queue): entitlement evaluator not started',
    );
    return undefined;
  }
  // The evaluator's notifications feed the notification rules (docs/notifications.md); the feed's
  // connection is closed after the evaluator (the last relay pass may still use it).
  const feedClient = connect(config.redis);
  feedClient.on('error', () => {}); // the evaluator's own connection logs outages once
  const feed = new NotificationFeed(
    new NotificationStore(feedClient, config),
    logger.child({ component: 'notification-feed' }),
  );
  const evaluator = new EntitlementEvaluator({
    config,
    logger,
    allowEviction,
    onNotifications: async (jobs) => {
      await feed.handle(jobs);
    },
  });
  await evaluator.start();
  return {
    close: async () => {
      await evaluator.close();
      await feedClient.quit().catch(() => feedClient.disconnect());
    },
  };
}

/** The `notifications` role of `tally worker`: webhook delivery (opt-in, see DefaultWorkerRoles). */
export async function startNotificationsRole(config: TallyConfig, logger: Logger): Promise<WebhookDelivery> {
  const delivery = new WebhookDelivery({ config, logger });
  await delivery.start();
  return delivery;
}
