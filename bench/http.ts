/**
 * HTTP ingest (issue 11): `tally serve` (one Node process, so one core) taking batches of 500 events
 * per POST, against the same client sending the same batches with `UsageProducer.sendBatch`
 * directly, in the same run (alternating, median of rounds). Then the request latency of an open-loop
 * client at a fixed rate (default 20,000 ev/s = 40 requests/s of 500). Events are checked: every
 * event sent is in the streams.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { benchConfig } from './config.js';
import { fmt, median, type BenchContext } from './drain.js';
import { Child } from './procs.js';

export interface HttpScenario {
  readonly batch: number;
  readonly inFlight: number;
  readonly events: number;
  readonly directRuns: number[];
  readonly httpRuns: number[];
  readonly direct: number;
  readonly http: number;
  readonly ratio: number;
  readonly latency: {
    rate: number;
    seconds: number;
    calls: number;
    failed: number;
    p50: number;
    p99: number;
    max: number;
    achieved: number;
  };
}

const CLI = resolve(import.meta.dirname, '../src/cli/main.js');
const BATCH = 500;
const IN_FLIGHT = 4;

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
}

async function startServe(
  ctx: BenchContext,
  prefix: string,
  partitions: number,
): Promise<{ baseUrl: string; stop: () => Promise<void> }> {
  const file = join(ctx.dir, `${prefix}-serve.yaml`);
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  writeFileSync(
    file,
    stringify({
      ...benchConfig({ url: ctx.url, prefix, partitions, batchSize: 1000, windowSize: 'MINUTE' }),
      http: { maxEventsPerRequest: BATCH },
    }),
  );
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--config', file, '--port', String(port), '--host', '127.0.0.1'],
    {
      env: { ...process.env, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`tally serve exited with ${child.exitCode}`);
    if ((await fetch(`${baseUrl}/readyz`).catch(() => undefined))?.ok) break;
    if (Date.now() > deadline) throw new Error('tally serve did not become ready');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    baseUrl,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      process.off('exit', kill);
    },
  };
}

async function client(args: Record<string, unknown>): Promise<Record<string, unknown>> {
  const child = new Child('http-client-child', [JSON.stringify(args)]);
  try {
    await child.receive('loaded');
    child.send({ type: 'go' });
    return await child.receive('done');
  } finally {
    await child.kill();
  }
}

async function countEvents(ctx: BenchContext, prefix: string, partitions: number): Promise<number> {
  let n = 0;
  for (let p = 0; p < partitions; p++) {
    for (const [, fields] of (await ctx.redis.xrange(`${prefix}:{p${p}}:events`, '-', '+')) as [
      string,
      string[],
    ][]) {
      n += fields[0] === 'events' ? (JSON.parse(fields[1] as string) as unknown[]).length : 1;
    }
  }
  return n;
}

export async function runHttpScenario(ctx: BenchContext): Promise<HttpScenario> {
  const { params, log } = ctx;
  const partitions = 4;
  const events = params.httpEvents;
  const directRuns: number[] = [];
  const httpRuns: number[] = [];
  const prefix = 'bench-http';
  const serve = await startServe(ctx, prefix, partitions);
  try {
    for (let round = 0; round < params.httpRounds; round++) {
      for (const mode of round % 2 === 0 ? (['direct', 'http'] as const) : (['http', 'direct'] as const)) {
        await ctx.redis.flushall();
        const idPrefix = `${mode}${round}-`;
        const done = await client({
          mode,
          url: ctx.url,
          baseUrl: serve.baseUrl,
          prefix,
          partitions,
          events,
          batch: BATCH,
          inFlight: IN_FLIGHT,
          rate: 0,
          durationMs: 0,
          seed: round + 1,
          idPrefix,
        });
        const stored = await countEvents(ctx, prefix, partitions);
        if (stored !== events) throw new Error(`http scenario: ${mode} stored ${stored} of ${events} events`);
        (mode === 'direct' ? directRuns : httpRuns).push(done.rate as number);
        log(
          `http: ${mode} ${fmt(done.rate as number)} ev/s (${fmt(events)} events, ${BATCH} per call, ${IN_FLIGHT} in flight)`,
        );
      }
    }
    await ctx.redis.flushall();
    const rate = params.httpLatencyRate;
    const done = await client({
      mode: 'http',
      url: ctx.url,
      baseUrl: serve.baseUrl,
      prefix,
      partitions,
      events: 0,
      batch: BATCH,
      inFlight: 1,
      rate,
      durationMs: params.httpLatencySeconds * 1000,
      seed: 99,
      idPrefix: 'lat-',
    });
    const latencies = (done.latencies as number[]).sort((a, b) => a - b);
    const latency = {
      rate,
      seconds: done.seconds as number,
      calls: done.calls as number,
      failed: done.failed as number,
      p50: quantile(latencies, 0.5),
      p99: quantile(latencies, 0.99),
      max: latencies[latencies.length - 1] ?? Number.NaN,
      achieved: (done.events as number) / (done.seconds as number),
    };
    log(
      `http: open loop ${fmt(rate)} ev/s for ${params.httpLatencySeconds} s: p50 ${latency.p50.toFixed(1)} ms, p99 ${latency.p99.toFixed(1)} ms, ${latency.failed} failed`,
    );
    const direct = median(directRuns);
    const http = median(httpRuns);
    return {
      batch: BATCH,
      inFlight: IN_FLIGHT,
      events,
      directRuns,
      httpRuns,
      direct,
      http,
      ratio: http / direct,
      latency,
    };
  } finally {
    await serve.stop();
  }
}
