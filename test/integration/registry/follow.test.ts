/**
 * Running processes follow the registry without a restart: `tally serve` answers for a meter another
 * process registered, and a deleted meter stops counting while its open windows still close and emit.
 */
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { MeterRegistry } from '../../../src/registry/index.js';
import { resolveConfig, TallyHttpServer, type UsageEvent } from '../../../src/index.js';
import { pino } from 'pino';
import { run } from '../../support/cli.js';
import { waitFor } from '../../support/redis.js';
import { Harness } from '../../support/tally.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

const calls = { slug: 'calls', eventType: 'req', aggregation: 'COUNT', windowSize: 'MINUTE' };
const bytes = {
  slug: 'bytes',
  eventType: 'req',
  aggregation: 'SUM',
  valueProperty: '$.bytes',
  windowSize: 'MINUTE',
};

describe('following the registry', () => {
  let harness: Harness | undefined;
  let server: TallyHttpServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
    await harness?.close();
    harness = undefined;
  });

  it('serve answers for a meter another process registered, within 5 s, without a restart', async () => {
    harness = new Harness({ meters: [calls], label: 'follow-serve' });
    const h = harness;
    server = new TallyHttpServer({ config: h.config, logger: pino({ level: 'silent' }) });
    const address = await server.listen({ port: 0, host: '127.0.0.1' });
    expect((await fetch(`${address}/api/v1/meters/bytes`)).status).toBe(404);

    const withBytes = resolveConfig({ ...h.raw, meters: [calls, bytes] }, {});
    await new MeterRegistry(h.redis, h.keys).declare(withBytes);
    const added = Date.now();
    await waitFor(async () => (await fetch(`${address}/api/v1/meters/bytes`)).status === 200, {
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    expect(Date.now() - added).toBeLessThan(5_000);
    const listed = (await (await fetch(`${address}/api/v1/meters`)).json()) as { slug: string }[];
    expect(listed.map((m) => m.slug)).toEqual(['calls', 'bytes']);
  });

  it('a deleted meter stops counting everywhere; its open windows still close and emit', async () => {
    // 10-second windows, so the window open at the deletion closes soon after.
    const short = [calls, bytes].map((m) => ({ ...m, windowSize: '10s' }));
    harness = new Harness({ meters: short, label: 'follow-delete' });
    const h = harness;
    await h.startWorker();
    const event = (id: string): UsageEvent => ({
      id,
      source: 'del',
      type: 'req',
      subject: 'acme',
      data: { bytes: 10 },
    });
    const producer = h.producer();
    // Into the window open now; it is still open when the meter is deleted (start early in a window,
    // so that the deletion and the second event fit in it).
    while (Date.now() % 10_000 > 3_000) await new Promise((resolve) => setTimeout(resolve, 100));
    const first = await producer.send(event('before'));
    const windowStart = Math.floor(Number(first.split('-')[0]) / 10_000) * 10_000;
    await waitFor(async () => (await h.redis.zcard(h.keys.windowIndex(0))) === 2, {
      message: 'both windows open',
    });

    const dir = mkdtempSync(join(tmpdir(), 'tally-delete-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'tally.yaml');
    writeFileSync(file, stringify(h.raw));
    const deleted = await run(['meters', 'delete', 'bytes', '--config', file], {
      REDIS_URL: h.config.redisUrl,
    });
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toMatch(/meter bytes deleted at registry v2/);
    const unknown = await run(['meters', 'delete', 'nope', '--config', file], {
      REDIS_URL: h.config.redisUrl,
    });
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr.trim().split('\n').at(-1)).toMatch(/no meter "nope" in the registry/);

    // Every partition is at the deletion's version once the command returned.
    expect(await h.redis.hget(h.keys.partitionRegistry(0), 'version')).toBe('2');
    const second = await producer.send(event('after'));
    // Both events in the window that was open at the deletion (else the test proves nothing).
    expect(Math.floor(Number(second.split('-')[0]) / 10_000) * 10_000).toBe(windowStart);
    await h.settle(30_000);
    const rollups = await h.rollups();
    expect(rollups.map((r) => [r.meter, r.valueDecimal, r.eventCount, r.revision]).sort()).toEqual([
      ['bytes', '10', 1, 1],
      ['calls', '2', 2, 1],
    ]);
    // The registry keeps it, deleted.
    const snapshot = await new MeterRegistry(h.redis, h.keys).read();
    expect(snapshot.active.map((m) => m.slug)).toEqual(['calls']);
    expect(snapshot.inactive.map((m) => m.slug)).toEqual(['bytes']);
  });
});
