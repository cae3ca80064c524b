/**
 * Notifications delivered as signed webhooks, end to end through the built CLI: `tally serve` (channels
 * and rules created with the real @openmeter/sdk), `tally worker` processes (metering, entitlements and
 * the opt-in notifications role), a real redis-server, and a receiver on 127.0.0.1 that verifies every
 * delivery with the real `standardwebhooks` and `svix` packages.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpenMeter } from '@openmeter/sdk';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { start, type Running } from '../../support/cli.js';
import { findFreePort, startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { uniquePrefix, waitFor } from '../../support/redis.js';
import { startCli, type ChildServer } from '../http/serve-process.js';
import { startReceiver, type Receiver } from './receiver.js';

const KEY = 'notify-test-key-0123456789';
const HOUR = 3_600_000;
const MINUTE = 60_000;

describe('webhook notifications', () => {
  let redis: RedisServerHandle;
  let api: ChildServer;
  let receiver: Receiver;
  let om: OpenMeter;
  let dir: string;
  let base: Record<string, unknown>;
  let files = 0;

  /** A worker config: the shared one with `webhooks` settings merged in. */
  const workerConfig = (webhooks: Record<string, unknown>): string => {
    const file = join(dir, `worker-${++files}.yaml`);
    const notifications = base.notifications as { webhooks: Record<string, unknown> };
    writeFileSync(
      file,
      stringify({ ...base, notifications: { webhooks: { ...notifications.webhooks, ...webhooks } } }),
    );
    return file;
  };
  const worker = (file: string, roles = 'notifications', extra: string[] = []): Running =>
    start(['worker', '--config', file, '--roles', roles, ...extra], {
      LOG_LEVEL: 'info',
    });

  const api2 = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${api.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${KEY}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return {
      status: res.status,
      type: res.headers.get('content-type'),
      body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined,
    };
  };

  // The SDK's declared types want server-set fields (id, createdAt) in create bodies and make every
  // answer optional: these wrappers only cast; the calls and their wire format are the SDK's own.
  type SdkChannel = { id: string; signingSecret?: string; name: string };
  type SdkEvent = {
    id: string;
    deliveryStatus: {
      state: string;
      channel: { id: string };
      attempts: { state: string; response: { statusCode?: number } }[];
    }[];
  };
  const sdk = {
    createChannel: async (b: Record<string, unknown>) =>
      (await om.notifications.channels.create(b as never)) as unknown as SdkChannel,
    updateChannel: async (id: string, b: Record<string, unknown>) =>
      (await om.notifications.channels.update(id, b as never)) as unknown as SdkChannel,
    createRule: async (b: Record<string, unknown>) =>
      (await om.notifications.rules.create(b as never)) as unknown as { id: string },
    event: async (id: string) => (await om.notifications.events.get(id)) as unknown as SdkEvent,
    events: async (q: Record<string, unknown>) =>
      (await om.notifications.events.list(q)) as unknown as { items: SdkEvent[] },
  };

  /** A channel to `receiver<path>` (created with the SDK), its secret registered with the receiver. */
  const channel = async (path: string) => {
    const c = await sdk.createChannel({ type: 'WEBHOOK', name: path, url: `${receiver.url}${path}` });
    expect(c.signingSecret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    receiver.secret(path, c.signingSecret as string);
    return c;
  };

  const testRule = async (channels: string[]) =>
    sdk.createRule({
      type: 'entitlements.balance.threshold',
      name: 'test rule',
      channels,
      thresholds: [{ type: 'usage_percentage', value: 75 }],
      features: ['other-feature'],
    });

  const sendTest = async (ruleId: string): Promise<{ id: string; createdAt: string }> => {
    const r = await api2('POST', `/api/v1/notification/rules/${ruleId}/test`);
    expect(r.status).toBe(201);
    return r.body as { id: string; createdAt: string };
  };

  beforeAll(async () => {
    redis = await startRedisServer();
    receiver = await startReceiver();
    dir = mkdtempSync(join(tmpdir(), 'tally-notify-'));
    const prefix = uniquePrefix('notify');
    base = {
      redis: { url: redis.url },
      streams: { prefix, partitions: 2 },
      windows: { grace: '100ms', idleTimeout: '300ms' },
      worker: { closeInterval: '50ms', blockMs: 200, leaseTtl: '2s', claimIdle: '1s' },
      rollups: { queues: [`${prefix}-billing`, `${prefix}-ent`], keepCompleted: '1h' },
      meters: [{ slug: 'calls', eventType: 'req', aggregation: 'COUNT', windowSize: 'MINUTE' }],
      http: { apiKeys: [KEY] },
      entitlements: {
        interval: '50ms',
        notificationsQueue: `${prefix}-notifications`,
        features: [{ key: 'api', meter: 'calls' }],
        defaults: [
          {
            feature: 'api',
            type: 'metered',
            usagePeriod: { interval: 'DAY', anchor: new Date(Date.now() - HOUR).toISOString() },
            limit: 10,
            thresholds: [{ percent: 50 }],
          },
        ],
      },
      notifications: {
        webhooks: {
          allow: ['127.0.0.1/32'],
          timeout: '1s',
          retrySchedule: ['0s', '300ms', '300ms', '300ms', '300ms'],
          pollInterval: '50ms',
        },
      },
    };
    api = await startCli(base, (port) => ['serve', '--port', String(port), '--host', '127.0.0.1']);
    om = new OpenMeter({ baseUrl: api.url, apiKey: KEY });
  }, 60_000);

  afterAll(async () => {
    await api?.stop();
    await receiver?.close();
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('validates channels and rules: 400 naming the field, 404 for unknown ids, private URLs refused', async () => {
    const bad = await api2('POST', '/api/v1/notification/channels', {
      type: 'WEBHOOK',
      name: 'x',
      url: 'ftp://example.com/',
    });
    expect(bad.status).toBe(400);
    expect(bad.type).toBe('application/problem+json');
    expect(bad.body?.errors).toEqual([expect.objectContaining({ field: 'body.url' })]);
    expect(String(bad.body?.detail)).toMatch(/only http and https/);
    for (const url of [
      'http://10.1.2.3/x',
      'http://169.254.169.254/latest',
      'http://[::1]:80/',
      'http://localhost/',
      'http://192.168.0.1/',
    ]) {
      const r = await api2('POST', '/api/v1/notification/channels', { type: 'WEBHOOK', name: 'x', url });
      expect(r.status, url).toBe(400);
      expect(String(r.body?.detail), url).toMatch(/notifications\.webhooks\.allow/);
    }
    const noName = await api2('POST', '/api/v1/notification/channels', {
      type: 'WEBHOOK',
      url: 'http://127.0.0.1:1/',
    });
    expect(noName.status).toBe(400);
    expect(noName.body?.errors).toEqual([expect.objectContaining({ field: 'body.name' })]);
    const badSecret = await api2('POST', '/api/v1/notification/channels', {
      type: 'WEBHOOK',
      name: 'x',
      url: 'http://127.0.0.1:1/',
      signingSecret: 'nope',
    });
    expect(badSecret.status).toBe(400);
    expect(String(badSecret.body?.detail)).toMatch(/body\.signingSecret/);

    const c = await channel('/validate');
    expect(await om.notifications.channels.get(c.id)).toMatchObject({
      id: c.id,
      url: `${receiver.url}/validate`,
      disabled: false,
    });
    const updated = await sdk.updateChannel(c.id, {
      type: 'WEBHOOK',
      name: 'renamed',
      url: `${receiver.url}/validate`,
    });
    expect(updated).toMatchObject({ name: 'renamed', signingSecret: c.signingSecret });
    expect(((await om.notifications.channels.list())?.items ?? []).map((x) => x.id)).toContain(c.id);

    const unknownChannel = await api2('POST', '/api/v1/notification/rules', {
      type: 'entitlements.balance.threshold',
      name: 'r',
      channels: [c.id, 'nope'],
      thresholds: [{ type: 'usage_percentage', value: 50 }],
    });
    expect(unknownChannel.status).toBe(400);
    expect(unknownChannel.body?.errors).toEqual([
      { field: 'body.channels.1', detail: 'unknown channel "nope"' },
    ]);
    const badType = await api2('POST', '/api/v1/notification/rules', {
      type: 'entitlements.balance.threshold',
      name: 'r',
      channels: [c.id],
      thresholds: [{ type: 'weird', value: 50 }],
    });
    expect(badType.status).toBe(400);
    expect(String(badType.body?.detail)).toMatch(/body\.thresholds\.0\.type/);
    const noThresholds = await api2('POST', '/api/v1/notification/rules', {
      type: 'entitlements.balance.threshold',
      name: 'r',
      channels: [c.id],
    });
    expect(noThresholds.body?.errors).toEqual([expect.objectContaining({ field: 'body.thresholds' })]);

    for (const path of [
      '/api/v1/notification/channels/nope',
      '/api/v1/notification/rules/nope',
      '/api/v1/notification/events/nope',
    ]) {
      const r = await api2('GET', path);
      expect(r.status, path).toBe(404);
      expect(r.type).toBe('application/problem+json');
    }
    expect((await api2('POST', '/api/v1/notification/events/nope/resend', {})).status).toBe(404);
    expect((await api2('POST', '/api/v1/notification/rules/nope/test')).status).toBe(404);
    await om.notifications.channels.delete(c.id);
    expect((await api2('DELETE', `/api/v1/notification/channels/${c.id}`)).status).toBe(404);

    const doc = (await (await fetch(`${api.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    for (const p of [
      '/api/v1/notification/channels',
      '/api/v1/notification/channels/{channelId}',
      '/api/v1/notification/rules',
      '/api/v1/notification/rules/{ruleId}',
      '/api/v1/notification/rules/{ruleId}/test',
      '/api/v1/notification/events',
      '/api/v1/notification/events/{eventId}',
      '/api/v1/notification/events/{eventId}/resend',
    ])
      expect(doc.paths, p).toHaveProperty([p]);
  });

  it('delivers one verified webhook per threshold crossed by ingested usage (50% and 100%), with two evaluators', async () => {
    const c = await channel('/thresholds');
    const rule = await sdk.createRule({
      type: 'entitlements.balance.threshold',
      name: 'api at 50% and 100%',
      channels: [c.id],
      thresholds: [
        { type: 'usage_percentage', value: 50 },
        { type: 'usage_percentage', value: 100 },
      ],
      features: ['api'],
    });
    const file = workerConfig({});
    worker(file, 'metering,entitlements,notifications');
    worker(file, 'metering,entitlements,notifications');
    const minute = Math.floor(Date.now() / MINUTE) * MINUTE - 5 * MINUTE;
    const ingest = (from: number, n: number, at: number) =>
      om.events.ingest(
        Array.from({ length: n }, (_, i) => ({
          id: `t-${from + i}`,
          source: 'test',
          type: 'req',
          subject: 'cust-1',
          time: new Date(at + i),
          data: {},
        })),
      );
    await ingest(0, 6, minute); // 6 of 10: crosses 50%
    const first = await waitFor(() => receiver.of('/thresholds').length >= 1 && receiver.of('/thresholds'), {
      timeoutMs: 30_000,
      message: 'the 50% webhook',
    });
    expect(first[0]?.payload).toMatchObject({
      type: 'entitlements.balance.threshold',
      data: {
        threshold: { type: 'usage_percentage', value: 50 },
        feature: { key: 'api' },
        subject: { key: 'cust-1' },
        value: { usage: 6, balance: 4 },
      },
    });
    await ingest(100, 5, minute + MINUTE); // 11 of 10: crosses 100% (exhausted)
    const events = await waitFor(
      async () => {
        const list = await sdk.events({ rule: [rule.id] });
        const done = list.items.every((e) => e.deliveryStatus.every((s) => s.state === 'SUCCESS'));
        return list.items.length === 2 && done && list.items;
      },
      { timeoutMs: 30_000, message: 'two events, delivered' },
    );
    const got = receiver.of('/thresholds');
    expect(got.map((d) => d.verified)).toEqual([true, true]);
    expect(got.map((d) => d.id).sort()).toEqual(events.map((e) => e.id).sort());
    expect(got[1]?.payload).toMatchObject({
      id: got[1]?.id,
      data: {
        threshold: { type: 'usage_percentage', value: 100 },
        value: { usage: 11, balance: 0, overage: 1 },
      },
    });
    expect(events.map((e) => e.deliveryStatus.map((s) => s.attempts.length))).toEqual([[1], [1]]);
  }, 90_000);

  it('retries 500, 500, a timeout, then delivers, with the same webhook-id every time', async () => {
    const c = await channel('/flaky');
    receiver.script('/flaky', [500, 500, 'hang'], 200);
    const rule = await testRule([c.id]);
    worker(workerConfig({}));
    const event = await sendTest(rule.id);
    const done = await waitFor(
      async () => {
        const e = await sdk.event(event.id);
        return e.deliveryStatus[0]?.state === 'SUCCESS' && e;
      },
      { timeoutMs: 20_000, message: 'delivered after retries' },
    );
    const got = receiver.of('/flaky');
    expect(got.map((d) => d.answer)).toEqual([500, 500, 'hang', 200]);
    expect(new Set(got.map((d) => d.id))).toEqual(new Set([event.id]));
    expect(got.every((d) => d.verified)).toBe(true);
    const attempts = done.deliveryStatus[0]?.attempts ?? [];
    expect(attempts.map((a) => a.state)).toEqual(['FAILED', 'FAILED', 'FAILED', 'SUCCESS']);
    expect(attempts.map((a) => a.response.statusCode ?? null)).toEqual([500, 500, null, 200]);
    // Each retry waited for its place in the (shortened) schedule: 300 ms after the previous answer.
    for (let i = 1; i < got.length; i++)
      expect((got[i] as { at: number }).at - (got[i - 1] as { at: number }).at).toBeGreaterThanOrEqual(290);
  }, 40_000);

  it('marks a delivery failed after the last attempt, and resend delivers it again with the same id', async () => {
    const c = await channel('/dead');
    receiver.script('/dead', [500, 500, 500, 500, 500], 200);
    const rule = await testRule([c.id]);
    const metricsPort = await findFreePort();
    worker(workerConfig({}), 'notifications', ['--metrics-port', String(metricsPort)]);
    const event = await sendTest(rule.id);
    const failed = await waitFor(
      async () => {
        const e = await sdk.event(event.id);
        return e.deliveryStatus[0]?.state === 'FAILED' && e;
      },
      { timeoutMs: 20_000, message: 'failed after 5 attempts' },
    );
    expect(failed.deliveryStatus[0]?.attempts).toHaveLength(5);
    expect(receiver.of('/dead')).toHaveLength(5);
    await om.notifications.events.resend(event.id);
    await waitFor(async () => (await sdk.event(event.id)).deliveryStatus[0]?.state === 'SUCCESS', {
      timeoutMs: 20_000,
      message: 'resent',
    });
    const got = receiver.of('/dead');
    expect(got).toHaveLength(6);
    expect(got[5]).toMatchObject({ id: event.id, verified: true, answer: 200 });
    // The same body too: a resend is the same event.
    expect(got[5]?.body).toBe(got[0]?.body);
    // The role's metrics, in /metrics and in every webhook panel of the Grafana dashboard.
    const metrics = await waitFor(
      async () => {
        const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        // The queue gauges are refreshed about once a second.
        const settled =
          /tally_notification_attempts_total\{tally_outcome="success"\} 1\b/.test(text) &&
          /tally_notification_queue_depth 0\b/.test(text);
        return settled && text;
      },
      { message: 'the success counted in /metrics' },
    );
    expect(metrics).toMatch(/tally_notification_attempts_total\{tally_outcome="failure"\} 5\b/);
    expect(metrics).toMatch(/tally_notification_failures_total 1\b/);
    expect(metrics).toMatch(/tally_notification_latency_bucket\{/);
    expect(metrics).toMatch(/tally_notification_queue_due 0\b/);
    const dashboard = JSON.parse(
      readFileSync(join(import.meta.dirname, '../../../deploy/grafana/tally.json'), 'utf8'),
    ) as { panels: { title: string; targets: { expr: string }[] }[] };
    const webhookPanels = dashboard.panels.filter((p) => p.title.startsWith('Webhook '));
    expect(webhookPanels.length).toBe(3);
    for (const p of webhookPanels)
      for (const t of p.targets)
        for (const [name] of t.expr.replace(/\bby \([^)]*\)/g, '').matchAll(/\btally_[a-z_]+\b/g))
          expect(metrics, `${p.title}: ${name}`).toContain(`${name}`);
    // A test event of a 75% rule on a feature: OpenMeter's payload shape.
    expect(got[5]?.payload).toMatchObject({
      id: event.id,
      type: 'entitlements.balance.threshold',
      data: { feature: { key: 'other-feature' }, threshold: { type: 'usage_percentage', value: 75 } },
    });
  }, 40_000);

  it('resumes pending retries after the worker is SIGKILLed, delivering each once', async () => {
    const c = await channel('/restart');
    // Fails until the worker is gone, then succeeds.
    receiver.script('/restart', [], 500);
    const rule = await testRule([c.id]);
    const file = workerConfig({ retrySchedule: ['0s', '2s', '2s', '2s'] });
    const w1 = worker(file);
    const sent = [await sendTest(rule.id), await sendTest(rule.id), await sendTest(rule.id)];
    await waitFor(() => new Set(receiver.of('/restart').map((d) => d.id)).size === 3, {
      timeoutMs: 10_000,
      message: 'a first (failing) attempt of each',
    });
    w1.child.kill('SIGKILL');
    await w1.stop();
    const before = receiver.of('/restart').length;
    receiver.script('/restart', [], 200);
    worker(file);
    await waitFor(
      () => {
        const ok = receiver.of('/restart').filter((d) => d.answer === 200);
        return ok.length >= 3;
      },
      { timeoutMs: 20_000, message: 'the retries, after the restart' },
    );
    await waitFor(
      async () => {
        const list = await sdk.events({ rule: [rule.id] });
        return list.items.every((e) => e.deliveryStatus[0]?.state === 'SUCCESS');
      },
      { timeoutMs: 10_000, message: 'all recorded as delivered' },
    );
    const ok = receiver.of('/restart').filter((d) => d.answer === 200);
    expect(ok.map((d) => d.id).sort()).toEqual(sent.map((e) => e.id).sort());
    expect(
      receiver
        .of('/restart')
        .slice(before)
        .every((d) => d.verified),
    ).toBe(true);
  }, 60_000);

  it('a hanging endpoint does not delay a healthy one by more than 1 s; rule test delivers to both', async () => {
    const hang = await channel('/hang');
    const healthy = await channel('/healthy');
    receiver.script('/hang', [], 'hang');
    const rule = await testRule([hang.id, healthy.id]);
    // A long timeout: a hung attempt holds its slot for 10 s, so any head-of-line blocking shows.
    await worker(workerConfig({ timeout: '10s', concurrency: 4, perChannelConcurrency: 2 })).waitForOutput(
      /webhook delivery started/,
    );
    const sent: { id: string; at: number }[] = [];
    for (let i = 0; i < 8; i++) {
      const e = await sendTest(rule.id);
      sent.push({ id: e.id, at: Date.parse(e.createdAt) });
    }
    await waitFor(() => receiver.of('/healthy').length === 8, {
      timeoutMs: 10_000,
      message: 'the healthy deliveries',
    });
    for (const s of sent) {
      const d = receiver.of('/healthy').find((x) => x.id === s.id);
      expect(d?.verified).toBe(true);
      expect((d?.at ?? Infinity) - s.at, s.id).toBeLessThan(1_000);
    }
    // The hanging channel holds its own limit, no more: two attempts in flight (SENDING), the rest waiting.
    expect(receiver.of('/hang').length).toBe(2);
    const states = (await sdk.events({ rule: [rule.id] })).items.map(
      (e) => e.deliveryStatus.find((d) => d.channel.id === hang.id)?.state,
    );
    expect(states.filter((s) => s === 'SENDING')).toHaveLength(2);
    expect(states.filter((s) => s === 'PENDING')).toHaveLength(6);
  }, 40_000);
});
