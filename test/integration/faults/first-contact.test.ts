/**
 * A worker that has never reached Redis (issue 23): it tries for worker.connectTimeout (or
 * --connect-timeout), then exits non-zero with one line, instead of waiting forever and logging "lost
 * the connection" for a server it never reached. A Redis that comes up within the limit is used.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { run, start } from '../../support/cli.js';
import { uniquePrefix } from '../../support/redis.js';
import { findFreePort, startRedisServer } from '../../support/redis-server.js';

const meters = [{ slug: 'calls', eventType: 'call', aggregation: 'COUNT', windowSize: '1m' }];

describe('tally worker and a Redis it never reached', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tally-first-contact-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function configFile(url: string, connectTimeout: string): string {
    const file = join(dir, 'tally.yaml');
    writeFileSync(
      file,
      stringify({
        redis: { url },
        streams: { prefix: uniquePrefix('first-contact'), partitions: 2 },
        worker: { connectTimeout },
        meters,
      }),
    );
    return file;
  }

  /** The worker's stderr without the line that names the Redis it uses. */
  const ownLines = (stderr: string) =>
    stderr
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith('tally: Redis '));

  it('exits non-zero with one line after worker.connectTimeout', { timeout: 60_000 }, async () => {
    // Nothing listens on a port that was free a moment ago.
    const url = `redis://127.0.0.1:${await findFreePort()}`;
    const file = configFile(url, '1500ms');
    const started = Date.now();
    // REDIS_URL of the test run must not replace the config's unreachable URL.
    const r = await run(['worker', '--config', file], { REDIS_URL: '' });
    const elapsed = Date.now() - started;
    expect(r.code).toBe(1);
    const lines = ownLines(r.stderr);
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^tally: cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+ \(tried for 1500ms, worker\.connectTimeout or --connect-timeout\): .*ECONNREFUSED/,
    );
    expect(r.stdout).toBe('');
    expect(r.stderr).not.toMatch(/lost the connection|\n\s+at /);
    // It tried for its limit, and gave up soon after it (a process start on a busy machine takes ~1 s).
    expect(elapsed).toBeGreaterThanOrEqual(1500);
    expect(elapsed).toBeLessThan(1500 + 8_000);
  });

  it('takes --connect-timeout over the config', { timeout: 60_000 }, async () => {
    const file = configFile(`redis://127.0.0.1:${await findFreePort()}`, '10m');
    const started = Date.now();
    const r = await run(['worker', '--config', file, '--connect-timeout', '500ms'], { REDIS_URL: '' });
    expect(r.code).toBe(1);
    expect(ownLines(r.stderr)).toEqual([expect.stringMatching(/tried for 500ms/)]);
    expect(Date.now() - started).toBeLessThan(500 + 8_000);
    const bad = await run(['worker', '--config', file, '--connect-timeout', 'soon'], { REDIS_URL: '' });
    expect(bad.code).not.toBe(0);
    expect(ownLines(bad.stderr)).toEqual([expect.stringMatching(/--connect-timeout/)]);
  });

  it('uses a Redis that comes up within the limit', { timeout: 60_000 }, async () => {
    const port = await findFreePort();
    const file = configFile(`redis://127.0.0.1:${port}`, '40s');
    const worker = start(['worker', '--config', file, '--roles', 'metering'], {
      REDIS_URL: '',
      LOG_LEVEL: 'info',
    });
    // Its first attempt fails: a listener that hangs up at once, closed after that first attempt.
    // The Redis server then starts on the same port while the worker keeps trying.
    const attempted = new Promise<void>((resolveAttempt) => {
      const listener = createServer((socket) => {
        socket.destroy();
        listener.close(() => resolveAttempt());
      }).listen(port, '127.0.0.1');
    });
    await attempted;
    const server = await startRedisServer({ port });
    try {
      await worker.waitForOutput(/"msg":"worker started"/, 40_000);
      expect(worker.output()).not.toMatch(/cannot reach Redis/);
    } finally {
      await worker.stop();
      await server.stop();
    }
  });
});
