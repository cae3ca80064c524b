/**
 * `tally worker --metrics-port` under load: /metrics gauges move as a backlog drains, /readyz turns
 * unready when Redis stops and ready when it is back, and every metric the Grafana dashboard queries
 * exists in a real scrape (worker and `tally serve`).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageProducer, type UsageEvent } from '../../../src/index.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { createTestRedis, uniquePrefix, waitFor } from '../../support/redis.js';
import { startCli, type ChildServer } from './serve-process.js';

const MINUTE = 60_000;
const EVENTS = 150_000;
const PARTITIONS = 2;
const KEY = 'metrics-test-key-0123456789';

interface Sample {
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** Prometheus text format → metric name → samples. */
function parseMetrics(text: string): Map<string, Sample[]> {
  const out = new Map<string, Sample[]>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[k as string] = v as string;
    out.set(m[1] as string, [...(out.get(m[1] as string) ?? []), { labels, value: Number(m[3]) }]);
  }
  return out;
}

const total = (m: Map<string, Sample[]>, name: string) =>
  (m.get(name) ?? []).reduce((s, x) => s + x.value, 0);

async function scrape(url: string): Promise<Map<string, Sample[]>> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseMetrics(await res.text());
}

describe('worker metrics and health', () => {
  let redis: RedisServerHandle;
  let worker: ChildServer;
  let api: ChildServer;
  let raw: Record<string, unknown>;
  const scrapes: Map<string, Sample[]>[] = [];

  beforeAll(async () => {
    redis = await startRedisServer({ appendonly: true });
    const prefix = uniquePrefix('metrics');
    raw = {
      redis: { url: redis.url },
      streams: { prefix, partitions: PARTITIONS },
      windows: { grace: '100ms', idleTimeout: '300ms' },
      worker: { closeInterval: '50ms', blockMs: 200, leaseTtl: '2s' },
      rollups: { queues: [`${prefix}-billing`], keepCompleted: '1h' },
      meters: [
        {
          slug: 'tokens',
          eventType: 'llm',
          aggregation: 'SUM',
          valueProperty: '$.tokens',
          groupBy: { model: '$.model' },
          windowSize: 'MINUTE',
        },
      ],
      http: { apiKeys: [KEY] },
    };
    // The backlog, written before the worker starts: single-event entries, 30 minutes of event time.
    const producer = new UsageProducer({
      redis: redis.url,
      prefix,
      partitions: PARTITIONS,
      eventsPerEntry: 1,
    });
    const start = Math.floor(Date.now() / MINUTE) * MINUTE - 30 * MINUTE;
    const events: UsageEvent[] = Array.from({ length: EVENTS }, (_, i) => ({
      id: `m${i}`,
      source: 'metrics-test',
      type: 'llm',
      subject: `cust-${i % 50}`,
      time: new Date(start + Math.floor((i / EVENTS) * 29 * MINUTE)).toISOString(),
      data: { tokens: 1 + (i % 7), model: i % 3 === 0 ? 'a' : 'b' },
    }));
    for (let i = 0; i < EVENTS; i += 10_000) await producer.sendBatch(events.slice(i, i + 10_000));
    await producer.sendBatch(events.slice(0, 500)); // duplicates
    await producer.close();
    const client = createTestRedis({ url: redis.url });
    await client.xadd(`${prefix}:{p0}:events`, '*', 'event', '{"not":"an event"}'); // a dead letter
    await client.quit();
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    await api?.stop();
    await redis?.stop();
  });

  it('gauges move as the backlog drains', async () => {
    worker = await startCli(raw, (port) => ['worker', '--metrics-port', String(port)]);
    const lags: number[] = [];
    await waitFor(
      async () => {
        const m = await scrape(worker.url);
        scrapes.push(m);
        const lag = total(m, 'tally_partition_lag') + total(m, 'tally_partition_pending');
        // Once every partition reports: the worker starts its partitions one after another, so an early
        // scrape can see one partition's lag before the other's exists.
        if (m.get('tally_partition_lag')?.length === PARTITIONS) lags.push(lag);
        return m.has('tally_partition_lag') && lag === 0 && total(m, 'tally_events_applied_total') === EVENTS;
      },
      { timeoutMs: 90_000, intervalMs: 200, message: 'the backlog to drain' },
    );
    // Seen while draining: a large lag first, then smaller ones, then none.
    expect(lags[0]).toBeGreaterThan(10_000);
    expect(new Set(lags.filter((l) => l > 0)).size).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < lags.length; i++) expect(lags[i]).toBeLessThanOrEqual((lags[i - 1] as number) + 0);
    const last = scrapes[scrapes.length - 1] as Map<string, Sample[]>;
    expect(total(last, 'tally_worker_partitions_owned')).toBe(PARTITIONS);
    expect(
      last
        .get('tally_partition_lag')
        ?.map((s) => s.labels.tally_partition)
        .sort(),
    ).toEqual(['0', '1']);
    expect(total(last, 'tally_events_duplicate_total')).toBe(500);
    expect(total(last, 'tally_partition_dead_letters')).toBe(1);
    expect(total(last, 'tally_partition_oldest_pending_age')).toBe(0);
    // Event time reached the last event (about now - 1 min), so the event-time lag is that old, not 30 minutes.
    const eventLag = Math.max(...(last.get('tally_partition_event_time_lag') ?? []).map((s) => s.value));
    expect(eventLag).toBeGreaterThan(0);
    expect(eventLag).toBeLessThan(5 * MINUTE);
    // Open windows went up while events were applied, and closed windows produced rollups with a latency.
    expect(Math.max(...scrapes.map((m) => total(m, 'tally_partition_open_windows')))).toBeGreaterThan(0);
    await waitFor(async () => total(await scrape(worker.url), 'tally_rollup_latency_count') > 0, {
      message: 'rollups relayed',
    });
    expect(total(last, 'tally_batch_duration_count')).toBeGreaterThan(0);
  }, 120_000);

  it('answers /healthz and /readyz; unready while Redis is stopped, ready again after', async () => {
    expect((await fetch(`${worker.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${worker.url}/readyz`);
    const body = (await ready.json()) as { ready: boolean; checks: Record<string, { ok: boolean }> };
    expect(ready.status).toBe(200);
    expect(body).toMatchObject({
      ready: true,
      checks: {
        redis: { ok: true },
        worker: { ok: true },
        partitions: { ok: true },
        consuming: { ok: true },
      },
    });

    await redis.kill('SIGKILL');
    const down = await waitFor(
      async () => {
        const res = await fetch(`${worker.url}/readyz`);
        return res.status === 503
          ? ((await res.json()) as { checks: Record<string, { ok: boolean }> })
          : undefined;
      },
      { timeoutMs: 10_000, message: '/readyz to turn unready' },
    );
    expect(down.checks.redis?.ok).toBe(false);
    expect((await fetch(`${worker.url}/healthz`)).status).toBe(200);
    // Scraping still answers (without the Redis-read gauges) while Redis is down.
    const during = await scrape(worker.url);
    expect(during.has('tally_events_applied_total')).toBe(true);

    await redis.restart();
    await waitFor(async () => (await fetch(`${worker.url}/readyz`)).status === 200, {
      timeoutMs: 30_000,
      message: '/readyz to turn ready again',
    });
  }, 60_000);

  it('has every metric the Grafana dashboard queries in a real scrape (worker and tally serve)', async () => {
    api = await startCli(raw, (port) => ['serve', '--port', String(port), '--host', '127.0.0.1']);
    const res = await fetch(`${api.url}/api/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({
        id: 'api-1',
        source: 'metrics-test',
        type: 'llm',
        subject: 'cust-1',
        data: { tokens: 1, model: 'a' },
      }),
    });
    expect(res.status).toBe(204);
    const names = new Set([...(await scrape(worker.url)).keys(), ...(await scrape(api.url)).keys()]);
    const dashboard = JSON.parse(
      readFileSync(resolve(import.meta.dirname, '../../../deploy/grafana/tally.json'), 'utf8'),
    ) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const queried = new Set<string>();
    // The webhook panels' metrics come from the opt-in notifications role, which this test does not
    // run: test/integration/notifications/webhooks.test.ts holds them equal to its scrapes.
    for (const panel of dashboard.panels.filter((p) => !/^Webhook /.test(p.title))) {
      for (const { expr } of panel.targets) {
        // Metric names, not the label names of `by (...)` clauses.
        const metrics = [...expr.replace(/\bby \([^)]*\)/g, '').matchAll(/\b(tally_[a-z_]+)\b/g)].map(
          (m) => m[1] as string,
        );
        expect(metrics.length, `panel ${panel.title}: ${expr}`).toBeGreaterThan(0);
        for (const m of metrics) queried.add(m);
      }
    }
    expect(queried.size).toBeGreaterThanOrEqual(12);
    const missing = [...queried].filter((m) => !names.has(m));
    expect(missing, `dashboard metrics absent from the scrapes`).toEqual([]);
  }, 60_000);
});
