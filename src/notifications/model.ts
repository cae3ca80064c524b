import { TallyValidationError } from '../errors/index.js';
import type { DeliveryState, RuleType, ThresholdValue } from './schema.js';

/** A webhook channel as stored (JSON in the `channels` hash) and answered. */
export interface Channel {
  id: string;
  type: 'WEBHOOK';
  name: string;
  disabled: boolean;
  url: string;
  customHeaders: Record<string, string>;
  signingSecret: string;
  metadata?: Record<string, string> | null;
  createdAt: string;
  updatedAt: string;
}

/** A rule as stored (JSON in the `rules` hash). The API answers it through `ruleView`. */
export interface Rule {
  id: string;
  type: RuleType;
  name: string;
  disabled: boolean;
  channels: string[];
  features: string[];
  thresholds?: ThresholdValue[];
  metadata?: Record<string, string> | null;
  createdAt: string;
  updatedAt: string;
}

/** A notification event as stored (JSON in the `events` hash); never changed once written. */
export interface StoredEvent {
  id: string;
  type: RuleType;
  createdAt: string;
  rule: Rule;
  channels: string[];
  feature: string;
  subject: string;
  payload: {
    id: string;
    type: RuleType;
    timestamp: string;
    createdAt: string;
    data: Record<string, unknown>;
  };
}

export interface DeliveryAttempt {
  state: 'SUCCESS' | 'FAILED';
  response: { statusCode?: number; body?: string; duration: number; error?: string };
  timestamp: string;
}

/** A delivery's status (JSON in the `deliveries` hash, per channel and event). */
export interface DeliveryStatus {
  state: DeliveryState;
  reason: string;
  updatedAt: string;
  /** Attempts since it was created or last resent; indexes the retry schedule. */
  attemptCount: number;
  nextAttempt?: string;
  /** The latest attempts, at most MAX_KEPT_ATTEMPTS. */
  attempts: DeliveryAttempt[];
}

export const MAX_KEPT_ATTEMPTS = 20;

/** A request the store refuses: 400 naming the field, or 404 for an unknown id. */
export class NotificationInputError extends TallyValidationError {
  constructor(
    readonly field: string,
    message: string,
    readonly status: 400 | 404 = 400,
  ) {
    super(field, message);
  }
}

export const deliveryMember = (channelId: string, eventId: string): string => `${channelId}\n${eventId}`;

export function splitMember(member: string): { channelId: string; eventId: string } {
  const i = member.indexOf('\n');
  return { channelId: member.slice(0, i), eventId: member.slice(i + 1) };
}

export function ruleView(rule: Rule): Record<string, unknown> {
  return {
    ...rule,
    channels: rule.channels.map((id) => ({ id, type: 'WEBHOOK' })),
    features: rule.features.map((key) => ({ id: key, key })),
  };
}

export function pendingStatus(
  state: DeliveryState,
  reason: string,
  now: Date,
  attempts: DeliveryAttempt[] = [],
): DeliveryStatus {
  return {
    state,
    reason,
    updatedAt: now.toISOString(),
    attemptCount: 0,
    nextAttempt: now.toISOString(),
    attempts,
  };
}
