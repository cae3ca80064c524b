/**
 * The typed layer over the notification scripts: one method per Lua script, which owns its KEYS (all
 * under the `{notify}` hash tag, built by TallyKeys) and its reply. See each script's header.
 */
import type { TallyKeys } from './keys.js';
import { runScript, type RedisClient } from './scripts.js';

export class NotificationScripts {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: TallyKeys,
  ) {}

  private k(kind: Parameters<TallyKeys['notification']>[0]): string {
    return this.keys.notification(kind);
  }

  /** createNotificationEvent.lua: true when created, false when the id existed. */
  async createEvent(
    eventId: string,
    createdAtMs: number,
    eventJson: string,
    statusJson: string,
    channelIds: readonly string[],
  ): Promise<boolean> {
    const reply = await runScript(
      this.client,
      'createNotificationEvent',
      [this.k('events'), this.k('index'), this.k('deliveries'), this.k('due')],
      [eventId, createdAtMs, eventJson, statusJson, ...channelIds],
    );
    return reply === 1;
  }

  /** claimNotificationDeliveries.lua: the claimed members with their status JSON ('' if none). */
  async claim(params: {
    nowMs: number;
    leaseMs: number;
    max: number;
    scan: number;
    perChannel: number;
    token: string;
    inFlight: ReadonlyMap<string, number>;
  }): Promise<[member: string, status: string][]> {
    const pairs: (string | number)[] = [];
    for (const [channel, n] of params.inFlight) if (n > 0) pairs.push(channel, n);
    const reply = (await runScript(
      this.client,
      'claimNotificationDeliveries',
      [this.k('due'), this.k('leases'), this.k('deliveries')],
      [params.nowMs, params.leaseMs, params.max, params.scan, params.perChannel, params.token, ...pairs],
    )) as string[];
    const out: [string, string][] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) out.push([reply[i] as string, reply[i + 1] as string]);
    return out;
  }

  /** finishNotificationDelivery.lua: false when the lease no longer held (the outcome was dropped). */
  async finish(
    member: string,
    token: string,
    statusJson: string,
    nextDueMs: number | undefined,
  ): Promise<boolean> {
    const reply = await runScript(
      this.client,
      'finishNotificationDelivery',
      [this.k('due'), this.k('leases'), this.k('deliveries')],
      [member, token, statusJson, nextDueMs === undefined ? '' : nextDueMs],
    );
    return reply === 1;
  }

  /** scheduleNotificationDelivery.lua. */
  async schedule(member: string, dueMs: number, statusJson: string): Promise<void> {
    await runScript(
      this.client,
      'scheduleNotificationDelivery',
      [this.k('due'), this.k('leases'), this.k('deliveries')],
      [member, dueMs, statusJson],
    );
  }
}
