/**
 * The Redis steps under notifications, on the shared test Redis: the feed writes one event per
 * notification and rule however often and however concurrently it is replayed, and concurrent claims
 * never hand the same attempt to two replicas while its lease holds.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { resolveConfig, type NotificationJob } from '../../../src/index.js';
import { NotificationFeed, NotificationStore } from '../../../src/notifications/index.js';
import { createTestRedis, testRedisUrl, uniquePrefix } from '../../support/redis.js';

const logger = pino({ level: 'silent' });

function setup() {
  const config = resolveConfig({
    redis: { url: testRedisUrl() },
    streams: { prefix: uniquePrefix('notify-feed') },
    notifications: { webhooks: { allow: ['127.0.0.1/32'] } },
  });
  const client = createTestRedis();
  return { config, client, store: new NotificationStore(client, config) };
}

const job = (subject: string, over: Partial<NotificationJob> = {}): NotificationJob => ({
  version: 1,
  type: 'entitlement.threshold',
  subject,
  feature: 'api',
  periodStart: '2026-01-01T00:00:00.000Z',
  periodEnd: '2026-02-01T00:00:00.000Z',
  usage: '5',
  balance: '5',
  overage: '0',
  allowance: '10',
  at: '2026-01-02T00:00:00.000Z',
  threshold: { id: 'p50', percent: 50, level: '5' },
  ...over,
});

describe('notification feed and claims', () => {
  it('writes one event per notification and matching rule, whatever the replays and racing feeds', async () => {
    const { store, client, config } = setup();
    const a = await store.createChannel({ type: 'WEBHOOK', name: 'a', url: 'http://127.0.0.1:1/a' });
    const b = await store.createChannel({ type: 'WEBHOOK', name: 'b', url: 'http://127.0.0.1:1/b' });
    const off = await store.createChannel({
      type: 'WEBHOOK',
      name: 'off',
      url: 'http://127.0.0.1:1/o',
      disabled: true,
    });
    const half = await store.createRule({
      type: 'entitlements.balance.threshold',
      name: 'half',
      channels: [a.id, b.id, off.id],
      thresholds: [
        { type: 'usage_percentage', value: 50 },
        { type: 'balance_value', value: 0 },
      ],
      features: ['api'],
    });
    await store.createRule({ type: 'entitlements.reset', name: 'resets', channels: [a.id] });
    await store.createRule({
      type: 'entitlements.balance.threshold',
      name: 'other feature',
      channels: [a.id],
      thresholds: [{ type: 'usage_percentage', value: 50 }],
      features: ['other'],
    });
    const jobs: NotificationJob[] = [];
    for (let s = 0; s < 20; s++) {
      jobs.push(job(`c${s}`));
      jobs.push(job(`c${s}`, { type: 'entitlement.exhausted', usage: '10', balance: '0' }));
      jobs.push(job(`c${s}`, { type: 'entitlement.reset', usage: '0', balance: '10' }));
      jobs.push(job(`c${s}`, { threshold: { id: 'p70', percent: 70, level: '7' } })); // no rule takes it
    }
    // Model: per subject, the 50% and exhausted events of `half`, and the reset event of `resets`.
    const feeds = [0, 1, 2].map(() => new NotificationFeed(new NotificationStore(client, config), logger));
    const created = await Promise.all(feeds.flatMap((f) => [f.handle(jobs), f.handle([...jobs].reverse())]));
    expect(created.reduce((x, y) => x + y, 0)).toBe(60);
    const all = await store.listEvents({}, 1, 1000);
    expect(all.totalCount).toBe(60);
    const ofHalf = await store.listEvents({ rule: [half.id] }, 1, 1000);
    expect(ofHalf.totalCount).toBe(40);
    // Deliveries: to the enabled channels only, one each.
    for (const e of ofHalf.items as { deliveryStatus: { channel: { id: string }; state: string }[] }[])
      expect(e.deliveryStatus.map((s) => s.channel.id).sort()).toEqual([a.id, b.id].sort());
    expect(await client.zcard(store.keys.notification('due'))).toBe(40 * 2 + 20);
    expect((await store.listEvents({ subject: ['c3'] })).totalCount).toBe(3);
    expect((await store.listEvents({ channel: [b.id] }, 1, 1000)).totalCount).toBe(40);
  });

  it('never hands one attempt to two claimers while its lease holds, and respects per-channel limits', async () => {
    const { store } = setup();
    const channels = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        store.createChannel({ type: 'WEBHOOK', name: `c${i}`, url: `http://127.0.0.1:1/${i}` }),
      ),
    );
    const rule = await store.createRule({
      type: 'entitlements.reset',
      name: 'r',
      channels: channels.map((c) => c.id),
    });
    for (let i = 0; i < 25; i++) await store.testRule(rule.id);
    const now = Date.now();
    const claim = (token: string) =>
      store.scripts.claim({
        nowMs: now,
        leaseMs: 60_000,
        max: 30,
        scan: 500,
        perChannel: 3,
        token,
        inFlight: new Map(),
      });
    // 9 claimers × 4 channels × 3 per channel ≥ 100 attempts.
    const claims = await Promise.all(Array.from({ length: 9 }, (_, i) => claim(`r${i}`)));
    const members = claims.flat().map(([m]) => m);
    expect(new Set(members).size).toBe(members.length); // disjoint
    expect(members.length).toBe(100);
    for (const c of claims) {
      const perChannel = new Map<string, number>();
      for (const [m] of c)
        perChannel.set(m.split('\n')[0] as string, (perChannel.get(m.split('\n')[0] as string) ?? 0) + 1);
      for (const n of perChannel.values()) expect(n).toBeLessThanOrEqual(3);
    }
    // Leased: nothing left to claim until the leases end; then they are due again.
    expect(await claim('late')).toEqual([]);
    const after = await store.scripts.claim({
      nowMs: now + 60_001,
      leaseMs: 1,
      max: 1000,
      scan: 1000,
      perChannel: 1000,
      token: 'x',
      inFlight: new Map(),
    });
    expect(after.length).toBe(100);
    // Only the current lease holder records an outcome.
    const [first] = after[0] as [string, string];
    expect(await store.scripts.finish(first, 'r0', '{}', undefined)).toBe(false);
    expect(await store.scripts.finish(first, 'x', '{"state":"SUCCESS"}', undefined)).toBe(true);
  });
});
