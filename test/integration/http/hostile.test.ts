/**
 * The HTTP server under hostile input, on an in-process `TallyHttpServer` with its own redis-server:
 * bytes that are not UTF-8, `__proto__` keys, deep nesting, gzip (and gzip bombs), long URLs and
 * subjects, malformed URLs, and slow clients (bounded numbers of connections for bounded times).
 * Every refusal is a problem+json; what was acknowledged is checked in the streams.
 */
import { connect, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig, TallyKeys, type TallyConfig } from '../../../src/index.js';
import { TallyHttpServer } from '../../../src/http/index.js';
import { partitionOf } from '../../../src/producer/index.js';
import { captureLogs, LogLevel, type CapturedLogs } from '../../support/log-capture.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { createTestRedis, uniquePrefix, waitFor } from '../../support/redis.js';

const KEY = 'hostile-key-0123456789abcdef';
const BODY_LIMIT = 256 * 1024;
const REQUEST_TIMEOUT_MS = 1_000;
const HEADERS_TIMEOUT_MS = 500;

const event = (id: string, subject = 'cust-1', extra: Record<string, unknown> = {}) => ({
  specversion: '1.0',
  id,
  source: 'hostile-test',
  type: 'llm',
  subject,
  time: new Date().toISOString(),
  data: { tokens: 3, model: 'a' },
  ...extra,
});

interface Answer {
  status: number;
  type: string | null;
  json: { detail?: string; status?: number; title?: string } | undefined;
}

async function send(
  url: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
  method = 'POST',
): Promise<Answer> {
  const res = await fetch(url, {
    method,
    body,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
  });
  const text = await res.text();
  return {
    status: res.status,
    type: res.headers.get('content-type'),
    json: text ? (JSON.parse(text) as Answer['json']) : undefined,
  };
}

/** One raw HTTP/1.1 exchange: what the server wrote and how long until it closed the socket. */
function rawConnection(port: number): {
  socket: Socket;
  received: () => string;
  closed: Promise<number>;
} {
  const socket = connect(port, '127.0.0.1');
  const started = Date.now();
  let data = '';
  socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - started)));
  return { socket, received: () => data, closed };
}

describe('tally serve under hostile input', () => {
  let redis: RedisServerHandle;
  let config: TallyConfig;
  let server: TallyHttpServer;
  let base: string;
  let port: number;
  let logs: CapturedLogs;

  beforeAll(async () => {
    redis = await startRedisServer();
    config = resolveConfig(
      {
        redis: { url: redis.url },
        streams: { prefix: uniquePrefix('hostile'), partitions: 2 },
        http: {
          apiKeys: [KEY],
          bodyLimit: BODY_LIMIT,
          requestTimeout: `${REQUEST_TIMEOUT_MS}ms`,
          headersTimeout: `${HEADERS_TIMEOUT_MS}ms`,
        },
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
      },
      {},
    );
    logs = captureLogs('info');
    server = new TallyHttpServer({ config, logger: logs.logger });
    base = await server.listen({ port: 0, host: '127.0.0.1' });
    port = Number(new URL(base).port);
  });
  afterAll(async () => {
    await server?.close();
    await redis?.stop();
  });

  async function storedIds(): Promise<string[]> {
    const client = createTestRedis({ url: redis.url });
    const keys = new TallyKeys(config.prefix);
    const ids: string[] = [];
    for (let p = 0; p < config.partitions; p++) {
      for (const [, fields] of (await client.xrange(keys.events(p), '-', '+')) as [string, string[]][]) {
        const list = (
          fields[0] === 'events' ? JSON.parse(fields[1] as string) : [JSON.parse(fields[1] as string)]
        ) as { id: string }[];
        ids.push(...list.map((e) => e.id));
      }
    }
    return ids.sort();
  }

  it('refuses bytes that are not UTF-8 (\\xff and \\xfe used to become one id) and writes nothing', async () => {
    for (const bad of [0xff, 0xfe]) {
      const text = JSON.stringify(event('utf8-X'));
      const bytes = Buffer.from(text, 'utf8');
      const at = bytes.indexOf('X');
      bytes[at] = bad;
      const res = await send(`${base}/api/v1/events`, bytes);
      expect(res.status, JSON.stringify(res.json)).toBe(400);
      expect(res.type).toBe('application/problem+json');
      expect(res.json?.detail).toBe(`the body is not valid UTF-8 (at byte ${at})`);
    }
    expect((await storedIds()).filter((id) => id.startsWith('utf8'))).toEqual([]);
  });

  it('refuses a __proto__ key with a 400 naming it, in data or spelled with escapes', async () => {
    const bodies = [
      `{"specversion":"1.0","id":"p1","source":"s","type":"llm","subject":"c","data":{"__proto__":{"tokens":1}}}`,
      `[{"specversion":"1.0","id":"p2","source":"s","type":"llm","subject":"c","data":{"x":{"\\u005f_proto__":1}}}]`,
    ];
    for (const body of bodies) {
      const res = await send(`${base}/api/v1/events`, body);
      expect(res.status).toBe(400);
      expect(res.type).toBe('application/problem+json');
      expect(res.json?.detail).toContain('"__proto__"');
      expect(res.json?.detail).not.toMatch(/invalid JSON/);
    }
    // The text alone, as a value, is data like any other.
    const ok = await send(
      `${base}/api/v1/events`,
      JSON.stringify(event('p3', 'c', { data: { note: '__proto__' } })),
    );
    expect(ok.status).toBe(204);
  });

  it('answers deep nesting with a 400, not a 500 with a stack trace per request', async () => {
    for (const depth of [129, 5_000, 100_000]) {
      const body = `{"specversion":"1.0","id":"deep","source":"s","type":"llm","subject":"c","data":${'['.repeat(depth)}${']'.repeat(depth)}}`;
      const res = await send(`${base}/api/v1/events`, body);
      expect(res.status, `depth ${depth}`).toBe(400);
      expect(res.json?.detail).toBe('the JSON body nests deeper than 128 levels');
    }
    const fine = `{"specversion":"1.0","id":"deep-ok","source":"s","type":"llm","subject":"c","data":{"x":${'['.repeat(100)}${']'.repeat(100)}}}`;
    expect((await send(`${base}/api/v1/events`, fine)).status).toBe(204);
    expect(logs.atLeast(LogLevel.error), logs.dump()).toEqual([]);
  });

  it('takes gzip bodies within the limit, and refuses bombs (413), broken gzip (400) and other encodings (415)', async () => {
    const batch = JSON.stringify([event('gz-1'), event('gz-2', 'cust-2')]);
    const ok = await send(`${base}/api/v1/events`, gzipSync(batch), { 'content-encoding': 'gzip' });
    expect(ok.status, JSON.stringify(ok.json)).toBe(204);
    expect((await storedIds()).filter((id) => id.startsWith('gz-'))).toEqual(['gz-1', 'gz-2']);

    // 64 MB of spaces inside a valid JSON array: ~64 KB compressed, within the raw limit.
    const bomb = gzipSync(
      Buffer.concat([Buffer.from('['), Buffer.alloc(64 * 1024 * 1024, 0x20), Buffer.from(']')]),
    );
    expect(bomb.length).toBeLessThan(BODY_LIMIT);
    const refused = await send(`${base}/api/v1/events`, bomb, { 'content-encoding': 'gzip' });
    expect(refused.status).toBe(413);
    expect(refused.type).toBe('application/problem+json');
    expect(refused.json?.detail).toContain(`${BODY_LIMIT} bytes`);

    const broken = await send(`${base}/api/v1/events`, Buffer.from('not gzip'), {
      'content-encoding': 'gzip',
    });
    expect(broken.status).toBe(400);
    expect(broken.json?.detail).toMatch(/not valid gzip/);
    const br = await send(`${base}/api/v1/events`, Buffer.from(batch), { 'content-encoding': 'br' });
    expect(br.status).toBe(415);
    expect(br.type).toBe('application/problem+json');
  });

  it('refuses events certain to be dead-lettered: non-finite numbers and times out of range, naming index and field', async () => {
    type Problem = { detail: string; errors: { index: number; field: string; detail: string }[] };
    const ok = JSON.stringify(event('range-ok'));
    const infinite = `[${ok},{"specversion":"1.0","id":"inf","source":"s","type":"llm","subject":"c","data":{"tokens":1e400,"model":"a"}}]`;
    const res = await fetch(`${base}/api/v1/events`, {
      method: 'POST',
      body: infinite,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as Problem;
    expect(body.errors).toEqual([
      { index: 1, field: 'data.tokens', detail: expect.stringContaining('not finite') as unknown },
    ]);
    const negative = await send(`${base}/api/v1/events`, infinite.replace('1e400', '-1e999'));
    expect(negative.status).toBe(400);
    // Data that is not JSON, as OpenMeter's ingest refuses it (its TestIngest sends XML in data_base64).
    const notJson: [Record<string, unknown>, string, number][] = [
      [{ datacontenttype: 'application/xml', data_base64: 'PGE+MTwvYT4=' }, 'data_base64', 400],
      [{ datacontenttype: 'text/plain' }, 'datacontenttype', 400],
      [{ datacontenttype: 'application/json' }, '', 204],
      [{ datacontenttype: 'application/cloudevents+json; charset=utf-8' }, '', 204],
    ];
    for (const [extra, field, status] of notJson) {
      const r = await send(
        `${base}/api/v1/events`,
        JSON.stringify([{ ...event(`ct-${field || 'json'}-${status}`), ...extra }]),
      );
      expect(r.status, JSON.stringify(extra)).toBe(status);
      if (status === 400) expect((r.json as unknown as Problem).errors).toMatchObject([{ index: 0, field }]);
    }

    const DAY = 86_400_000;
    const at = (ms: number) => new Date(ms).toISOString();
    const cases: [string, number][] = [
      ['2099-01-01T00:00:00Z', 400],
      ['1999-01-01T00:00:00Z', 400],
      [at(Date.now() + 10 * 60_000), 400], // beyond maxFutureSkew (5m)
      [at(Date.now() - 40 * DAY), 400], // beyond retention (35d)
      [at(Date.now() + 60_000), 204],
      [at(Date.now() - 30 * DAY), 204],
    ];
    for (const [time, status] of cases) {
      const r = await fetch(`${base}/api/v1/events`, {
        method: 'POST',
        body: JSON.stringify([event(`t-ok-${time}`), event(`t-${time}`, 'c', { time })]),
        headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      });
      expect(r.status, time).toBe(status);
      if (status === 400) {
        const p = (await r.json()) as Problem;
        expect(p.errors).toEqual([
          {
            index: 1,
            field: 'time',
            detail: expect.stringMatching(/windows\.(maxFutureSkew|retention)/) as unknown,
          },
        ]);
        expect(p.detail).toMatch(/^nothing was written: event 1: time: /);
      }
    }
    // Nothing of a refused request was written; the accepted ones were.
    const ids = await storedIds();
    expect(ids.filter((id) => id === 'inf' || id === 'range-ok')).toEqual([]);
    expect(ids.filter((id) => id.startsWith('t-ok-')).length).toBe(2);
  });

  it('escapes formula-leading CSV cells (OWASP) and filters or refuses odd filterGroupBy forms', async () => {
    // Two stored cells, written as the worker writes them (keys.ts: c:<group> count, v:<group> micro-units).
    const keys = new TallyKeys(config.prefix);
    const client = createTestRedis({ url: redis.url });
    const ws = Math.floor(Date.now() / 60_000) * 60_000 - 5 * 60_000;
    const cells: [string, string, string][] = [
      ['=HYPERLINK("http://evil","x")', '@SUM(A1)', '-5000000'],
      ['+1', '\tab', '7000000'],
      ['-2', '\rcr', '1000000'],
      ['plain', 'a', '2000000'],
    ];
    for (const [subject, model, micro] of cells) {
      const group = JSON.stringify([subject, model]);
      await client.hset(
        keys.window(partitionOf(subject, config.partitions), 'tokens', ws),
        `c:${group}`,
        '1',
        `v:${group}`,
        micro,
      );
    }
    const q = `${base}/api/v1/meters/tokens/query?from=${new Date(ws).toISOString()}&to=${new Date(ws + 60_000).toISOString()}`;
    const auth = { authorization: `Bearer ${KEY}` };
    const csv = await fetch(`${q}&groupBy=subject&groupBy=model`, {
      headers: { ...auth, accept: 'text/csv' },
    });
    expect(csv.status).toBe(200);
    const text = await csv.text();
    const rows = text
      .split('\r\n')
      .filter(Boolean)
      .slice(1)
      .map((line) => line.split(',').slice(2))
      .sort();
    expect(rows).toEqual(
      [
        ["'+1", "'\tab", '7'],
        ["'-2", '"\'\rcr"', '1'],
        ['"\'=HYPERLINK(""http://evil""', '""x"")"', "'@SUM(A1)", '-5'],
        ['plain', 'a', '2'],
      ].sort(),
    );
    // Negative values stay numbers: the value column is Tally's own decimal.
    expect(text).toContain(',-5\r\n');

    // filterGroupBy[__proto__] used to set the filter's prototype and return unfiltered totals.
    const proto = await fetch(`${q}&filterGroupBy[__proto__]=x`, { headers: auth });
    expect(proto.status).toBe(400);
    expect(((await proto.json()) as { detail: string }).detail).toContain('no group-by "__proto__"');
    const flat = await fetch(`${q}&filterGroupBy=x`, { headers: auth });
    expect(flat.status).toBe(400);
    expect(((await flat.json()) as { detail: string }).detail).toMatch(
      /^filterGroupBy: expected filterGroupBy\[<group-by key>\]=<value>/,
    );
    const filtered = await fetch(`${q}&filterGroupBy[model]=a`, { headers: auth });
    expect(((await filtered.json()) as { data: { value: number }[] }).data.map((r) => r.value)).toEqual([2]);
  });

  it('answers every error as problem+json: 404, 413, 431 (long URL) and a malformed URL', async () => {
    const auth = { authorization: `Bearer ${KEY}` };
    const notFound = await fetch(`${base}/nope`, { headers: auth });
    expect([notFound.status, notFound.headers.get('content-type')]).toEqual([
      404,
      'application/problem+json',
    ]);
    const tooLarge = await send(
      `${base}/api/v1/events`,
      JSON.stringify([event('big', 'c', { data: { pad: 'x'.repeat(BODY_LIMIT) } })]),
    );
    expect([tooLarge.status, tooLarge.type]).toEqual([413, 'application/problem+json']);
    const longUrl = await fetch(`${base}/api/v1/meters/${'m'.repeat(20_000)}`, { headers: auth });
    expect([longUrl.status, longUrl.headers.get('content-type')]).toEqual([431, 'application/problem+json']);
    expect(((await longUrl.json()) as { status: number }).status).toBe(431);
    const badUrl = await fetch(`${base}/api/v1/meters/%E0%A4%A`, { headers: auth });
    expect([badUrl.status, badUrl.headers.get('content-type')]).toEqual([400, 'application/problem+json']);
    expect(((await badUrl.json()) as { title: string }).title).toBe('Bad Request');
  });

  it('takes subjects as long as ingest does on every route (the entitlement value route said 414 past 100)', async () => {
    const subject = `s-${'x'.repeat(2_000)}`;
    expect((await send(`${base}/api/v1/events`, JSON.stringify(event('long-subject', subject)))).status).toBe(
      204,
    );
    const value = await fetch(`${base}/api/v1/subjects/${subject}/entitlements/api-calls/value`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    // No entitlements are configured: the route itself answers (404, unknown feature), not the router.
    expect(value.status).toBe(404);
    expect(value.headers.get('content-type')).toBe('application/problem+json');
    expect(((await value.json()) as { type: string }).type).toBe('urn:tally:problem:unknown-feature');
    const query = await fetch(`${base}/api/v1/meters/tokens/query?subject=${subject}`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(query.status).toBe(200);
  });

  it('closes slow unauthenticated bodies right after the 401, and slow requests at the request timeout', async () => {
    const CONNECTIONS = 20;
    // Unauthenticated: headers announce 200 kB (within the limit), then a byte every 50 ms. The 401 goes out at once and the
    // connection is closed instead of read (it used to be held as long as the client kept sending).
    const opened: ReturnType<typeof rawConnection>[] = [];
    const open = (n: number) => {
      const list = Array.from({ length: n }, () => rawConnection(port));
      opened.push(...list);
      return list;
    };
    const slow = open(CONNECTIONS);
    const timers: NodeJS.Timeout[] = [];
    try {
      for (const c of slow) {
        c.socket.write(
          `POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n[`,
        );
        timers.push(setInterval(() => c.socket.writable && c.socket.write(' '), 50));
      }
      const times = await Promise.all(slow.map((c) => c.closed));
      for (const c of slow) {
        expect(c.received()).toMatch(/^HTTP\/1\.1 401 /);
        expect(c.received()).toMatch(/\r\nwww-authenticate: Bearer realm="tally"\r\n/i);
        expect(c.received()).toMatch(/\r\nconnection: close\r\n/i);
      }
      expect(Math.max(...times)).toBeLessThan(REQUEST_TIMEOUT_MS);

      // Authenticated but slow: cut at the request timeout with a 408 problem.
      const authed = open(5);
      for (const c of authed) {
        c.socket.write(
          `POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n[`,
        );
        timers.push(setInterval(() => c.socket.writable && c.socket.write(' '), 50));
      }
      // Slow headers: never finished, cut at the headers timeout.
      const headers = open(5);
      for (const c of headers) {
        c.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
        timers.push(setInterval(() => c.socket.writable && c.socket.write('X-A: b\r\n'), 50));
      }
      const cut = await Promise.all([...authed, ...headers].map((c) => c.closed));
      // The timeout plus Node's check interval (1 s) plus slack for a loaded machine.
      expect(Math.max(...cut)).toBeLessThan(REQUEST_TIMEOUT_MS + 1_000 + 1_500);
      for (const c of authed) expect(c.received()).toMatch(/^HTTP\/1\.1 408 [^]*application\/problem\+json/);
      await waitFor(async () => (await fetch(`${base}/healthz`)).ok, { message: 'still serving' });
    } finally {
      for (const t of timers) clearInterval(t);
      for (const c of opened) c.socket.destroy();
    }
  }, 20_000);
});
