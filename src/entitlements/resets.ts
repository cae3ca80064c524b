import type { TallyConfig } from '../config/index.js';
import type { RedisClient } from '../redis/index.js';
import type { Definitions } from './definitions.js';
import { burnPlan } from './burn-plan.js';
import { periodAt } from './period.js';

const RESETS_PER_TICK = 200;

/**
 * Emits the reset notification of every (feature, subject) of a partition whose usage period ended
 * (resetEntitlementPeriod.lua), at most RESETS_PER_TICK per call. Returns how many it wrote.
 */
export async function processResets(
  client: RedisClient,
  config: TallyConfig,
  definitions: Definitions,
  partition: number,
): Promise<number> {
  const keys = definitions.keys;
  const now = Date.now();
  const due = await client.zrangebyscore(
    keys.entitlementResets(partition),
    '-inf',
    now,
    'WITHSCORES',
    'LIMIT',
    0,
    RESETS_PER_TICK,
  );
  let written = 0;
  for (let i = 0; i + 1 < due.length; i += 2) {
    const member = due[i] as string;
    const score = due[i + 1] as string;
    const nl = member.indexOf('\n');
    const feature = member.slice(0, nl);
    const subject = member.slice(nl + 1);
    const def = await definitions.load(subject);
    const eff = definitions.effective(def, feature);
    const target = { partition, subject, feature, version: def.version };
    if (eff?.entitlement.type !== 'metered') {
      await definitions.scripts.resetPeriod(target, 'drop', score, undefined);
      continue;
    }
    const ent = eff.entitlement;
    const period = periodAt(ent.usagePeriod, now);
    const previous = periodAt(ent.usagePeriod, period.start - 1);
    const plan = burnPlan(ent, definitions.grantsOf(def, feature), period);
    const { status, notifications } = await definitions.scripts.resetPeriod(target, 'reset', score, {
      start: period.start,
      end: period.end,
      allowance: plan.total.toString(),
      keepFrom: previous.start,
      expireAt: period.end + config.windows.retentionMs,
    });
    if (status === 'reset') written += notifications;
  }
  return written;
}
