import { createHash } from 'node:crypto';
import type { NotificationJob } from '../entitlements/index.js';
import type { Rule, StoredEvent } from './model.js';
import type { RuleType, ThresholdValue } from './schema.js';

/**
 * OpenMeter's notification event payloads (NotificationEventBalanceThresholdPayload,
 * NotificationEventResetPayload), built from a Tally notification. Amounts are JSON numbers as in
 * OpenMeter (Tally's exact decimals as strings stay in the BullMQ jobs). `createdAt` repeats
 * OpenMeter's `timestamp`.
 */
export function buildPayload(
  id: string,
  type: RuleType,
  job: NotificationJob,
  threshold: ThresholdValue | undefined,
  now: Date,
): StoredEvent['payload'] {
  const usagePeriod = { from: job.periodStart, to: job.periodEnd };
  const data: Record<string, unknown> = {
    entitlement: {
      id: entitlementId(job.subject, job.feature),
      type: 'metered',
      featureKey: job.feature,
      featureId: job.feature,
      subjectKey: job.subject,
      currentUsagePeriod: usagePeriod,
      lastReset: job.periodStart,
    },
    feature: { id: job.feature, key: job.feature, name: job.feature },
    subject: { id: job.subject, key: job.subject },
    customer: { id: job.subject, key: job.subject, usageAttribution: { subjectKeys: [job.subject] } },
    value: {
      hasAccess: Number(job.balance) > 0,
      balance: Number(job.balance),
      usage: Number(job.usage),
      overage: Number(job.overage),
      totalAvailableGrantAmount: Number(job.allowance),
    },
  };
  if (threshold) data.threshold = threshold;
  const at = job.at || now.toISOString();
  return { id, type, timestamp: at, createdAt: at, data };
}

/** A stable id of a subject's entitlement to a feature (Tally keys entitlements by the pair). */
export function entitlementId(subject: string, feature: string): string {
  return createHash('sha256').update(`${subject}\n${feature}`).digest('hex').slice(0, 26);
}

/** The sample notification `rules/{id}/test` sends: as a real one of the rule's type, marked test. */
export function sampleJob(rule: Rule, now: Date): NotificationJob {
  const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const end = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  return {
    version: 1,
    type: rule.type === 'entitlements.reset' ? 'entitlement.reset' : 'entitlement.threshold',
    subject: 'test-subject',
    feature: rule.features[0] ?? 'test-feature',
    periodStart: start.toISOString(),
    periodEnd: end.toISOString(),
    usage: '50',
    balance: '50',
    overage: '0',
    allowance: '100',
    at: now.toISOString(),
  };
}
