/**
 * The cost limit of usage queries, against a real `tally serve` process on its own redis-server: a
 * query over more windows than windows.maxQueryWindows is a 400 stating the limit (`to` in year 9999
 * on a MINUTE meter used to kill the process with a 1.8 GB window list), the largest allowed query
 * leaves /healthz answering within 100 ms, and a query stops reading windows once its client has gone
 * (it used to read on for nobody).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TallyKeys } from '../../../src/index.js';
import { partitionOf } from '../../../src/producer/index.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { createTestRedis, uniquePrefix, waitFor } from '../../support/redis.js';
import { startCli, type ChildServer } from './serve-process.js';

const MINUTE = 60_000;
/** The default of windows.maxQueryWindows. */
const LIMIT = 100_000;
/**
 * The largest allowed query starts this many minutes back (inside the default 35-day retention) and
 * spans LIMIT windows, of which the ones up to now + maxFutureSkew are read: ~50,000 per partition.
 */
const BACK = 50_000;
const PARTITIONS = 4;
/** Cells written, one every STRIDE windows. */
const CELLS = 1_500;
const STRIDE = 33;
const SUBJECT = 'cust-1';

describe('usage query cost limit (tally serve)', () => {
  let redis: RedisServerHandle;
  let api: ChildServer;
  let from: number;
  const prefix = uniquePrefix('qcost');

  const queryUrl = (f: number | string, t: number | string) =>
    `${api.url}/api/v1/meters/tokens/query?from=${typeof f === 'number' ? new Date(f).toISOString() : f}&to=${typeof t === 'number' ? new Date(t).toISOString() : t}`;

  let stats: ReturnType<typeof createTestRedis>;
  async function hgetallCalls(): Promise<number> {
    const info = await stats.info('commandstats');
    return Number(/cmdstat_hgetall:calls=(\d+)/.exec(info)?.[1] ?? 0);
  }

  beforeAll(async () => {
    redis = await startRedisServer();
    stats = createTestRedis({ url: redis.url });
    api = await startCli(
      {
        redis: { url: redis.url },
        streams: { prefix, partitions: PARTITIONS },
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
      (port) => ['serve', '--port', String(port), '--host', '127.0.0.1'],
    );
    // One cell every STRIDE minute windows of the largest allowed range: 2 tokens each.
    from = Math.floor(Date.now() / MINUTE) * MINUTE - BACK * MINUTE;
    const keys = new TallyKeys(prefix);
    const p = partitionOf(SUBJECT, PARTITIONS);
    const pipeline = stats.pipeline();
    const group = JSON.stringify([SUBJECT, 'a']);
    for (let i = 0; i < CELLS; i++)
      pipeline.hset(
        keys.window(p, 'tokens', from + i * STRIDE * MINUTE),
        `c:${group}`,
        '1',
        `v:${group}`,
        '2000000',
      );
    await pipeline.exec();
  }, 60_000);

  afterAll(async () => {
    await api?.stop();
    await redis?.stop();
  });

  it('answers a query to year 9999 on a MINUTE meter with a 400 that states the limit, and lives on', async () => {
    const res = await fetch(queryUrl(from, '9999-12-31T00:00:00Z'));
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const body = (await res.json()) as { detail: string };
    expect(body.detail).toContain(`at most ${LIMIT} per query (windows.maxQueryWindows)`);
    expect((await fetch(`${api.url}/healthz`)).status).toBe(200);
    expect(api.child.exitCode).toBeNull();
    // One window more than the limit is refused too; exactly the limit is not (next test).
    expect((await fetch(queryUrl(from, from + (LIMIT + 1) * MINUTE))).status).toBe(400);
  });

  it('keeps /healthz within 100 ms during the largest allowed query, and answers it exactly', async () => {
    const before = await hgetallCalls();
    let done = false;
    const query = fetch(queryUrl(from, from + LIMIT * MINUTE)).finally(() => (done = true));
    const latencies: number[] = [];
    while (!done) {
      const t0 = performance.now();
      const res = await fetch(`${api.url}/healthz`);
      await res.arrayBuffer();
      latencies.push(performance.now() - t0);
      expect(res.status).toBe(200);
      // Probes 20 ms apart: a busy loop here would take a core from the server it measures.
      await new Promise((r) => setTimeout(r, 20));
    }
    const res = await query;
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { value: number }[] };
    expect(body.data.reduce((s, r) => s + r.value, 0)).toBe(2 * CELLS);
    // It really was the largest query (every window up to now of every partition read), and healthz
    // overlapped it.
    expect((await hgetallCalls()) - before).toBeGreaterThanOrEqual(BACK * PARTITIONS);
    expect(latencies.length).toBeGreaterThanOrEqual(5);
    // Within 100 ms, but for single late probes: on 2 cores shared with other test files a probe now
    // and then waits 100-175 ms for a CPU (seen in CI runs: up to 5 of ~120, never two in a row), which
    // says nothing about the query. A query that holds the event loop (the old one did, for seconds)
    // makes every probe during it late: consecutive late probes, a late median, a probe past 500 ms.
    const shown = `healthz latencies (ms): ${latencies.map((x) => x.toFixed(0)).join(' ')}`;
    const sorted = [...latencies].sort((a, b) => a - b);
    expect(sorted[Math.floor(sorted.length / 2)], shown).toBeLessThan(50);
    const lateInARow = latencies.some((x, i) => x >= 100 && (latencies[i + 1] ?? 0) >= 100);
    expect(lateInARow, shown).toBe(false);
    expect(Math.max(...latencies), shown).toBeLessThan(500);
  }, 60_000);

  it('stops reading windows once the client has gone', async () => {
    const before = await hgetallCalls();
    const controller = new AbortController();
    const query = fetch(queryUrl(from, from + LIMIT * MINUTE), { signal: controller.signal }).catch(
      () => undefined,
    );
    // Abort once the query is under way (a few chunks read).
    await waitFor(async () => (await hgetallCalls()) - before > 2_000, {
      timeoutMs: 10_000,
      intervalMs: 5,
      message: 'the query to start reading windows',
    });
    controller.abort();
    await query;
    // Wait until the reads have stopped (two samples 200 ms apart agree), then compare with the full cost.
    let last = -1;
    const settled = await waitFor(
      async () => {
        const now = await hgetallCalls();
        const same = now === last;
        last = now;
        return same ? now : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200, message: 'HGETALLs to stop' },
    );
    expect(settled - before).toBeLessThan((BACK * PARTITIONS) / 2);
    expect((await fetch(`${api.url}/healthz`)).status).toBe(200);
  }, 60_000);
});
