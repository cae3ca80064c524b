/**
 * `tally usage` over a range no window of the meter starts in (issue 23: `--from now-10m` on an HOUR
 * meter printed `(no usage)` while the window in progress had usage): it says why on stderr, in one
 * line naming the --from to use, and still exits 0 with the (empty) answer on stdout.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { run } from '../../support/cli.js';
import { testRedisUrl, uniquePrefix } from '../../support/redis.js';

const HOUR = 3_600_000;

describe('tally usage over a range no window starts in', () => {
  let dir: string;
  let file: string;
  const raw = {
    redis: { url: testRedisUrl() },
    streams: { prefix: uniquePrefix('empty-range'), partitions: 2 },
    meters: [
      { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.n', windowSize: 'HOUR' },
    ],
  };
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tally-empty-range-'));
    file = join(dir, 'tally.yaml');
    writeFileSync(file, stringify(raw));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const usage = async (from: string, to: string) => {
    const r = await run(['usage', '--config', file, '--meter', 'tokens', '--from', from, '--to', to], {
      REDIS_URL: testRedisUrl(),
    });
    return { ...r, notes: r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('tally: Redis ')) };
  };

  it(
    'says which --from would include the window, and is silent when a window starts in range',
    { timeout: 60_000 },
    async () => {
      const hour = Math.floor(Date.now() / HOUR) * HOUR - 2 * HOUR;
      const iso = (ms: number) => new Date(ms).toISOString();
      const inside = await usage(iso(hour + 10 * 60_000), iso(hour + 20 * 60_000));
      expect(inside.code).toBe(0);
      expect(inside.stdout.trim()).toBe('(no usage)');
      expect(inside.notes).toEqual([
        `tally: no HOUR window of meter tokens starts in ${iso(hour + 10 * 60_000)} .. ${iso(hour + 20 * 60_000)}: ` +
          `rows hold whole windows that start inside the range, and the window containing it started at ${iso(hour)}; ` +
          `use --from ${iso(hour)} or earlier`,
      ]);
      const whole = await usage(iso(hour), iso(hour + 20 * 60_000));
      expect([whole.code, whole.stdout.trim(), whole.notes]).toEqual([0, '(no usage)', []]);
    },
  );
});
