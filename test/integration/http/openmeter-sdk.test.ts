/**
 * The real `@openmeter/sdk`, unchanged, pointed at `tally serve` (a child process of the built CLI):
 * it ingests single events and batches, a real worker meters them, and its meter queries (window
 * sizes, time zones, subjects, group-by, filters) and entitlement values are compared with an
 * independent model computed from the events sent.
 */
import { OpenMeter, isHTTPError } from '@openmeter/sdk';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EntitlementEvaluator,
  resolveConfig,
  TallyKeys,
  TallyWorker,
  type TallyConfig,
} from '../../../src/index.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { createTestRedis, uniquePrefix, waitFor } from '../../support/redis.js';
import { toRecord } from '../../support/tally.js';
import { startCli, type ChildServer } from './serve-process.js';

const KEY = 'sdk-test-key-0123456789';
const MINUTE = 60_000;
const HOUR = 3_600_000;
const KOLKATA = 5.5 * HOUR;

interface Sent {
  id: string;
  subject: string;
  time: number;
  tokens: number;
  model: string;
}

/** Deterministic events over the last 100 minutes, in time order (values are multiples of 1/8: exact in binary). */
function makeSent(n: number, now: number): Sent[] {
  let s = 11;
  const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const start = now - 100 * MINUTE;
  return Array.from({ length: n }, (_, i) => ({
    id: `ev-${i}`,
    subject: `cust-${Math.floor(rnd() * 4)}`,
    time: start + Math.floor((i / n) * 99 * MINUTE),
    tokens: Math.floor(rnd() * 1000) + 0.125 * Math.floor(rnd() * 8),
    model: rnd() < 0.6 ? 'a' : 'b',
  }));
}

/** The model: sums by (row start, subject or null, model or null), rows from `rowStart`. */
function modelRows(
  sent: readonly Sent[],
  opts: {
    rowStart: (t: number) => number;
    rowEnd: (start: number) => number;
    bySubject: boolean;
    byModel: boolean;
    subjects?: string[];
    models?: string[];
    from: number;
    to: number;
  },
) {
  const rows = new Map<
    string,
    {
      value: number;
      windowStart: string;
      windowEnd: string;
      subject: string | null;
      groupBy: Record<string, string>;
    }
  >();
  for (const e of sent) {
    if (e.time < opts.from || e.time >= opts.to) continue;
    if (opts.subjects && !opts.subjects.includes(e.subject)) continue;
    if (opts.models && !opts.models.includes(e.model)) continue;
    const start = opts.rowStart(e.time);
    const subject = opts.bySubject ? e.subject : null;
    const groupBy: Record<string, string> = opts.byModel ? { model: e.model } : {};
    const key = JSON.stringify([start, subject, groupBy]);
    const row = rows.get(key) ?? {
      value: 0,
      windowStart: new Date(start).toISOString(),
      windowEnd: new Date(opts.rowEnd(start)).toISOString(),
      subject,
      groupBy,
    };
    row.value += e.tokens;
    rows.set(key, row);
  }
  return [...rows.values()].sort((a, b) =>
    JSON.stringify([a.windowStart, a.subject, a.groupBy]) <
    JSON.stringify([b.windowStart, b.subject, b.groupBy])
      ? -1
      : 1,
  );
}

function normalize(
  data: {
    value: number;
    windowStart: Date;
    windowEnd: Date;
    subject: string | null;
    groupBy: Record<string, string | null>;
  }[],
) {
  return data
    .map((r) => ({
      value: r.value,
      windowStart: r.windowStart.toISOString(),
      windowEnd: r.windowEnd.toISOString(),
      subject: r.subject,
      groupBy: r.groupBy,
    }))
    .sort((a, b) =>
      JSON.stringify([a.windowStart, a.subject, a.groupBy]) <
      JSON.stringify([b.windowStart, b.subject, b.groupBy])
        ? -1
        : 1,
    );
}

// Its own redis-server: other test files drop connections on the shared one (CLIENT KILL), which
// `tally serve` rightly answers with 503.
const redis: RedisServerHandle = await startRedisServer();

describe('@openmeter/sdk against tally serve', () => {
  const prefix = uniquePrefix('sdk');
  const raw = {
    redis: { url: redis.url },
    streams: { prefix, partitions: 3 },
    windows: { grace: '100ms', idleTimeout: '300ms' },
    worker: { closeInterval: '50ms', blockMs: 200, leaseTtl: '1s' },
    rollups: { queues: [`${prefix}-billing`, `${prefix}-ent`], keepCompleted: '1h' },
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
    entitlements: {
      features: [{ key: 'tokens_a', meter: 'tokens', filter: { model: 'a' } }, { key: 'sso' }],
      defaults: [
        {
          feature: 'tokens_a',
          type: 'metered',
          usagePeriod: { interval: 'DAY' },
          limit: 5000,
          limitType: 'hard',
        },
        { feature: 'sso', type: 'boolean' },
      ],
    },
    http: { apiKeys: [KEY] },
  };
  const config: TallyConfig = resolveConfig(raw, {});
  const now = Date.now();
  const sent = makeSent(3000, now);
  let server: ChildServer;
  let worker: TallyWorker;
  let evaluator: EntitlementEvaluator;
  let om: OpenMeter;

  beforeAll(async () => {
    const logger = pino({ level: 'silent' });
    worker = new TallyWorker({ config, logger });
    evaluator = new EntitlementEvaluator({ config, logger });
    await worker.start();
    await evaluator.start();
    server = await startCli(raw, (port) => ['serve', '--port', String(port), '--host', '127.0.0.1']);
    om = new OpenMeter({ baseUrl: server.url, apiKey: KEY });
  });
  afterAll(async () => {
    await server?.stop();
    await evaluator?.close();
    await worker?.close();
    await redis.stop();
  });

  const cloudEvent = (e: Sent) => ({
    id: e.id,
    source: 'sdk-test',
    type: 'llm',
    subject: e.subject,
    time: new Date(e.time),
    data: { tokens: e.tokens, model: e.model },
  });

  it('ingests single events and batches; a retried batch is counted once', async () => {
    for (const e of sent.slice(0, 20)) await om.events.ingest(cloudEvent(e));
    for (let i = 20; i < sent.length; i += 500)
      await om.events.ingest(sent.slice(i, i + 500).map(cloudEvent));
    // A client retry: the same events again (same source and id).
    await om.events.ingest(sent.slice(100, 300).map(cloudEvent));
    const client = createTestRedis({ url: redis.url });
    const keys = new TallyKeys(prefix);
    await waitFor(
      async () => {
        for (let p = 0; p < config.partitions; p++) {
          const groups = (await client.xinfo('GROUPS', keys.events(p))) as unknown[][];
          const g = groups.map((x) => toRecord(x)).find((x) => x.name === config.consumerGroup);
          if (!g || Number(g.pending) > 0 || Number(g.lag) > 0) return false;
        }
        return true;
      },
      { timeoutMs: 30_000, message: 'the worker to apply every event' },
    );
  });

  it('lists and gets meters', async () => {
    const meters = (await om.meters.list()) ?? [];
    expect(meters).toHaveLength(1);
    expect(meters[0]).toMatchObject({
      slug: 'tokens',
      aggregation: 'SUM',
      eventType: 'llm',
      valueProperty: '$.tokens',
      groupBy: { model: '$.model' },
    });
    expect((await om.meters.get('tokens'))?.slug).toBe('tokens');
    // OpenMeter's meter fields: a ULID id, stable for the slug (from the registry), a name and times.
    const meter = meters[0] as {
      id: string;
      name: string;
      createdAt: Date | string;
      updatedAt: Date | string;
    };
    expect(meter.id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(meter.name).toBe('tokens');
    expect(new Date(meter.createdAt).getTime()).toBeGreaterThan(Date.parse('2026-01-01'));
    expect(new Date(meter.updatedAt).getTime()).toBe(new Date(meter.createdAt).getTime());
    expect((await om.meters.get(meter.id))?.slug).toBe('tokens');
    const byId = await om.meters.query(meter.id, { windowSize: 'HOUR' });
    expect(byId.data.length).toBeGreaterThan(0);
    await expect(om.meters.get('nope')).rejects.toSatisfy(
      (err: unknown) => isHTTPError(err) && err.status === 404,
    );
  });

  it('queries by MINUTE per subject with default bounds (windows still open included)', async () => {
    const result = await om.meters.query('tokens', { windowSize: 'MINUTE', groupBy: ['subject'] });
    // As OpenMeter: bounds that were not asked for are not echoed.
    expect(result.from).toBeUndefined();
    expect(result.to).toBeUndefined();
    expect(result.windowSize).toBe('MINUTE');
    const want = modelRows(sent, {
      rowStart: (t) => Math.floor(t / MINUTE) * MINUTE,
      rowEnd: (s) => s + MINUTE,
      bySubject: true,
      byModel: false,
      from: 0,
      to: Infinity,
    });
    expect(result.windowSize).toBe('MINUTE');
    expect(normalize(result.data)).toEqual(want);

    // The same query as CSV: one line per row, exact decimal values.
    const csv = await fetch(`${server.url}/api/v1/meters/tokens/query?windowSize=MINUTE&groupBy=subject`, {
      headers: { accept: 'text/csv', authorization: `Bearer ${KEY}` },
    });
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    const [header, ...lines] = (await csv.text()).trim().split('\r\n');
    expect(header).toBe('windowStart,windowEnd,subject,value');
    const rows = lines
      .map((l) => l.split(','))
      .map(([windowStart, windowEnd, subject, value]) => ({
        windowStart,
        windowEnd,
        subject,
        value: Number(value),
      }));
    expect(
      rows.sort((a, b) =>
        JSON.stringify([a.windowStart, a.subject]) < JSON.stringify([b.windowStart, b.subject]) ? -1 : 1,
      ),
    ).toEqual(
      want.map((w) => ({
        windowStart: w.windowStart,
        windowEnd: w.windowEnd,
        subject: w.subject,
        value: w.value,
      })),
    );
  });

  it('queries by HOUR in Asia/Kolkata for two subjects, grouped by model, filtered to one model', async () => {
    const kolkataHour = (t: number) => Math.floor((t + KOLKATA) / HOUR) * HOUR - KOLKATA;
    const from = kolkataHour(now - 3 * HOUR);
    const to = kolkataHour(now) + HOUR;
    const result = await om.meters.query('tokens', {
      from: new Date(from),
      to: new Date(to),
      windowSize: 'HOUR',
      windowTimeZone: 'Asia/Kolkata',
      subject: ['cust-1', 'cust-2'],
      groupBy: ['model'],
      filterGroupBy: { model: 'a' },
    });
    const want = modelRows(sent, {
      rowStart: kolkataHour,
      rowEnd: (s) => s + HOUR,
      bySubject: true,
      byModel: true,
      subjects: ['cust-1', 'cust-2'],
      models: ['a'],
      from,
      to,
    });
    expect(want.length).toBeGreaterThan(2);
    expect(new Date(result.from as Date).getTime()).toBe(from);
    expect(new Date(result.to as Date).getTime()).toBe(to);
    expect(normalize(result.data)).toEqual(want);
  });

  it('queries one total over all subjects, and by MONTH (the same total, whole month bounds)', async () => {
    const from = Math.floor((now - 2 * HOUR) / MINUTE) * MINUTE;
    const to = Math.floor(now / MINUTE) * MINUTE + MINUTE;
    const total = await om.meters.query('tokens', { from: new Date(from), to: new Date(to) });
    const want = modelRows(sent, {
      rowStart: () => from,
      rowEnd: () => to,
      bySubject: false,
      byModel: false,
      from,
      to,
    });
    expect(normalize(total.data)).toEqual(want);
    expect(total.data[0]?.subject).toBeNull();

    const d = new Date(now);
    const monthStart = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    const monthly = await om.meters.query('tokens', { windowSize: 'MONTH', groupBy: ['model'] });
    const wantMonthly = modelRows(sent, {
      rowStart: (t) => Date.UTC(new Date(t).getUTCFullYear(), new Date(t).getUTCMonth(), 1),
      rowEnd: (s) => Date.UTC(new Date(s).getUTCFullYear(), new Date(s).getUTCMonth() + 1, 1),
      bySubject: false,
      byModel: true,
      from: 0,
      to: Infinity,
    });
    expect(normalize(monthly.data)).toEqual(wantMonthly);
    expect(monthly.data.some((r) => r.windowStart.getTime() === monthStart)).toBe(true);
  });

  it('answers entitlement values from the real-time check', async () => {
    const dayStart = Math.floor(now / 86_400_000) * 86_400_000;
    for (const subject of ['cust-0', 'cust-3']) {
      const usage = sent
        .filter((e) => e.subject === subject && e.model === 'a' && e.time >= dayStart)
        .reduce((sum, e) => sum + e.tokens, 0);
      const value = await waitFor(
        async () => {
          const v = await om.entitlementsV1.value(subject, 'tokens_a');
          return v?.usage === usage ? v : undefined;
        },
        { timeoutMs: 20_000, message: `entitlement usage of ${subject} to reach ${usage}` },
      );
      expect(value).toMatchObject({
        hasAccess: usage < 5000,
        usage,
        balance: Math.max(0, 5000 - usage),
        overage: Math.max(0, usage - 5000),
      });
    }
    expect(await om.entitlementsV1.value('cust-0', 'sso')).toEqual({ hasAccess: true });
    await expect(om.entitlementsV1.value('cust-0', 'nope')).rejects.toSatisfy(
      (err: unknown) => isHTTPError(err) && err.status === 404,
    );
  });

  it('rejects a wrong API key with 401', async () => {
    const wrong = new OpenMeter({ baseUrl: server.url, apiKey: 'not-the-key-0123456789' });
    await expect(wrong.events.ingest({ type: 'llm', subject: 'x', data: { tokens: 1 } })).rejects.toSatisfy(
      (err: unknown) => isHTTPError(err) && err.status === 401,
    );
    await expect(wrong.meters.list()).rejects.toSatisfy(
      (err: unknown) => isHTTPError(err) && err.status === 401,
    );
  });
});
