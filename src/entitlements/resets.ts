import type { TallyConfig } from '../config/index.js';
import { runScript, type RedisClient } from '../redis/index.js';
import type { Definitions } from './definitions.js';
import { burnPlan } from './model.js';
import { periodAt } from './period.js';

const RESETS_PER_TICK = 200;

/**
 * Emits the reset notification of every (feature, subject) of a partition whose usage period ended
 * (resetEntitlementPeriod.lua), at most RESETS_PER_TICK per call. Returns how many it wrote.
 */
export async function processResets(client: RedisClient, config: TallyConfig, definitions: Definitions, partition: number): Promise<number> {
  const keys = definitions.keys;
  const now = Date.now();
  const due = await client.zrangebyscore(keys.entitlementResets(partition), '-inf', now, 'WITHSCORES', 'LIMIT', 0, RESETS_PER_TICK);
  let written = 0;
  for (let i = 0; i + 1 < due.length; i += 2) {
    const member = due[i] as string;
    const score = due[i + 1] as string;
    const nl = member.indexOf('\n');
    const feature = member.slice(0, nl);
    const subject = member.slice(nl + 1);
    const def = await definitions.load(subject);
    const eff = definitions.effective(def, feature);
    const usageKey = keys.entitlementUsage(partition, feature, subject);
    const scriptKeys = [keys.entitlementDefinition(partition, subject), usageKey, keys.entitlementResets(partition), keys.entitlementOutbox(partition)];
    if (eff?.entitlement.type !== 'metered') {
      await runScript(client, 'resetEntitlementPeriod', scriptKeys, [def.version, 'drop', feature, subject, score, 0, 0, 0, 0, 0]);
      continue;
    }
    const ent = eff.entitlement;
    const period = periodAt(ent.usagePeriod, now);
    const previous = periodAt(ent.usagePeriod, period.start - 1);
    const plan = burnPlan(ent, definitions.grantsOf(def, feature), period);
    const [status, n] = (await runScript(client, 'resetEntitlementPeriod', scriptKeys, [
      def.version,
      'reset',
      feature,
      subject,
      score,
      period.start,
      period.end,
      plan.total.toString(),
      previous.start,
      period.end + config.windows.retentionMs,
    ])) as [string, number];
    if (status === 'reset') written += n;
  }
  return written;
}
