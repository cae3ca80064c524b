/**
 * `npm run bench`: Tally's benchmark suite (issue 5). Starts its own throwaway redis-server, runs the
 * scenarios (drain, scaling, bullmq, live, relay, memory), prints a table whose every figure is a ratio or
 * sits beside a baseline measured in the same run, and writes bench/results/latest.json.
 * Every child process and the redis-server are killed at the end, also on failure or Ctrl-C.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Redis } from 'ioredis';
import { startRedisServer, type RedisTarget } from '../src/cli/ephemeral-redis.js';
import { runApplyScenario, type ApplyScenario } from './apply.js';
import { runBullmqScenario, type BullmqScenario } from './bullmq.js';
import { runCheckLatency, type CheckLatencyResult } from './check-latency.js';
import { fmt, runDrainScenario, type BenchContext, type DrainScenario } from './drain.js';
import { runHttpScenario, type HttpScenario } from './http.js';
import { runLiveScenario, type LiveScenario } from './live.js';
import { machineInfo, versions } from './machine.js';
import { runMemoryScenario, type MemoryScenario } from './memory.js';
import { runRelayScenario, type RelayScenario } from './relay.js';
import { installCleanup } from './procs.js';
import { ISSUE_EVENTS, parseParams, USAGE, type BenchParams } from './params.js';
import { benchClient, info } from './redis-stats.js';
import { renderReport, type Results } from './report.js';
import { runScalingScenario, type ScalingScenario } from './scaling.js';

const machineCores = cpus().length;

async function main(): Promise<void> {
  const parsed = parseParams(process.argv.slice(2));
  if (parsed === 'help') {
    console.log(USAGE);
    return;
  }
  const params: BenchParams = parsed;
  const started = Date.now();
  let checksError: string | undefined;
  const tmp = mkdtempSync(join(tmpdir(), 'tally-bench-'));
  const resultsDir = resolve('bench/results');
  mkdirSync(resultsDir, { recursive: true });
  let server: RedisTarget | undefined;
  let redis: Redis | undefined;
  const cleanup = async () => {
    redis?.disconnect();
    redis = undefined;
    // Bounded: a redis-server that was SIGKILLed never emits the 'exit' stop() waits for (see report).
    await Promise.race([
      server?.stop().catch(() => undefined),
      new Promise((r) => setTimeout(r, 5000).unref()),
    ]);
    server = undefined;
    rmSync(tmp, { recursive: true, force: true });
  };
  installCleanup(cleanup);
  try {
    // Never the shared 127.0.0.1:6379: always a redis-server of our own, on a free port.
    server = await startRedisServer();
    redis = benchClient(server.url);
    // Watchdog: if the redis-server dies, pending commands may never settle; end the run loudly.
    const serverPid = Number((await info(redis, 'server')).get('process_id'));
    const watchdog = setInterval(() => {
      try {
        process.kill(serverPid, 0);
      } catch {
        console.error(`bench: redis-server (pid ${serverPid}) is gone; aborting`);
        rmSync(tmp, { recursive: true, force: true });
        process.exit(1); // the 'exit' handler kills every child process
      }
    }, 500);
    watchdog.unref();
    const log = (line: string) =>
      console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${line}`);
    log(`redis-server started at ${server.url}`);
    if (params.events < ISSUE_EVENTS) {
      log(
        `backlog scaled down from the issue's ${fmt(ISSUE_EVENTS)} to ${fmt(params.events)} events to stay under 5 minutes; --events ${ISSUE_EVENTS} runs the full size`,
      );
    }
    const ctx: BenchContext = { redis, url: server.url, dir: tmp, resultsDir, params, log };
    const results: Results = {
      generatedAt: new Date().toISOString(),
      command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
      machine: machineInfo(),
      versions: await versions(redis),
      params: { ...params, scaledDownFromIssue: params.events < ISSUE_EVENTS ? ISSUE_EVENTS : false },
      redisConfig: await redisConfig(redis),
      scenarios: {},
      summary: {},
    };
    const s = results.scenarios;
    const want = (name: BenchParams['only'][number]) => params.only.includes(name);
    const load = (results.loadAverage = {} as Record<string, number[]>);
    const stage = async <T>(name: string, run: () => Promise<T>): Promise<T> => {
      await ctx.redis.flushall();
      // Other work on the machine shows here (1-minute load average before and after the scenario).
      const before = loadavg()[0] ?? 0;
      const value = await run();
      load[name] = [before, loadavg()[0] ?? 0].map((l) => Math.round(l * 100) / 100);
      if (before > machineCores)
        log(
          `warning: load average ${before.toFixed(1)} > ${machineCores} cores before ${name}: other processes compete for the CPU`,
        );
      return value;
    };
    if (want('drain')) s.drain = await stage<DrainScenario>('drain', () => runDrainScenario(ctx));
    if (want('apply')) s.apply = await stage<ApplyScenario>('apply', () => runApplyScenario(ctx));
    if (want('scaling')) s.scaling = await stage<ScalingScenario>('scaling', () => runScalingScenario(ctx));
    if (want('bullmq')) s.bullmq = await stage<BullmqScenario>('bullmq', () => runBullmqScenario(ctx));
    if (want('live')) s.live = await stage<LiveScenario>('live', () => runLiveScenario(ctx));
    if (want('relay')) s.relay = await stage<RelayScenario>('relay', () => runRelayScenario(ctx));
    if (want('http')) s.http = await stage<HttpScenario>('http', () => runHttpScenario(ctx));
    if (want('memory')) s.memory = await stage<MemoryScenario>('memory', () => runMemoryScenario(ctx));
    if (want('checks')) {
      // Entitlement check latency (issue 4, bench/check-latency.ts, owned by the entitlements work): a
      // failure there is reported and fails the run, but does not discard the figures above.
      try {
        s.checks = await stage<CheckLatencyResult>('checks', () =>
          runCheckLatency(ctx.url, { log: (l) => log(`checks: ${l}`) }),
        );
      } catch (err) {
        checksError = err instanceof Error ? err.message : String(err);
        s.checks = { error: checksError };
        log(`checks: FAILED: ${checksError}`);
      }
    }
    results.durationSeconds = Math.round((Date.now() - started) / 100) / 10;
    const { table, summary } = renderReport(results);
    results.summary = summary;
    console.log(`\n${table}`);
    const out = resolve(params.out);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(
      out,
      `${JSON.stringify(results, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`,
    );
    console.log(`\nwrote ${out} (${results.durationSeconds} s)`);
    if (checksError !== undefined)
      throw new Error(`the entitlement check-latency scenario failed: ${checksError}`);
  } finally {
    await cleanup();
  }
}

/** Server settings that change the figures (encodings of small hashes, eviction). */
async function redisConfig(redis: Redis): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of [
    'hash-max-listpack-entries',
    'hash-max-listpack-value',
    'zset-max-listpack-entries',
    'maxmemory-policy',
    'appendonly',
    'save',
  ]) {
    const [, value = ''] = (await redis.config('GET', name)) as string[];
    out[name] = value;
  }
  return out;
}

let finished = false;
process.on('beforeExit', () => {
  // The event loop emptied while main() still awaited something that can no longer settle.
  if (!finished) {
    console.error('bench: stalled before finishing (a Redis command or child reply never settled)');
    process.exitCode = 1;
    finished = true;
  }
});

main()
  .then(() => {
    finished = true;
  })
  .catch((err: unknown) => {
    finished = true;
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exitCode = 1;
  });
