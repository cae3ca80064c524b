/**
 * Raw HTTP against an in-process `TallyHttpServer` listening on a real port: every accepted content
 * type, every error code (400 naming the event and field, 401, 404, 413, 415, 503 while Redis is
 * down) and recovery. What the server acknowledged is checked in the streams themselves.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { resolveConfig, TallyKeys, type TallyConfig } from '../../../src/index.js';
import { TallyHttpServer } from '../../../src/http/index.js';
import { partitionOf } from '../../../src/producer/index.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { createTestRedis, uniquePrefix, waitFor } from '../../support/redis.js';

const KEY = 'test-key-0123456789abcdef';
const METERS = [
  {
    slug: 'tokens',
    eventType: 'llm',
    aggregation: 'SUM',
    valueProperty: '$.tokens',
    groupBy: { model: '$.model' },
    windowSize: 'MINUTE',
  },
];

function makeConfig(url: string, http: Record<string, unknown> = {}): TallyConfig {
  return resolveConfig(
    {
      redis: { url },
      streams: { prefix: uniquePrefix('http'), partitions: 4 },
      http: { apiKeys: [KEY], ...http },
      meters: METERS,
    },
    {},
  );
}

const event = (id: string, subject = 'cust-1', extra: Record<string, unknown> = {}) => ({
  specversion: '1.0',
  id,
  source: 'http-test',
  type: 'llm',
  subject,
  time: new Date().toISOString(),
  data: { tokens: 3, model: 'a' },
  ...extra,
});

async function post(
  base: string,
  body: string,
  contentType: string | undefined,
  key: string | null = KEY,
): Promise<{
  status: number;
  type: string | null;
  json: Record<string, unknown> | undefined;
  headers: Headers;
}> {
  const res = await fetch(`${base}/api/v1/events`, {
    method: 'POST',
    body,
    headers: {
      ...(contentType ? { 'content-type': contentType } : {}),
      ...(key ? { authorization: `Bearer ${key}` } : {}),
    },
  });
  const text = await res.text();
  return {
    status: res.status,
    type: res.headers.get('content-type'),
    json: text ? (JSON.parse(text) as Record<string, unknown>) : undefined,
    headers: res.headers,
  };
}

/** Every event stored in the config's streams (both entry formats), as subject → ids. */
async function stored(config: TallyConfig): Promise<Map<string, string[]>> {
  const redis = createTestRedis({ url: config.redisUrl });
  const keys = new TallyKeys(config.prefix);
  const out = new Map<string, string[]>();
  for (let p = 0; p < config.partitions; p++) {
    for (const [, fields] of (await redis.xrange(keys.events(p), '-', '+')) as [string, string[]][]) {
      const events = (
        fields[0] === 'events' ? JSON.parse(fields[1] as string) : [JSON.parse(fields[1] as string)]
      ) as { id: string; subject: string }[];
      for (const e of events) {
        expect(
          partitionOf(e.subject, config.partitions),
          `event ${e.id} routed as UsageProducer routes it`,
        ).toBe(p);
        out.set(e.subject, [...(out.get(e.subject) ?? []), e.id]);
      }
    }
  }
  return out;
}

describe('POST /api/v1/events: content types and errors', () => {
  let config: TallyConfig;
  let server: TallyHttpServer;
  let base: string;

  let redis: RedisServerHandle;

  beforeAll(async () => {
    // Its own redis-server: other test files drop connections on the shared one (CLIENT KILL).
    redis = await startRedisServer();
    config = makeConfig(redis.url, { bodyLimit: 64 * 1024, maxEventsPerRequest: 50 });
    server = new TallyHttpServer({ config, logger: pino({ level: 'silent' }) });
    base = await server.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    await server?.close();
    await redis?.stop();
  });

  it('accepts one event, a batch, and application/json of either, with parameters, nulls allowed', async () => {
    const cases: [string, unknown, string][] = [
      ['application/cloudevents+json', event('c1'), 'c1'],
      ['application/cloudevents+json; charset=utf-8', event('c2'), 'c2'],
      ['application/cloudevents-batch+json', [event('b1'), event('b2', 'cust-2')], 'b1,b2'],
      ['Application/CloudEvents-Batch+JSON; charset=UTF-8', [event('b3')], 'b3'],
      ['application/json', event('j1'), 'j1'],
      ['application/json; charset=utf-8', [event('j2'), event('j3', 'cust-3')], 'j2,j3'],
      [
        'application/json',
        event('n1', 'cust-1', { time: null, data: null, datacontenttype: null, dataschema: null }),
        'n1',
      ],
    ];
    for (const [type, body] of cases) {
      const res = await post(base, JSON.stringify(body), type);
      expect(res.status, `${type}: ${JSON.stringify(res.json)}`).toBe(204);
    }
    const ids = [...(await stored(config)).values()].flat().sort();
    expect(ids).toEqual(cases.flatMap(([, , want]) => want.split(',')).sort());
    const all = await stored(config);
    expect(all.get('cust-2')).toEqual(['b2']);
  });

  it('stores a null-attribute event without those attributes (time then comes from the entry id)', async () => {
    const redis = createTestRedis({ url: config.redisUrl });
    const p = partitionOf('cust-1', config.partitions);
    const entries = (await redis.xrange(new TallyKeys(config.prefix).events(p), '-', '+')) as [
      string,
      string[],
    ][];
    const n1 = entries
      .flatMap(
        ([, f]) =>
          (f[0] === 'events' ? JSON.parse(f[1] as string) : [JSON.parse(f[1] as string)]) as Record<
            string,
            unknown
          >[],
      )
      .find((e) => e.id === 'n1');
    expect(n1).toBeDefined();
    expect(Object.keys(n1 as object)).not.toContain('time');
    expect(Object.keys(n1 as object)).not.toContain('data');
  });

  it('answers 400 naming the event index and field, and writes nothing of the batch', async () => {
    const before = [...(await stored(config)).values()].flat().length;
    const batch = [
      event('ok1'),
      { ...event('bad1'), subject: undefined },
      event('ok2'),
      { ...event('bad2'), time: 'yesterday' },
      42,
    ];
    const res = await post(base, JSON.stringify(batch), 'application/cloudevents-batch+json');
    expect(res.status).toBe(400);
    expect(res.type).toMatch(/^application\/problem\+json/);
    expect(res.json).toMatchObject({
      type: 'about:blank',
      title: 'Bad Request',
      status: 400,
      instance: '/api/v1/events',
    });
    expect(res.json?.errors).toEqual([
      { index: 1, field: 'subject', detail: 'required' },
      { index: 3, field: 'time', detail: expect.stringContaining('RFC 3339') as unknown },
      { index: 4, field: '(event)', detail: 'the event is not a JSON object' },
    ]);
    expect(String(res.json?.detail)).toContain('event 1: subject: required');
    expect([...(await stored(config)).values()].flat().length).toBe(before);
  });

  it('answers 400 for bad JSON, an empty body, and a shape that does not match the media type', async () => {
    const bad = await post(base, '{"id": "x",', 'application/json');
    expect(bad.status).toBe(400);
    expect(String(bad.json?.detail)).toMatch(/invalid JSON/);
    expect((await post(base, '', 'application/json')).status).toBe(400);
    const single = await post(base, JSON.stringify([event('arr')]), 'application/cloudevents+json');
    expect(single.status).toBe(400);
    expect(String(single.json?.detail)).toContain('application/cloudevents-batch+json');
    const batch = await post(base, JSON.stringify(event('obj')), 'application/cloudevents-batch+json');
    expect(batch.status).toBe(400);
    const oversizedEvent = await post(
      base,
      JSON.stringify({ ...event('big'), data: { tokens: 1, pad: 'x'.repeat(2_000) } }),
      'application/json',
    );
    expect(oversizedEvent.status).toBe(204);
  });

  it('answers 401 with WWW-Authenticate without a key or with a wrong one (before reading the body), takes any case of the scheme, and 415 for other media types', async () => {
    for (const key of [null, 'wrong-key-0123456789abcdef', `${KEY}x`, KEY.slice(0, -1)]) {
      const res = await post(base, JSON.stringify(event('auth')), 'application/json', key);
      expect(res.status, `key ${key}`).toBe(401);
      expect(res.type).toMatch(/^application\/problem\+json/);
      expect(res.json).toMatchObject({ status: 401, title: 'Unauthorized' });
      // RFC 7235: a 401 says which scheme to use.
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="tally"');
    }
    // The scheme is case-insensitive (RFC 7235); the key is not.
    for (const scheme of ['bearer', 'BEARER', 'Bearer']) {
      const res = await fetch(`${base}/api/v1/meters`, { headers: { authorization: `${scheme} ${KEY}` } });
      expect(res.status, scheme).toBe(200);
    }
    const wrongCase = await fetch(`${base}/api/v1/meters`, {
      headers: { authorization: `Bearer ${KEY.toUpperCase()}` },
    });
    expect(wrongCase.status).toBe(401);
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml', undefined]) {
      const res = await post(base, JSON.stringify(event('mt')), type);
      expect(res.status, `content-type ${type}`).toBe(415);
      expect(res.json).toMatchObject({ status: 415, title: 'Unsupported Media Type' });
    }
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const openapi = (await (await fetch(`${base}/openapi.json`)).json()) as {
      openapi: string;
      paths: Record<string, unknown>;
      components: { schemas: Record<string, { required?: string[] }> };
    };
    expect(openapi.openapi).toBe('3.1.0');
    expect(Object.keys(openapi.paths).sort()).toEqual([
      '/api/v1/events',
      '/api/v1/meters',
      '/api/v1/meters/{meterIdOrSlug}',
      '/api/v1/meters/{meterIdOrSlug}/query',
      '/api/v1/notification/channels',
      '/api/v1/notification/channels/{channelId}',
      '/api/v1/notification/events',
      '/api/v1/notification/events/{eventId}',
      '/api/v1/notification/events/{eventId}/resend',
      '/api/v1/notification/rules',
      '/api/v1/notification/rules/{ruleId}',
      '/api/v1/notification/rules/{ruleId}/test',
      '/api/v1/subjects/{subjectIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/value',
    ]);
    expect(openapi.components.schemas.Event?.required).toEqual(['id', 'source', 'type', 'subject']);
  });

  it('answers 413 for a body over http.bodyLimit and for more than http.maxEventsPerRequest events', async () => {
    const big = Array.from({ length: 40 }, (_, i) => ({
      ...event(`big${i}`),
      data: { tokens: 1, pad: 'x'.repeat(2_000) },
    }));
    const res = await post(base, JSON.stringify(big), 'application/cloudevents-batch+json');
    expect(res.status).toBe(413);
    expect(res.json).toMatchObject({ status: 413, title: 'Content Too Large' });
    const many = Array.from({ length: 51 }, (_, i) => event(`many${i}`));
    const tooMany = await post(base, JSON.stringify(many), 'application/cloudevents-batch+json');
    expect(tooMany.status).toBe(413);
    expect(String(tooMany.json?.detail)).toContain('at most 50');
    const ids = [...(await stored(config)).values()].flat();
    expect(ids.some((id) => id.startsWith('big') && id !== 'big')).toBe(false);
    expect(ids.some((id) => id.startsWith('many'))).toBe(false);
  });

  it('tells which events landed when some partitions failed (500 with the acknowledged indices)', async () => {
    const subjects = Array.from({ length: 12 }, (_, i) => `split-${i}`);
    const broken = partitionOf('split-0', config.partitions);
    // A key of the wrong type makes XADD fail on one partition only.
    const redis = createTestRedis({ url: config.redisUrl });
    const key = new TallyKeys(config.prefix).events(broken);
    const saved = (await redis.xrange(key, '-', '+')) as [string, string[]][];
    await redis.del(key);
    await redis.set(key, 'not a stream');
    try {
      const batch = subjects.map((s, i) => event(`split${i}`, s));
      const res = await post(base, JSON.stringify(batch), 'application/cloudevents-batch+json');
      expect(res.status).toBe(500);
      const want = subjects.flatMap((s, i) => (partitionOf(s, config.partitions) === broken ? [] : [i]));
      expect(want.length).toBeGreaterThan(0);
      expect(want.length).toBeLessThan(subjects.length);
      expect(res.json?.acknowledged).toEqual(want);
      await redis.del(key);
      const landed = [...(await stored(config)).values()].flat().filter((id) => id.startsWith('split'));
      expect(landed.sort()).toEqual(want.map((i) => `split${i}`).sort());
    } finally {
      await redis.del(key);
      for (const [, fields] of saved) await redis.xadd(key, '*', ...fields);
    }
  });

  it('answers 404 problems for unknown meters and routes, 400 for bad query parameters', async () => {
    const auth = { authorization: `Bearer ${KEY}` };
    const unknown = await fetch(`${base}/api/v1/meters/nope/query`, { headers: auth });
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect((await fetch(`${base}/api/v1/nope`, { headers: auth })).status).toBe(404);
    const size = await fetch(`${base}/api/v1/meters/tokens/query?windowSize=WEEK`, { headers: auth });
    expect(size.status).toBe(400);
    expect(((await size.json()) as { detail: string }).detail).toContain('windowSize');
    const group = await fetch(`${base}/api/v1/meters/tokens/query?groupBy=colour`, { headers: auth });
    expect(group.status).toBe(400);
    expect(((await group.json()) as { detail: string }).detail).toContain('colour');
    const from = await fetch(`${base}/api/v1/meters/tokens/query?from=yesterday`, { headers: auth });
    expect(from.status).toBe(400);
  });
});

describe('Redis down: 503, readiness, recovery', () => {
  let redis: RedisServerHandle;
  let server: TallyHttpServer;
  let base: string;
  let config: TallyConfig;

  beforeAll(async () => {
    redis = await startRedisServer();
    config = makeConfig(redis.url);
    server = new TallyHttpServer({ config, logger: pino({ level: 'silent' }), commandTimeoutMs: 2_000 });
    base = await server.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    await server?.close();
    await redis?.stop();
  });

  it('answers 503 with Retry-After while Redis is unreachable, turns unready, and recovers', async () => {
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, { message: 'ready' });
    expect((await post(base, JSON.stringify([event('before')]), 'application/json')).status).toBe(204);

    await redis.kill('SIGKILL');
    const started = Date.now();
    const down = await post(
      base,
      JSON.stringify([event('during1'), event('during2', 'cust-9')]),
      'application/cloudevents-batch+json',
    );
    expect(down.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(down.headers.get('retry-after')).toBe('1');
    expect(down.json).toMatchObject({ status: 503, title: 'Service Unavailable', acknowledged: [] });
    const query = await fetch(`${base}/api/v1/meters/tokens/query`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(query.status).toBe(503);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(503);
    const readyBody = (await ready.json()) as { checks: { redis: { ok: boolean; detail: string } } };
    expect(readyBody.checks.redis.ok).toBe(false);
    // A fixed text, not the client's internals (it said "Stream isn't writeable and enableOfflineQueue ...").
    expect(readyBody.checks.redis.detail).toMatch(
      /^(Redis is unreachable|no answer to PING within 1000 ms)$/,
    );
    expect((await fetch(`${base}/healthz`)).status).toBe(200);

    await redis.restart();
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, {
      timeoutMs: 15_000,
      message: 'ready again',
    });
    expect((await post(base, JSON.stringify([event('after')]), 'application/json')).status).toBe(204);
    const ids = [...(await stored(config)).values()].flat();
    // Redis ran without persistence: what it held before the kill is gone; what came after is there.
    expect(ids).toEqual(['after']);
  });
});
