import type { RedisClient, TallyKeys } from '../redis/index.js';
import { deliveryMember, ruleView, type DeliveryStatus, type StoredEvent } from './model.js';

/**
 * Events as the API answers them: OpenMeter's NotificationEvent, with a `deliveryStatus` per channel
 * read from the `deliveries` hash (and SENDING for a delivery under a lease, i.e. an attempt in flight).
 */
export async function eventViews(
  client: RedisClient,
  keys: TallyKeys,
  events: readonly StoredEvent[],
): Promise<Record<string, unknown>[]> {
  const members = events.flatMap((e) => e.channels.map((c) => deliveryMember(c, e.id)));
  const [raw, leases] =
    members.length > 0
      ? await Promise.all([
          client.hmget(keys.notification('deliveries'), ...members),
          client.hmget(keys.notification('leases'), ...members),
        ])
      : [[], []];
  // A leased delivery is being attempted now: SENDING (its stored status says what it waits for).
  const sending = new Set(members.filter((_, i) => leases[i] != null));
  const statuses = new Map(
    members.map((m, i) => [m, raw[i] ? (JSON.parse(raw[i]) as DeliveryStatus) : undefined]),
  );
  return events.map((e) => ({
    id: e.id,
    type: e.type,
    createdAt: e.createdAt,
    rule: ruleView(e.rule),
    deliveryStatus: e.channels.map((channelId) => {
      const member = deliveryMember(channelId, e.id);
      const s = statuses.get(member);
      return {
        state: sending.has(member) ? 'SENDING' : (s?.state ?? 'PENDING'),
        reason: s?.reason ?? '',
        updatedAt: s?.updatedAt ?? e.createdAt,
        channel: { id: channelId, type: 'WEBHOOK' },
        ...(s?.nextAttempt && (s.state === 'PENDING' || s.state === 'RESENDING')
          ? { nextAttempt: s.nextAttempt }
          : {}),
        attempts: s?.attempts ?? [],
      };
    }),
    payload: e.payload,
  }));
}
