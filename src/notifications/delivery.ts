import { processConsumerName, RedisComponent } from '../redis/index.js';
import { instruments, observeBatch } from '../telemetry/index.js';
import {
  MAX_KEPT_ATTEMPTS,
  splitMember,
  type Channel,
  type DeliveryAttempt,
  type DeliveryStatus,
  type StoredEvent,
} from './model.js';
import { checkLease, defaultWebhookDeliveryOptions, type WebhookDeliveryOptions } from './options.js';
import { signatureHeaders } from './signing.js';
import { NotificationStore } from './store.js';

/** Most bytes of a receiver's answer kept in the delivery status. */
const KEPT_BODY_CHARS = 512;
const LEASE_MARGIN_MS = 5_000;
const DEPTH_REFRESH_MS = 1_000;

interface Outcome {
  attempt: DeliveryAttempt;
  /** Worth retrying (network error, timeout, non-2xx); false when it can never succeed as is. */
  retry: boolean;
  reason: string;
}

/**
 * The `notifications` role of `tally worker`: delivers notification events to webhook channels,
 * signed per Standard Webhooks, at least once, with the same webhook-id on every attempt.
 *
 * Attempts due are claimed from Redis under a lease (claimNotificationDeliveries.lua), so replicas
 * never make the same attempt at once and a dead replica's attempts are made again after the lease.
 * Retries are scheduled in the same sorted set (retrySchedule), so a restart resumes them. At most
 * `concurrency` attempts are in flight per replica and `perChannelConcurrency` per channel; a claim
 * skips channels at their limit, so one slow or dead endpoint never delays the others.
 */
export class WebhookDelivery extends RedisComponent {
  private readonly store: NotificationStore;
  private readonly settings: WebhookDeliveryOptions['config']['notifications']['webhooks'];
  private readonly leaseMs: number;
  private readonly scan: number;
  private readonly consumer: string;
  private readonly inFlight = new Map<string, number>();
  private readonly running = new Set<Promise<void>>();
  private inFlightTotal = 0;
  private claims = 0;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private depth = { due: 0, total: 0 };
  private depthAt = 0;
  private stopObserving: (() => void) | undefined;

  constructor(options: WebhookDeliveryOptions) {
    const opts = { ...defaultWebhookDeliveryOptions, ...options };
    super(
      opts.config.redis,
      { connection: opts.connection, logger: opts.logger },
      { component: 'notifications' },
    );
    this.settings = opts.config.notifications.webhooks;
    this.leaseMs = opts.leaseMs ?? this.settings.timeoutMs + LEASE_MARGIN_MS;
    checkLease(this.leaseMs, this.settings.timeoutMs);
    this.scan = opts.scan;
    this.consumer = opts.consumerName ?? processConsumerName();
    this.store = new NotificationStore(this.client, opts.config);
  }

  start(): Promise<void> {
    if (this.loop) return Promise.resolve();
    const observed = [instruments.notificationQueueDue, instruments.notificationQueueDepth];
    this.stopObserving = observeBatch((r) => {
      r.observe(instruments.notificationQueueDue, this.depth.due);
      r.observe(instruments.notificationQueueDepth, this.depth.total);
    }, observed);
    this.loop = this.run();
    this.logger.info(
      { concurrency: this.settings.concurrency, perChannel: this.settings.perChannelConcurrency },
      'webhook delivery started',
    );
    return Promise.resolve();
  }

  private async run(): Promise<void> {
    while (!this.isClosing) {
      let claimedAll = false;
      try {
        const free = this.settings.concurrency - this.inFlightTotal;
        if (free > 0) {
          // A token per claim: an outcome recorded after its lease was taken over is dropped.
          const token = `${this.consumer}:${++this.claims}`;
          const claimed = await this.store.scripts.claim({
            nowMs: Date.now(),
            leaseMs: this.leaseMs,
            max: free,
            scan: this.scan,
            perChannel: this.settings.perChannelConcurrency,
            token,
            inFlight: this.inFlight,
          });
          for (const [member, status] of claimed) this.begin(member, status, token);
          claimedAll = claimed.length === free;
        }
        if (Date.now() - this.depthAt >= DEPTH_REFRESH_MS) {
          this.depth = await this.store.depth(Date.now());
          this.depthAt = Date.now();
        }
        this.failures.succeeded('claim');
      } catch (err) {
        this.failures.failed('claim', undefined, err);
      }
      if (this.isClosing) break;
      // Claimed as many as there was room for: wait for a free slot. Else: for the next poll or a slot.
      await new Promise<void>((resolve) => {
        const timer = claimedAll ? undefined : setTimeout(resolve, this.settings.pollIntervalMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  private begin(member: string, rawStatus: string, token: string): void {
    const { channelId } = splitMember(member);
    this.inFlight.set(channelId, (this.inFlight.get(channelId) ?? 0) + 1);
    this.inFlightTotal++;
    const p = this.attempt(member, rawStatus, token)
      .catch((err: unknown) => this.failures.failed('deliver', undefined, err))
      .finally(() => {
        const n = (this.inFlight.get(channelId) ?? 1) - 1;
        if (n <= 0) this.inFlight.delete(channelId);
        else this.inFlight.set(channelId, n);
        this.inFlightTotal--;
        this.running.delete(p);
        this.wake?.();
      });
    this.running.add(p);
  }

  private async attempt(member: string, rawStatus: string, token: string): Promise<void> {
    const { channelId, eventId } = splitMember(member);
    const previous: DeliveryStatus | undefined = rawStatus
      ? (JSON.parse(rawStatus) as DeliveryStatus)
      : undefined;
    const [channel, event] = await Promise.all([
      this.store.channel(channelId).catch(() => undefined),
      this.store.storedEvent(eventId).catch(() => undefined),
    ]);
    const outcome: Outcome =
      !channel || !event
        ? this.refused(!channel ? 'the channel was deleted' : 'the event was deleted')
        : channel.disabled
          ? this.refused('the channel is disabled')
          : await this.send(channel, event);
    const now = Date.now();
    const attemptCount = (previous?.attemptCount ?? 0) + 1;
    const attempts = [...(previous?.attempts ?? []), outcome.attempt].slice(-MAX_KEPT_ATTEMPTS);
    const schedule = this.settings.retryScheduleMs;
    const success = outcome.attempt.state === 'SUCCESS';
    const nextDue =
      !success && outcome.retry && attemptCount < schedule.length
        ? now + (schedule[attemptCount] as number)
        : undefined;
    const status: DeliveryStatus = {
      state: success ? 'SUCCESS' : nextDue !== undefined ? 'PENDING' : 'FAILED',
      reason: success ? '' : outcome.reason,
      updatedAt: new Date(now).toISOString(),
      attemptCount,
      ...(nextDue !== undefined ? { nextAttempt: new Date(nextDue).toISOString() } : {}),
      attempts,
    };
    const recorded = await this.store.scripts.finish(member, token, JSON.stringify(status), nextDue);
    instruments.notificationAttempts.add(1, { 'tally.outcome': success ? 'success' : 'failure' });
    instruments.notificationLatency.record(outcome.attempt.response.duration, {
      'tally.outcome': success ? 'success' : 'failure',
    });
    if (recorded && status.state === 'FAILED') instruments.notificationFailures.add(1);
  }

  private refused(reason: string): Outcome {
    return {
      attempt: {
        state: 'FAILED',
        response: { duration: 0, error: reason },
        timestamp: new Date().toISOString(),
      },
      retry: false,
      reason,
    };
  }

  /** One HTTP attempt: signed, with a timeout, no redirects followed. */
  private async send(channel: Channel, event: StoredEvent): Promise<Outcome> {
    const refusal = await this.store.policy.refusal(channel.url);
    if (refusal) return this.refused(refusal);
    const body = JSON.stringify(event.payload);
    const headers = {
      ...channel.customHeaders,
      'content-type': 'application/json',
      'user-agent': 'tally-webhooks/1',
      ...signatureHeaders(channel.signingSecret, event.id, Math.floor(Date.now() / 1000), body),
    };
    const started = performance.now();
    const timestamp = new Date().toISOString();
    try {
      const res = await fetch(channel.url, {
        method: 'POST',
        headers,
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.settings.timeoutMs),
      });
      const text = (await res.text()).slice(0, KEPT_BODY_CHARS);
      const duration = Math.round(performance.now() - started);
      const ok = res.status >= 200 && res.status < 300;
      return {
        attempt: {
          state: ok ? 'SUCCESS' : 'FAILED',
          response: { statusCode: res.status, body: text, duration },
          timestamp,
        },
        retry: true,
        reason: ok ? '' : `the receiver answered ${res.status}`,
      };
    } catch (err) {
      const duration = Math.round(performance.now() - started);
      const e = err as Error & { cause?: { code?: string } };
      const error =
        e.name === 'TimeoutError'
          ? `no answer within ${this.settings.timeoutMs} ms`
          : `${e.message}${e.cause?.code ? ` (${e.cause.code})` : ''}`;
      return {
        attempt: { state: 'FAILED', response: { duration, error }, timestamp },
        retry: true,
        reason: error,
      };
    }
  }

  /** Stops claiming, waits for the attempts in flight (each ends within the timeout). */
  protected async shutdown(): Promise<void> {
    this.wake?.();
    await this.loop;
    await Promise.allSettled([...this.running]);
    this.stopObserving?.();
  }
}
