import { randomUUID } from 'node:crypto';
import type { TallyConfig } from '../config/index.js';
import { NotificationScripts, TallyKeys, type RedisClient } from '../redis/index.js';
import {
  deliveryMember,
  NotificationInputError,
  pendingStatus,
  type Channel,
  type DeliveryStatus,
  type Rule,
  type StoredEvent,
} from './model.js';
import type { ChannelCreate, RuleCreate } from './schema.js';
import { eventViews } from './event-views.js';
import { buildPayload, sampleJob } from './payload.js';
import { generateSigningSecret } from './signing.js';
import { WebhookUrlPolicy } from './url-policy.js';

/** Most events `listEvents` looks at (newest first within from/to) before filtering. */
export const MAX_EVENTS_SCANNED = 10_000;

export interface EventFilter {
  rule?: string[];
  channel?: string[];
  feature?: string[];
  subject?: string[];
  from?: number;
  to?: number;
}

export interface Page<T> {
  items: T[];
  page: number;
  pageSize: number;
  totalCount: number;
}

function paginate<T>(all: T[], page = 1, pageSize = 100): Page<T> {
  return { items: all.slice((page - 1) * pageSize, page * pageSize), page, pageSize, totalCount: all.length };
}

/**
 * Channels, rules and notification events in Redis (the `{notify}` keys of TallyKeys). Channels and
 * rules are small hashes id → JSON, read whole; events are written once by createEventOnce (Lua).
 */
export class NotificationStore {
  readonly keys: TallyKeys;
  readonly scripts: NotificationScripts;
  readonly policy: WebhookUrlPolicy;

  constructor(
    private readonly client: RedisClient,
    config: TallyConfig,
  ) {
    this.keys = new TallyKeys(config.prefix);
    this.scripts = new NotificationScripts(client, this.keys);
    this.policy = new WebhookUrlPolicy(config.notifications.webhooks.allow);
  }

  private async getJson<T>(kind: 'channels' | 'rules' | 'events', id: string): Promise<T | undefined> {
    const raw = await this.client.hget(this.keys.notification(kind), id);
    return raw === null ? undefined : (JSON.parse(raw) as T);
  }

  private async all<T>(kind: 'channels' | 'rules'): Promise<T[]> {
    const map = await this.client.hgetall(this.keys.notification(kind));
    return Object.values(map)
      .map((v) => JSON.parse(v) as T & { createdAt: string; id: string })
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  // Channels.

  private async checkUrl(url: string): Promise<void> {
    const refusal = await this.policy.refusal(url);
    if (refusal) throw new NotificationInputError('body.url', refusal);
  }

  async createChannel(input: ChannelCreate): Promise<Channel> {
    await this.checkUrl(input.url);
    const now = new Date().toISOString();
    const channel: Channel = {
      id: randomUUID(),
      type: 'WEBHOOK',
      name: input.name,
      disabled: input.disabled ?? false,
      url: input.url,
      customHeaders: input.customHeaders ?? {},
      signingSecret: input.signingSecret ?? generateSigningSecret(),
      ...(input.metadata !== undefined ? { metadata: input.metadata } : {}),
      createdAt: now,
      updatedAt: now,
    };
    await this.client.hset(this.keys.notification('channels'), channel.id, JSON.stringify(channel));
    return channel;
  }

  async channel(id: string): Promise<Channel> {
    const c = await this.getJson<Channel>('channels', id);
    if (!c) throw new NotificationInputError('channelId', `unknown channel ${JSON.stringify(id)}`, 404);
    return c;
  }

  listChannels(): Promise<Channel[]> {
    return this.all<Channel>('channels');
  }

  /** Replaces a channel (PUT); an omitted signingSecret keeps the current one. */
  async updateChannel(id: string, input: ChannelCreate): Promise<Channel> {
    const current = await this.channel(id);
    await this.checkUrl(input.url);
    const channel: Channel = {
      ...current,
      name: input.name,
      disabled: input.disabled ?? false,
      url: input.url,
      customHeaders: input.customHeaders ?? {},
      signingSecret: input.signingSecret ?? current.signingSecret,
      ...(input.metadata !== undefined ? { metadata: input.metadata } : {}),
      updatedAt: new Date().toISOString(),
    };
    await this.client.hset(this.keys.notification('channels'), id, JSON.stringify(channel));
    return channel;
  }

  async deleteChannel(id: string): Promise<void> {
    if ((await this.client.hdel(this.keys.notification('channels'), id)) === 0)
      throw new NotificationInputError('channelId', `unknown channel ${JSON.stringify(id)}`, 404);
  }

  // Rules.

  private async checkRule(input: RuleCreate): Promise<void> {
    if (input.type === 'entitlements.balance.threshold' && !input.thresholds)
      throw new NotificationInputError(
        'body.thresholds',
        'a entitlements.balance.threshold rule needs thresholds',
      );
    if (input.type === 'entitlements.reset' && input.thresholds)
      throw new NotificationInputError('body.thresholds', 'a entitlements.reset rule has no thresholds');
    for (const [i, t] of (input.thresholds ?? []).entries()) {
      if ((t.type === 'usage_percentage' || t.type === 'PERCENT') && t.value <= 0)
        throw new NotificationInputError(`body.thresholds.${i}.value`, 'a percentage must be above 0');
    }
    if (input.channels.length === 0)
      throw new NotificationInputError('body.channels', 'at least one channel is required');
    const known = await this.client.hmget(this.keys.notification('channels'), ...input.channels);
    const missing = known.findIndex((c) => c === null);
    if (missing >= 0)
      throw new NotificationInputError(
        `body.channels.${missing}`,
        `unknown channel ${JSON.stringify(input.channels[missing])}`,
      );
  }

  private ruleOf(input: RuleCreate, id: string, createdAt: string, updatedAt: string): Rule {
    return {
      id,
      type: input.type,
      name: input.name,
      disabled: input.disabled ?? false,
      channels: [...new Set(input.channels)],
      features: [...new Set(input.features ?? [])],
      ...(input.thresholds ? { thresholds: input.thresholds } : {}),
      ...(input.metadata !== undefined ? { metadata: input.metadata } : {}),
      createdAt,
      updatedAt,
    };
  }

  async createRule(input: RuleCreate): Promise<Rule> {
    await this.checkRule(input);
    const now = new Date().toISOString();
    const rule = this.ruleOf(input, randomUUID(), now, now);
    await this.client.hset(this.keys.notification('rules'), rule.id, JSON.stringify(rule));
    return rule;
  }

  async rule(id: string): Promise<Rule> {
    const r = await this.getJson<Rule>('rules', id);
    if (!r) throw new NotificationInputError('ruleId', `unknown rule ${JSON.stringify(id)}`, 404);
    return r;
  }

  listRules(): Promise<Rule[]> {
    return this.all<Rule>('rules');
  }

  async updateRule(id: string, input: RuleCreate): Promise<Rule> {
    const current = await this.rule(id);
    await this.checkRule(input);
    const rule = this.ruleOf(input, id, current.createdAt, new Date().toISOString());
    await this.client.hset(this.keys.notification('rules'), id, JSON.stringify(rule));
    return rule;
  }

  async deleteRule(id: string): Promise<void> {
    if ((await this.client.hdel(this.keys.notification('rules'), id)) === 0)
      throw new NotificationInputError('ruleId', `unknown rule ${JSON.stringify(id)}`, 404);
  }

  // Events.

  /**
   * Writes an event and one pending delivery per channel of its rule that exists and is enabled, at
   * most once per id (createNotificationEvent.lua); true when this call created it.
   */
  async createEventOnce(event: Omit<StoredEvent, 'channels'>, now = new Date()): Promise<boolean> {
    const ids = event.rule.channels;
    const raw = ids.length > 0 ? await this.client.hmget(this.keys.notification('channels'), ...ids) : [];
    const channels = ids.filter((_, i) => {
      const c = raw[i];
      return c != null && !(JSON.parse(c) as Channel).disabled;
    });
    const stored: StoredEvent = { ...event, channels };
    const status = pendingStatus('PENDING', '', now);
    return this.scripts.createEvent(
      event.id,
      now.getTime(),
      JSON.stringify(stored),
      JSON.stringify(status),
      channels,
    );
  }

  async storedEvent(id: string): Promise<StoredEvent> {
    const e = await this.getJson<StoredEvent>('events', id);
    if (!e) throw new NotificationInputError('eventId', `unknown event ${JSON.stringify(id)}`, 404);
    return e;
  }

  /** An event as the API answers it: OpenMeter's NotificationEvent with a status per channel. */
  async event(id: string): Promise<Record<string, unknown>> {
    return (await this.views([await this.storedEvent(id)]))[0] as Record<string, unknown>;
  }

  private views(events: StoredEvent[]): Promise<Record<string, unknown>[]> {
    return eventViews(this.client, this.keys, events);
  }

  async listEvents(
    filter: EventFilter,
    page?: number,
    pageSize?: number,
  ): Promise<Page<Record<string, unknown>>> {
    const ids = await this.client.zrevrangebyscore(
      this.keys.notification('index'),
      filter.to ?? '+inf',
      filter.from ?? '-inf',
      'LIMIT',
      0,
      MAX_EVENTS_SCANNED,
    );
    const raw = ids.length > 0 ? await this.client.hmget(this.keys.notification('events'), ...ids) : [];
    const has = (list: string[] | undefined, value: string | string[]) =>
      !list ||
      list.length === 0 ||
      (Array.isArray(value) ? value.some((v) => list.includes(v)) : list.includes(value));
    const events = raw
      .filter((r): r is string => r !== null)
      .map((r) => JSON.parse(r) as StoredEvent)
      .filter(
        (e) =>
          has(filter.rule, e.rule.id) &&
          has(filter.channel, e.channels) &&
          has(filter.feature, e.feature) &&
          has(filter.subject, e.subject),
      );
    const p = paginate(events, page, pageSize);
    return { ...p, items: await this.views(p.items) };
  }

  /** rules/{id}/test: a sample event of the rule's type, delivered to its channels like a real one. */
  async testRule(id: string): Promise<Record<string, unknown>> {
    const rule = await this.rule(id);
    const now = new Date();
    const eventId = `test-${randomUUID()}`;
    const payload = buildPayload(eventId, rule.type, sampleJob(rule, now), rule.thresholds?.[0], now);
    const job = sampleJob(rule, now);
    await this.createEventOnce(
      {
        id: eventId,
        type: rule.type,
        createdAt: now.toISOString(),
        rule,
        feature: job.feature,
        subject: job.subject,
        payload,
      },
      now,
    );
    return this.event(eventId);
  }

  /** Delivers an event again (to `channels`, default all of it), under the same webhook-id. */
  async resend(id: string, channels?: string[]): Promise<void> {
    const event = await this.storedEvent(id);
    const targets = channels && channels.length > 0 ? channels : event.channels;
    for (const [i, c] of targets.entries())
      if (!event.channels.includes(c))
        throw new NotificationInputError(
          `body.channels.${i}`,
          `event ${id} was not sent to channel ${JSON.stringify(c)}`,
        );
    const now = new Date();
    const members = targets.map((c) => deliveryMember(c, id));
    const raw =
      members.length > 0 ? await this.client.hmget(this.keys.notification('deliveries'), ...members) : [];
    for (const [i, member] of members.entries()) {
      const previous = raw[i] ? (JSON.parse(raw[i]) as DeliveryStatus) : undefined;
      const status = pendingStatus('RESENDING', 'resend requested', now, previous?.attempts ?? []);
      await this.scripts.schedule(member, now.getTime(), JSON.stringify(status));
    }
  }

  /** Counts of deliveries due now and waiting (including leased ones), for the queue-depth gauge. */
  async depth(nowMs: number): Promise<{ due: number; total: number }> {
    const key = this.keys.notification('due');
    const [due, total] = await Promise.all([this.client.zcount(key, '-inf', nowMs), this.client.zcard(key)]);
    return { due, total };
  }
}
