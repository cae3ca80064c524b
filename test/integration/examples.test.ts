/**
 * Every file in examples/ runs as written (as `npx tsx examples/<file>` would, importing the package by
 * its name) against a worker of the built CLI, on a Redis of its own. The config is the shipped one
 * with 10-second api_calls windows, so the subscriber's first rollup comes in seconds, not a minute
 * (.ci/run runs them on the shipped config unchanged).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ROOT, run, start } from '../support/cli.js';
import { startRedisServer, type RedisServerHandle } from '../support/redis-server.js';

const TSX = [process.execPath, '--import', 'tsx'];

describe('examples/', () => {
  let server: RedisServerHandle;
  let dir: string;
  beforeAll(async () => {
    server = await startRedisServer();
    dir = mkdtempSync(join(tmpdir(), 'tally-examples-'));
  });
  afterAll(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(
    'produce, check, query, grant, events.ndjson and subscribe work as written',
    { timeout: 150_000 },
    async () => {
      expect(readdirSync(join(ROOT, 'examples')).sort()).toEqual([
        'check.ts',
        'events.ndjson',
        'grant.ts',
        'produce.ts',
        'query.ts',
        'subscribe.ts',
      ]);
      const shipped = parse(readFileSync(join(ROOT, 'config/tally.yaml'), 'utf8')) as {
        meters: { slug: string; windowSize: string }[];
      };
      for (const m of shipped.meters) if (m.slug === 'api_calls') m.windowSize = '10s';
      const config = join(dir, 'tally.yaml');
      writeFileSync(config, stringify(shipped));
      const env = { REDIS_URL: server.url, TALLY_CONFIG: config, LOG_LEVEL: 'info' };
      const example = (file: string, ...args: string[]) =>
        run([`examples/${file}`, ...args], env, { command: TSX });
      const ok = (r: { code: number; stdout: string; stderr: string }, what: string) => {
        expect(r.code, `${what}: ${r.stderr}`).toBe(0);
        // One line on stderr says which Redis; nothing else (no warnings, no stack traces).
        expect(r.stderr.trim().split('\n'), what).toEqual([
          expect.stringMatching(
            /^(Redis 127\.0\.0\.1:\d+|tally: Redis redis:\/\/127\.0\.0\.1:\d+ \(from REDIS_URL\))/,
          ),
        ]);
        return r.stdout;
      };

      const worker = start(['worker', '--config', config], env);
      await worker.waitForOutput(/entitlement evaluator consuming tally-entitlements/);

      expect(ok(await example('produce.ts'), 'produce')).toBe(
        'sent 1 llm.completion (1234 gpt-5 tokens) and 10 api.request events for customer-42\n',
      );
      // Read live (the HOUR window is open): counted at once.
      expect(ok(await example('check.ts'), 'check')).toMatch(
        /^customer-42 gpt5_tokens: hasAccess=true, usage 1234 of 1000000 \(hard\), balance 998766, period \S+\.\.\S+ \(live 1234, applied 0\)\n$/,
      );
      expect(ok(await example('query.ts'), 'query')).toMatch(
        /^\S+T\S+Z {2}customer-42 {2}model=gpt-5 {2}1234 tokens in 1 events\n$/,
      );
      const grant = ok(await example('grant.ts'), 'grant');
      expect(grant).toContain(
        'acme gpt5_tokens (explicit): limit 5000000 + grants 250000, usage 0, balance 5250000',
      );
      expect(grant).toContain('allowances in burn order: grant 250000/250000, limit 5000000/5000000');
      expect(grant).toContain('cleaned up: acme gpt5_tokens is default again (limit 1000000)');

      // tally produce < examples/events.ndjson: exit code 0; again, the same ids are dropped by the worker.
      const ndjson = readFileSync(join(ROOT, 'examples/events.ndjson'), 'utf8');
      const produce = (input: string) => run(['produce', '--config', config], env, { input });
      expect(await produce(ndjson)).toMatchObject({ code: 0, stdout: 'sent 6 events\n' });
      // A rejected line: the others are sent, the line is named, exit code 1.
      const bad = await produce(`${ndjson}{"id":"x","source":"examples","type":"api.request"}\nnot json\n`);
      expect(bad.code).toBe(1);
      expect(bad.stdout).toMatch(
        /^sent 6 events, rejected 2:\n {2}line 7: .*subject.*\n {2}line 8: not JSON/,
      );

      const sub = ok(await example('subscribe.ts', '--count', '1', '--timeout', '60'), 'subscribe');
      // Usually an api_calls rollup (10 s windows here); at an hour boundary an HOUR window of the
      // same events may close first, so any meter's first rollup for the example's subjects will do.
      expect(sub).toMatch(
        /^(api_calls customer-(42|7) route=\/v1\/(chat|embed)|[a-z_0-9]+ customer-(42|7) .*) \S+Z\.\.\S+Z: [A-Z_]+ [\d.]+ \(revision 1\)\n$/,
      );

      expect(await worker.stop()).toBe(0);
      expect(worker.output()).not.toMatch(/"level":[56]\d/);
    },
  );
});
