/**
 * A Redis that may evict keys (issue 12, finding 7): `tally worker` refuses it in one line, and runs
 * with a warning when --allow-eviction says so; the library refuses it too unless allowEviction.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { TallyWorker } from '../../../src/index.js';
import { run, start } from '../../support/cli.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { Harness } from '../../support/tally.js';

const meters = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
];

describe('a Redis whose maxmemory-policy evicts keys', () => {
  let server: RedisServerHandle;
  let dir: string;
  beforeAll(async () => {
    server = await startRedisServer({ extraArgs: ['--maxmemory-policy', 'allkeys-lru'] });
    dir = mkdtempSync(join(tmpdir(), 'tally-eviction-'));
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it(
    'is refused by tally worker in one line, and accepted with a warning under --allow-eviction',
    { timeout: 60_000 },
    async () => {
      const h = new Harness({ meters, redisUrl: server.url, label: 'evict' });
      try {
        const file = join(dir, 'tally.yaml');
        writeFileSync(file, stringify(h.raw));
        const refused = await run(['worker', '--config', file]);
        expect(refused.code, JSON.stringify(refused)).toBe(1);
        const lines = refused.stderr
          .split('\n')
          .filter((l) => l.trim() !== '' && !/^tally: Redis rediss?:\/\//.test(l));
        expect(lines, JSON.stringify(refused)).toHaveLength(1);
        expect(lines[0]).toMatch(
          /^tally: Redis maxmemory-policy is allkeys-lru, not noeviction: .* run with --allow-eviction/,
        );
        expect(refused.stdout).toBe('');

        const allowed = start(['worker', '--config', file, '--allow-eviction', '--roles', 'metering'], {
          LOG_LEVEL: 'info',
        });
        await allowed.waitForOutput(/"msg":"worker started"/);
        expect(allowed.output()).toMatch(
          /"level":40,.*"maxmemoryPolicy":"allkeys-lru".*running anyway \(allowEviction\)/,
        );
        expect(await allowed.stop()).toBe(0);

        // The library says the same.
        const worker = new TallyWorker({ config: h.config, logger: pino({ level: 'silent' }) });
        await expect(worker.start()).rejects.toThrow(/maxmemory-policy is allkeys-lru/);
        await worker.close();
      } finally {
        await h.close();
      }
    },
  );
});
