/** The roles `tally worker` can run; `--roles` picks some (default: all). */
import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { EntitlementEvaluator } from '../entitlements/index.js';
import { TallyConfigError } from '../errors/index.js';

export const WorkerRoles = ['metering', 'entitlements'] as const;
export type WorkerRole = (typeof WorkerRoles)[number];

export function parseRoles(value: string | undefined): { roles: Set<WorkerRole>; explicit: boolean } {
  if (value === undefined) return { roles: new Set(WorkerRoles), explicit: false };
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
): Promise<EntitlementEvaluator | undefined> {
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
  const evaluator = new EntitlementEvaluator({ config, logger, allowEviction });
  await evaluator.start();
  return evaluator;
}
