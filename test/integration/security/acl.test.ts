/**
 * Least-privilege Redis users (issue 12, finding 2): under the minimal ACL of docs/operations.md a
 * worker, the entitlement evaluator and `tally status` work; with a command missing, `tally worker`
 * exits at once with one line naming it; and a BullMQ worker whose connection set-up is denied
 * cannot spin the process.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { pino } from 'pino';
import { resolveConfig, TallyWorker, UsageProducer } from '../../../src/index.js';
import { startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { createTestRedis, waitFor } from '../../support/redis.js';
import { Harness } from '../../support/tally.js';

const CLI = resolve(import.meta.dirname, '../../../dist/src/cli/main.js');
const MINUTE = 60_000;
const meters = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
];
/** The minimal ACL of docs/operations.md, for a given Tally prefix. */
const MINIMAL = [
  'resetchannels',
  '-@all',
  '+@read',
  '+@write',
  '+@scripting',
  '+@connection',
  '+@transaction',
  '-@dangerous',
  '+info',
  '+time',
];

interface Run {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  stdout(): string;
  kill(signal?: NodeJS.Signals): void;
}

const children = new Set<ReturnType<typeof spawn>>();

function tally(args: string[], env: Record<string, string> = {}): Run {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once('exit', (code, signal) => {
      children.delete(child);
      done({ code, signal });
    }),
  );
  return { exited, stderr: () => err, stdout: () => out, kill: (signal = 'SIGTERM') => child.kill(signal) };
}

/** stderr without the line every command prints first (`tally: Redis <url> (from ...)`). */
const errorLines = (run: Run) =>
  run
    .stderr()
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('tally: Redis '));

describe('least-privilege Redis users', () => {
  let server: RedisServerHandle;
  let dir: string;
  beforeAll(async () => {
    server = await startRedisServer();
    dir = mkdtempSync(join(tmpdir(), 'tally-acl-'));
  });
  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Creates an ACL user (password `pw`) and returns its URL. */
  async function user(name: string, rules: string[]): Promise<string> {
    const admin = createTestRedis({ url: server.url });
    await admin.call('ACL', 'SETUSER', name, 'reset', 'on', '>pw', ...rules);
    return `redis://${name}:pw@127.0.0.1:${server.port}`;
  }

  function configFile(h: Harness, url: string, name: string): string {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, stringify({ ...h.raw, redis: { url } }));
    return file;
  }

  it(
    'exits at once with one line naming the missing permission: INFO, TIME, a key pattern',
    { timeout: 60_000 },
    async () => {
      const h = new Harness({ meters, redisUrl: server.url, label: 'acl-deny' });
      try {
        const cases: [string, string[], RegExp][] = [
          // The user of the report: everything but the dangerous commands, INFO among them.
          ['noinfo', [`~${h.prefix}:*`, '~bull:*', '+@all', '-@dangerous'], /may not run INFO \(NOPERM/],
          [
            'notime',
            [`~${h.prefix}:*`, '~bull:*', ...MINIMAL.filter((r) => r !== '+time')],
            /may not run TIME \(NOPERM/,
          ],
          ['nobull', [`~${h.prefix}:*`, ...MINIMAL], /may not run scripts on the keys of BullMQ queue/],
        ];
        const runs = await Promise.all(
          cases.map(async ([name, rules]) =>
            tally(['worker', '--config', configFile(h, await user(name, rules), name)]),
          ),
        );
        for (const [i, [name, , pattern]] of cases.entries()) {
          const run = runs[i] as Run;
          const { code } = await run.exited;
          expect(code, `${name}: ${run.stderr()}`).toBe(1);
          const lines = errorLines(run);
          expect(lines, name).toHaveLength(1);
          expect(lines[0]).toMatch(/^tally: the Redis user may not /);
          expect(lines[0]).toMatch(pattern);
          expect(run.stdout()).toBe('');
        }
      } finally {
        await h.close();
      }
    },
  );

  it(
    'runs a worker with the entitlement evaluator and tally status under the minimal ACL, and a producer under the producer ACL',
    { timeout: 90_000 },
    async () => {
      const h = new Harness({ meters, redisUrl: server.url, label: 'acl-min' });
      const entitlementsQueue = `${h.prefix}-entitlements`;
      const raw = h.raw as { rollups: Record<string, unknown> };
      raw.rollups = { ...raw.rollups, queues: [`${h.prefix}-billing`, entitlementsQueue] };
      // A feature on the meter, so the evaluator consumes its queue (and publishes definitions as this user).
      h.raw.entitlements = { features: [{ key: 'tokens', meter: 'tokens' }] };
      const evaluated = new Queue(entitlementsQueue, { connection: h.redis });
      try {
        const url = await user('minimal', [`~${h.prefix}:*`, '~bull:*', ...MINIMAL]);
        const file = configFile(h, url, 'minimal');
        const worker = tally(['worker', '--config', file]);
        const time = new Date(Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE + 500).toISOString();
        const events = Array.from({ length: 50 }, (_, i) => ({
          id: `e${i}`,
          source: 'acl',
          type: 'llm',
          subject: `s${i % 5}`,
          time,
          data: { tokens: i },
        }));
        // The producer works under the producer ACL of docs/operations.md: XADD to the event streams only.
        const producerUrl = await user('producer', [
          `~${h.prefix}:{p*}:events`,
          'resetchannels',
          '-@all',
          '+xadd',
          '+info',
        ]);
        const producer = new UsageProducer({ redis: producerUrl, prefix: h.prefix, partitions: 1 });
        await producer.sendBatch(events);
        await producer.close();
        const asProducer = createTestRedis({ url: producerUrl });
        await expect(asProducer.set(`${h.prefix}:{p0}:state`, 'x')).rejects.toThrow(/NOPERM/);
        await expect(asProducer.xadd(`${h.prefix}:{p0}:dead-letter`, '*', 'f', 'v')).rejects.toThrow(
          /NOPERM/,
        );
        await expect(asProducer.xrange(`${h.prefix}:{p0}:events`, '-', '+')).rejects.toThrow(/NOPERM/);
        await h.settle(30_000);
        const { latest } = await h.finalRollups();
        const totals = Object.fromEntries([...latest.values()].map((r) => [r.subject, r.valueDecimal]));
        const expected: Record<string, string> = {};
        for (const e of events)
          expected[e.subject] = String(Number(expected[e.subject] ?? 0) + e.data.tokens);
        expect(totals).toEqual(expected);
        // The evaluator (same process, same user) consumed every rollup of its queue.
        await waitFor(async () => (await evaluated.getJobCounts('completed')).completed === latest.size, {
          timeoutMs: 15_000,
          message: 'the evaluator to apply every rollup',
        });
        expect((await evaluated.getJobCounts('failed')).failed).toBe(0);

        const status = tally(['status', '--config', file, '--json']);
        expect((await status.exited).code, status.stderr()).toBe(0);
        expect(JSON.parse(status.stdout())).toMatchObject({
          partitions: [{ partition: 0, group: { lag: 0 } }],
        });

        expect(errorLines(worker)).toEqual([]);
        worker.kill('SIGTERM');
        expect(await worker.exited).toEqual({ code: 0, signal: null });
      } finally {
        await evaluated.close();
        await h.close();
      }
    },
  );

  it(
    'applies entries Redis refused while TIME was revoked once it is granted again, and never calls them poison',
    { timeout: 60_000 },
    async () => {
      const h = new Harness({
        meters,
        redisUrl: server.url,
        label: 'acl-revoke',
        worker: { claimIdle: '300ms', maxDeliveries: 2 },
      });
      const rules = [`~${h.prefix}:*`, '~bull:*', ...MINIMAL];
      const url = await user('revoked', rules);
      const worker = new TallyWorker({
        config: resolveConfig({ ...h.raw, redis: { url } }, {}),
        logger: pino({ level: 'silent' }),
      });
      try {
        await worker.start();
        const admin = createTestRedis({ url: server.url });
        await admin.call('ACL', 'SETUSER', 'revoked', '-time');
        const time = new Date(Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE + 500).toISOString();
        const events = Array.from({ length: 30 }, (_, i) => ({
          id: `r${i}`,
          source: 'acl',
          type: 'llm',
          subject: 'acme',
          time,
          data: { tokens: 1 },
        }));
        await h.producer().sendBatch(events.slice(0, 10));
        await h.producer().send(events[10] as (typeof events)[number]);
        // Many reclaim periods (claimIdle 300 ms) and more than maxDeliveries of them.
        await new Promise((done) => setTimeout(done, 3_000));
        expect(worker.getStats().applied).toBe(0);
        await admin.call('ACL', 'SETUSER', 'revoked', '+time');
        await h.producer().sendBatch(events.slice(11));
        await h.settle(30_000);
        expect(await h.deadLetters()).toEqual([]);
        const { latest } = await h.finalRollups();
        expect([...latest.values()].map((r) => `${r.valueDecimal}/${r.eventCount}`)).toEqual(['30/30']);
        expect(worker.getStats().poison).toBe(0);
      } finally {
        await worker.close();
        await h.close();
      }
    },
  );

  it(
    'pauses a BullMQ worker that fails at once on every turn, so the event loop keeps running',
    { timeout: 30_000 },
    async () => {
      // INFO denied: BullMQ's connection set-up fails, and its fetch loop retries without ever waiting.
      // In a child process: without the guard it would starve this test's own timers for good.
      const url = await user('spin', ['~bull:*', '+@all', '-@dangerous']);
      const script = `
      import { createRequire } from 'node:module';
      const require = createRequire(${JSON.stringify(resolve(import.meta.dirname, '../../../package.json'))});
      const { Worker } = require('bullmq');
      const { guardWorker } = await import(${JSON.stringify(resolve(import.meta.dirname, '../../../dist/src/rollups/index.js'))});
      const worker = new Worker('acl-spin', async () => undefined, { connection: { url: process.env.SPIN_URL, maxRetriesPerRequest: null, enableReadyCheck: false } });
      let errors = 0;
      let warnings = 0;
      worker.on('error', () => errors++);
      if (process.env.SPIN_GUARD === '1') guardWorker(worker, 'acl-spin', { warn: () => warnings++ });
      const started = Date.now();
      await new Promise((done) => setTimeout(done, 200));
      const lag = Date.now() - started - 200;
      await new Promise((done) => setTimeout(done, 2500));
      console.log(JSON.stringify({ lag, errors, warnings }));
      await worker.close();
      process.exit(0);`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        env: { ...process.env, SPIN_URL: url, SPIN_GUARD: '1' },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      children.add(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const [code] = await new Promise<[number | null]>((done) => child.once('exit', (c) => done([c])));
      clearTimeout(timer);
      children.delete(child);
      expect(code, 'the child spun and was killed after 15 s').toBe(0);
      const result = JSON.parse(out) as { lag: number; errors: number; warnings: number };
      expect(result.lag).toBeLessThan(500);
      expect(result.warnings).toBeGreaterThanOrEqual(1);
      // Paused and resumed with backoff: a few hundred errors over seconds, not millions.
      expect(result.errors).toBeGreaterThan(0);
      expect(result.errors).toBeLessThan(1_000);
    },
  );
});
