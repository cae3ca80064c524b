/**
 * What `tally serve` logs (issue 23): each line names its component once (pino writes a key twice when
 * a child repeats it), and the listening line gives the address bound, 0.0.0.0 included.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/index.js';
import { TallyHttpServer } from '../../../src/http/index.js';
import { testRedisUrl, uniquePrefix, waitFor } from '../../support/redis.js';

const KEY = 'test-key-0123456789abcdef';

describe('tally serve logs', () => {
  let server: TallyHttpServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('names each component once and logs the address it is bound to', async () => {
    const raw: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        raw.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const config = resolveConfig(
      {
        redis: { url: testRedisUrl() },
        streams: { prefix: uniquePrefix('serve-logs'), partitions: 2 },
        http: { apiKeys: [KEY] },
        meters: [{ slug: 'calls', eventType: 'call', aggregation: 'COUNT', windowSize: 'MINUTE' }],
        entitlements: { features: [{ key: 'sso' }], defaults: [{ feature: 'sso', type: 'boolean' }] },
      },
      {},
    );
    server = new TallyHttpServer({ config, logger: pino({ level: 'info' }, sink) });
    const base = await server.listen({ host: '0.0.0.0', port: 0 });
    const port = new URL(base).port;
    // A check: the checker warns that no evaluator published definitions (a line of its own component).
    const res = await fetch(`${base}/api/v1/subjects/acme/entitlements/sso/value`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(res.status).toBe(200);
    await waitFor(() => raw.some((l) => l.includes('"component":"entitlement-checker"')), {
      timeoutMs: 5_000,
      message: `the checker's warning; logged:\n${raw.join('\n')}`,
    });
    for (const line of raw) expect(line.match(/"component":/g)?.length ?? 0, line).toBeLessThanOrEqual(1);
    const listening = raw
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.msg === 'HTTP API listening');
    expect(listening).toMatchObject({ component: 'http', address: `http://0.0.0.0:${port}` });
  });
});
