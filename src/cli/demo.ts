import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { parse as parseYaml } from 'yaml';
import { resolveConfig } from '../config/index.js';
import { UsageProducer } from '../producer/index.js';
import { createRollupSubscriber, type RollupJob } from '../rollups/index.js';
import { EntitlementChecker, EntitlementEvaluator } from '../entitlements/index.js';
import { TallyWorker } from '../worker/index.js';
import { demoConfigData, DEMO_OVERRIDES } from './demo-config.js';
import { resolveRedis } from './ephemeral-redis.js';
import { maskUrl } from '../redis/index.js';
import { produceSynthetic } from './synthetic.js';

export interface DemoOptions {
  /** Stop after this many ms (default: run until SIGINT/SIGTERM). */
  durationMs?: number;
  /** Events per second the synthetic producer aims for. */
  rate?: number;
}

/** The package's root (where package.json is), from src/cli or dist/src/cli alike. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const CONFIG = join(packageRoot(), 'config', 'tally.yaml');

function describe(r: RollupJob): string {
  const groups = Object.entries(r.groupBy)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  const span = `${r.windowStart.slice(11, 19)}–${r.windowEnd.slice(11, 19)}`;
  const rev = r.revision > 1 ? ` (correction, revision ${r.revision})` : '';
  return `  rollup ${r.meter.padEnd(12)} ${r.subject.padEnd(12)} ${span}  ${r.aggregation} = ${r.valueDecimal} over ${r.eventCount} events ${groups}${rev}`;
}

/**
 * The demo behind `npm start`: a worker, a synthetic producer (with duplicates and a few invalid
 * events) and a rollup subscriber, on REDIS_URL, the local Redis, or a Redis it starts itself.
 */
export async function runDemo(options: DemoOptions = {}): Promise<void> {
  const rate = options.rate ?? 2000;
  const redis = await resolveRedis();
  const url = maskUrl(redis.url);
  const where = {
    env: `REDIS_URL (${url})`,
    local: `the local Redis at ${url}`,
    ephemeral: `an ephemeral redis-server started for this demo at ${url} (no REDIS_URL set and nothing on 127.0.0.1:6379)`,
    container: `a Redis container started with testcontainers at ${url}`,
  }[redis.origin];
  console.log(`Tally demo on ${where}`);
  process.stderr.write(`tally: Redis ${url} (${redis.origin === 'env' ? 'from REDIS_URL' : redis.origin})\n`);
  const config = resolveConfig(demoConfigData(parseYaml(await readFile(CONFIG, 'utf8'))), {
    ...process.env,
    REDIS_URL: redis.url,
  });
  console.log(`Config: ${CONFIG} with ${DEMO_OVERRIDES}`);
  const logger = pino({ level: process.env.LOG_LEVEL ?? 'warn' });
  const worker = new TallyWorker({ config, logger });
  await worker.start();
  // The entitlement evaluator consumes the second rollup queue; the checker answers in real time.
  const evaluator = new EntitlementEvaluator({ config, logger });
  await evaluator.start();
  const checker = new EntitlementChecker({ config, logger });
  const producer = new UsageProducer({
    redis: redis.url,
    prefix: config.prefix,
    partitions: config.partitions,
  });
  const subscriberConnection = new Redis(redis.url, { maxRetriesPerRequest: null });
  let rollups = 0;
  const subscriber = createRollupSubscriber(
    config.rollups.queues[0] as string,
    (rollup) => {
      rollups++;
      if (rollups <= 400) console.log(describe(rollup));
      return Promise.resolve();
    },
    { connection: subscriberConnection, prefix: config.rollups.queuePrefix, concurrency: 20 },
  );
  console.log(
    `Worker ${worker.consumer} consuming ${config.partitions} partitions; producing ~${rate} events/s ` +
      `(3% duplicates, 0.5% invalid) for ${config.meters.length} meters. Ctrl-C stops.`,
  );

  const stop = new AbortController();
  const started = Date.now();
  let produced = 0;
  const producing = produceSynthetic({
    send: async (batch) => {
      await producer.sendBatch(batch);
      produced += batch.length;
    },
    rate,
    signal: stop.signal,
  });
  const report = setInterval(() => {
    void checker.check('customer-0', 'gpt5_tokens').then(
      (c) =>
        console.log(
          `  check customer-0 gpt5_tokens: hasAccess=${c.hasAccess} usage=${c.usage} of ${c.limit} (${c.limitType}), ` +
            `balance=${c.balance} this minute`,
        ),
      () => undefined,
    );
    const s = worker.getStats();
    const secs = (Date.now() - started) / 1000;
    console.log(
      `[${secs.toFixed(0)}s] produced ${produced} (${(produced / secs).toFixed(0)}/s), applied ${s.applied}, ` +
        `duplicates dropped ${s.duplicates}, dead-lettered ${s.deadLettered}, windows closed ${s.windowsClosed}, rollups ${rollups}`,
    );
  }, 5000);

  await new Promise<void>((resolve) => {
    const finish = () => resolve();
    process.once('SIGINT', finish);
    process.once('SIGTERM', finish);
    if (options.durationMs !== undefined) setTimeout(finish, options.durationMs).unref();
  });
  console.log('Stopping…');
  stop.abort();
  clearInterval(report);
  await producing;
  await producer.close();
  await worker.close();
  await evaluator.close();
  await checker.close();
  await subscriber.close();
  subscriberConnection.disconnect();
  await redis.stop();
  const s = worker.getStats();
  console.log(
    `Done: ${produced} events produced, ${s.applied} applied, ${s.duplicates} duplicates dropped, ` +
      `${s.deadLettered} dead-lettered, ${rollups} rollups received.`,
  );
}
