import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { notificationJobId, type NotificationJob } from '../entitlements/index.js';
import { toScaled } from '../meters/index.js';
import { instruments } from '../telemetry/index.js';
import type { Rule } from './model.js';
import { buildPayload } from './payload.js';
import type { RuleType, ThresholdValue } from './schema.js';
import type { NotificationStore } from './store.js';

/**
 * The usage at which a rule threshold fires, in micro-units, for an allowance (limit + grants):
 * usage_value v → v; usage_percentage p → allowance × p / 100; balance_value b → allowance − b
 * (NUMBER and PERCENT are OpenMeter's deprecated names of the first two).
 */
export function thresholdLevel(t: ThresholdValue, allowance: bigint): bigint | undefined {
  const v = toScaled(t.value);
  if (v === undefined) return undefined;
  switch (t.type) {
    case 'usage_value':
    case 'NUMBER':
      return v;
    case 'usage_percentage':
    case 'PERCENT':
      return (allowance * v) / 100_000_000n;
    case 'balance_value':
      return allowance - v;
  }
}

/**
 * The rule threshold a notification stands for, if any. The evaluator fires only the thresholds set
 * on the entitlement (percent or value) and `exhausted` when the balance reaches 0; a rule threshold
 * matches a fired one at the same usage level (or the same percentage), except that the level of the
 * whole allowance (usage_percentage 100, balance_value 0, usage_value = allowance) is matched by
 * `exhausted` only, so that an entitlement threshold at 100% does not make a second event.
 */
export function matchThreshold(rule: Rule, job: NotificationJob): ThresholdValue | undefined {
  const allowance = toScaled(job.allowance);
  if (allowance === undefined) return undefined;
  for (const t of rule.thresholds ?? []) {
    const level = thresholdLevel(t, allowance);
    if (level === undefined) continue;
    if (job.type === 'entitlement.exhausted') {
      if (level === allowance) return t;
    } else if (job.type === 'entitlement.threshold' && job.threshold && level !== allowance) {
      const percentMatch =
        (t.type === 'usage_percentage' || t.type === 'PERCENT') && job.threshold.percent === t.value;
      if (percentMatch || level === toScaled(job.threshold.level)) return t;
    }
  }
  return undefined;
}

/** The OpenMeter event type a notification becomes under a rule, if the rule takes it. */
function typeFor(rule: Rule, job: NotificationJob): RuleType | undefined {
  if (rule.disabled) return undefined;
  if (rule.features.length > 0 && !rule.features.includes(job.feature)) return undefined;
  if (rule.type === 'entitlements.reset') return job.type === 'entitlement.reset' ? rule.type : undefined;
  return job.type === 'entitlement.reset' ? undefined : rule.type;
}

/** The event id of a notification under a rule: the same for every replay of the notification. */
export function eventId(job: NotificationJob, ruleId: string): string {
  return createHash('sha256')
    .update(`${notificationJobId(job)}\n${ruleId}`)
    .digest('hex')
    .slice(0, 32);
}

/**
 * Turns the evaluator's notifications (exactly once per threshold, exhausted, reset) into
 * notification events of the matching rules. Called by the evaluator's relay before it acknowledges
 * the outbox entries; a replay writes nothing new (createNotificationEvent.lua, deterministic ids).
 */
export class NotificationFeed {
  constructor(
    private readonly store: NotificationStore,
    private readonly logger: Logger,
  ) {}

  async handle(jobs: readonly NotificationJob[]): Promise<number> {
    if (jobs.length === 0) return 0;
    const rules = await this.store.listRules();
    if (rules.length === 0) return 0;
    let created = 0;
    const now = new Date();
    for (const job of jobs) {
      for (const rule of rules) {
        const type = typeFor(rule, job);
        if (!type) continue;
        const threshold = type === 'entitlements.balance.threshold' ? matchThreshold(rule, job) : undefined;
        if (type === 'entitlements.balance.threshold' && !threshold) continue;
        const id = eventId(job, rule.id);
        const fresh = await this.store.createEventOnce(
          {
            id,
            type,
            createdAt: now.toISOString(),
            rule,
            feature: job.feature,
            subject: job.subject,
            payload: buildPayload(id, type, job, threshold, now),
          },
          now,
        );
        if (fresh) {
          created++;
          instruments.notificationEventsCreated.add(1, { 'tally.notification.type': type });
        }
      }
    }
    if (created > 0) this.logger.debug({ created }, 'notification events created');
    return created;
  }
}
