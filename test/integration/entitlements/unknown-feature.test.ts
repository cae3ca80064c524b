/**
 * An unknown feature is not a denial (issue 23): `tally check` exits 4 with one line for a key no
 * feature has, 3 for a feature the subject has no entitlement to, 0 with access; over HTTP the two
 * 404s carry distinct problem types.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { resolveConfig } from '../../../src/index.js';
import { TallyHttpServer } from '../../../src/http/index.js';
import { run } from '../../support/cli.js';
import { testRedisUrl, uniquePrefix } from '../../support/redis.js';

const KEY = 'test-key-0123456789abcdef';
const raw = {
  redis: { url: testRedisUrl() },
  streams: { prefix: uniquePrefix('unknown-feature'), partitions: 2 },
  http: { apiKeys: [KEY] },
  meters: [{ slug: 'calls', eventType: 'call', aggregation: 'COUNT', windowSize: 'MINUTE' }],
  entitlements: {
    features: [{ key: 'sso' }, { key: 'audit_log' }],
    defaults: [{ feature: 'sso', type: 'boolean' }],
  },
};

describe('an unknown feature is not a denial', () => {
  let dir: string;
  let file: string;
  let server: TallyHttpServer;
  let base: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tally-unknown-feature-'));
    file = join(dir, 'tally.yaml');
    writeFileSync(file, stringify(raw));
    server = new TallyHttpServer({ config: resolveConfig(raw, {}), logger: pino({ level: 'silent' }) });
    base = await server.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const check = async (feature: string) => {
    const r = await run(['check', '--config', file, 'acme', feature], { REDIS_URL: testRedisUrl() });
    // Without its own line: the Redis it uses, and that no evaluator published definitions yet.
    const lines = r.stderr
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('tally: Redis ') && !l.includes('published'));
    return { ...r, lines, json: JSON.parse(r.stdout) as Record<string, unknown> };
  };

  it(
    'tally check: exit 0 with access, 3 without an entitlement, 4 for an unknown feature',
    { timeout: 60_000 },
    async () => {
      const granted = await check('sso');
      expect([granted.code, granted.json.hasAccess, granted.lines]).toEqual([0, true, []]);

      const denied = await check('audit_log');
      expect(denied.code).toBe(3);
      expect(denied.json).toMatchObject({ hasAccess: false, type: 'none', reason: 'no-entitlement' });
      expect(denied.lines).toEqual([]);

      const typo = await check('ssso');
      expect(typo.code).toBe(4);
      expect(typo.json).toMatchObject({ hasAccess: false, type: 'none', reason: 'unknown-feature' });
      expect(typo.lines).toEqual(['tally: unknown feature "ssso"; features: audit_log, sso']);
    },
  );

  it('HTTP: distinct problem types for an unknown feature and a missing entitlement', async () => {
    const value = async (feature: string) => {
      const res = await fetch(`${base}/api/v1/subjects/acme/entitlements/${feature}/value`, {
        headers: { authorization: `Bearer ${KEY}` },
      });
      expect(res.headers.get('content-type')).toMatch(/^application\/(problem\+)?json/);
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    expect(await value('sso')).toEqual({ status: 200, body: { hasAccess: true } });
    expect(await value('audit_log')).toMatchObject({
      status: 404,
      body: {
        type: 'urn:tally:problem:no-entitlement',
        title: 'No Entitlement',
        detail: 'subject "acme" has no entitlement to feature "audit_log"',
      },
    });
    expect(await value('ssso')).toMatchObject({
      status: 404,
      body: {
        type: 'urn:tally:problem:unknown-feature',
        title: 'Unknown Feature',
        detail: 'unknown feature "ssso": no feature has this key',
      },
    });
  });
});
