/**
 * Shutdown while Redis does not answer (issue 12, finding 6): bounded by worker.shutdownTimeout, a
 * second signal exits at once, and a lease tick that resumes after shutdown began acquires nothing.
 * Redis is frozen with SIGSTOP (connections stay open, commands wait), on a server of the test's own.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { MeteringScripts, TallyKeys } from '../../../src/redis/index.js';
import { PartitionLeases } from '../../../src/worker/leases.js';
import { start } from '../../support/cli.js';
import { createTestRedis, uniquePrefix } from '../../support/redis.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { Harness } from '../../support/tally.js';

const meters = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
];

describe('shutdown while Redis does not answer', () => {
  let server: RedisServerHandle;
  let dir: string;
  beforeEach(async () => {
    server = await startRedisServer();
    dir = mkdtempSync(join(tmpdir(), 'tally-shutdown-'));
  });
  afterEach(async () => {
    await server.kill('SIGCONT');
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function startedWorker(h: Harness) {
    const file = join(dir, 'tally.yaml');
    writeFileSync(
      file,
      stringify({ ...h.raw, worker: { ...(h.raw.worker as object), shutdownTimeout: '1500ms' } }),
    );
    const worker = start(['worker', '--config', file, '--roles', 'metering'], { LOG_LEVEL: 'info' });
    await worker.waitForOutput(/"msg":"worker started"/);
    return worker;
  }

  async function exitOf(
    worker: ReturnType<typeof start>,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
    const started = Date.now();
    const child = worker.child;
    if (child.exitCode !== null || child.signalCode !== null)
      return { code: child.exitCode, signal: child.signalCode, ms: 0 };
    return new Promise((done) =>
      child.once('exit', (code, signal) => done({ code, signal, ms: Date.now() - started })),
    );
  }

  it(
    'exits non-zero after worker.shutdownTimeout when Redis does not answer',
    { timeout: 60_000 },
    async () => {
      const h = new Harness({ meters, redisUrl: server.url, label: 'stop-timeout' });
      try {
        const worker = await startedWorker(h);
        await server.kill('SIGSTOP');
        const exited = exitOf(worker);
        worker.child.kill('SIGTERM');
        const { code, ms } = await exited;
        expect(code, worker.output()).toBe(1);
        expect(ms).toBeGreaterThanOrEqual(1_400);
        expect(ms).toBeLessThan(6_000);
        expect(worker.output()).toMatch(/"msg":"shutting down"/);
        expect(worker.output()).toMatch(/shutdown did not finish within worker.shutdownTimeout/);
      } finally {
        await server.kill('SIGCONT');
        await h.close();
      }
    },
  );

  it('exits at once on a second signal', { timeout: 60_000 }, async () => {
    const h = new Harness({ meters, redisUrl: server.url, label: 'stop-twice' });
    try {
      const worker = await startedWorker(h);
      await server.kill('SIGSTOP');
      worker.child.kill('SIGTERM');
      await worker.waitForOutput(/"msg":"shutting down"/);
      const exited = exitOf(worker);
      worker.child.kill('SIGTERM');
      const { code, ms } = await exited;
      expect(code, worker.output()).toBe(128 + 15);
      expect(ms).toBeLessThan(1_000);
      expect(worker.output()).toMatch(/second signal: exiting at once/);
    } finally {
      await server.kill('SIGCONT');
      await h.close();
    }
  });

  it('acquires no lease in a tick that resumes after shutdown began', { timeout: 30_000 }, async () => {
    const client = createTestRedis({ url: server.url });
    const keys = new TallyKeys(uniquePrefix('leases'));
    const stop = new AbortController();
    const leases = new PartitionLeases(
      client,
      new MeteringScripts(client, keys),
      keys,
      'replica-a',
      4,
      5_000,
      pino({ level: 'silent' }),
      stop.signal,
    );
    await server.kill('SIGSTOP');
    const tick = leases.tick();
    await new Promise((done) => setTimeout(done, 200));
    stop.abort();
    await server.kill('SIGCONT');
    expect(await tick).toEqual({ acquired: [], released: [], lost: [] });
    const held = await Promise.all([0, 1, 2, 3].map((p) => client.get(keys.lease(p))));
    expect(held).toEqual([null, null, null, null]);

    // Without a shutdown, the same tick takes all four (once replica-a left the registry).
    await client.zrem(keys.replicas(), 'replica-a');
    const other = new PartitionLeases(
      client,
      new MeteringScripts(client, keys),
      keys,
      'replica-b',
      4,
      5_000,
      pino({ level: 'silent' }),
    );
    expect((await other.tick()).acquired.sort()).toEqual([0, 1, 2, 3]);
  });
});
