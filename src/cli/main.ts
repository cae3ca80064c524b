#!/usr/bin/env node
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfigFile, parseDuration, type TallyConfig } from '../config/index.js';
import { TallyError } from '../errors/index.js';
import { explainInvalidEvent, type UsageEvent } from '../events/index.js';
import { UsageProducer } from '../producer/index.js';
import { TallyWorker } from '../worker/index.js';
import { ADMIN_USAGE, deadLetterCommand, statusCommand } from './admin-commands.js';
import { runDemo } from './demo.js';
import { checkCommand, parseRoles, startEvaluatorRole, usageCommand } from './entitlement-commands.js';
import { produceSynthetic } from './synthetic.js';

const USAGE = `Usage: tally <command> [options]

Commands:
  demo [--duration 30s] [--rate 2000]      run a worker, a synthetic producer and a rollup subscriber
  worker --config FILE [--partitions 0,1]  run one worker replica (start several to scale out)
         [--roles metering,entitlements]  roles it runs (default both: metering and the entitlement evaluator)
  produce --config FILE < events.ndjson    send CloudEvents, one JSON object per line
  demo-producer --config FILE [--rate N]   send synthetic events for the meters of config/tally.yaml
  usage --config FILE --meter M --from ISO --to ISO [--subject S] [--window-size HOUR] [--group-by K]
                                           query stored usage (--help for all options)
  check --config FILE SUBJECT FEATURE      real-time entitlement check (JSON; exit code 3 without access)
${ADMIN_USAGE}

REDIS_URL overrides the config's redis.url. LOG_LEVEL sets the log level (default info).`;

async function config(values: { config?: string }): Promise<TallyConfig> {
  if (!values.config) throw new TallyError('ERR_TALLY_CONFIG', '--config FILE is required');
  return loadConfigFile(values.config);
}

async function worker(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { config: { type: 'string', short: 'c' }, partitions: { type: 'string' }, roles: { type: 'string' } },
  });
  const cfg = await config(values);
  const { roles, explicit } = parseRoles(values.roles);
  const logger = pino({ level: process.env.LOG_LEVEL ?? 'info' });
  const partitions = values.partitions?.split(',').map((p) => Number(p.trim()));
  const w = roles.has('metering') ? new TallyWorker({ config: cfg, logger, ...(partitions ? { partitions } : {}) }) : undefined;
  let evaluator: Awaited<ReturnType<typeof startEvaluatorRole>>;
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    void Promise.all([w?.close(), evaluator?.close()]).then(() => process.exit(0));
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  await w?.start();
  if (roles.has('entitlements')) evaluator = await startEvaluatorRole(cfg, logger, explicit);
}

async function produce(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, batch: { type: 'string' } } });
  const cfg = await config(values);
  const producer = new UsageProducer({ redis: cfg.redis, prefix: cfg.prefix, partitions: cfg.partitions, maxEntryBytes: cfg.maxEntryBytes });
  const batchSize = Number(values.batch ?? 500);
  let batch: UsageEvent[] = [];
  let sent = 0;
  let line = 0;
  const bad: string[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    await producer.sendBatch(batch);
    sent += batch.length;
    batch = [];
  };
  for await (const text of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    line++;
    if (text.trim() === '') continue;
    let event: unknown;
    try {
      event = JSON.parse(text);
    } catch (err) {
      bad.push(`line ${line}: not JSON: ${(err as Error).message}`);
      continue;
    }
    const invalid = explainInvalidEvent(event);
    if (invalid) bad.push(`line ${line}: ${invalid.detail}`);
    else batch.push(event as UsageEvent);
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  await producer.close();
  console.log(`sent ${sent} events${bad.length ? `, rejected ${bad.length}:` : ''}`);
  for (const b of bad.slice(0, 20)) console.log(`  ${b}`);
  if (bad.length > 0) process.exitCode = 1;
}

async function demoProducer(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, rate: { type: 'string' } } });
  const cfg = await config(values);
  const producer = new UsageProducer({ redis: cfg.redis, prefix: cfg.prefix, partitions: cfg.partitions, maxEntryBytes: cfg.maxEntryBytes });
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  const rate = Number(values.rate ?? 1000);
  console.log(`producing ~${rate} synthetic events/s to ${cfg.prefix} (${cfg.partitions} partitions); Ctrl-C stops`);
  const { sent } = await produceSynthetic({ send: (batch) => producer.sendBatch(batch), rate, signal: stop.signal, subjects: 50 });
  await producer.close();
  console.log(`sent ${sent} events`);
}

async function demo(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { duration: { type: 'string' }, rate: { type: 'string' } } });
  await runDemo({
    ...(values.duration ? { durationMs: parseDuration(values.duration, '--duration') } : {}),
    ...(values.rate ? { rate: Number(values.rate) } : {}),
  });
}

const commands: Record<string, (args: string[]) => Promise<void>> = {
  worker,
  produce,
  demo,
  'demo-producer': demoProducer,
  usage: usageCommand,
  check: checkCommand,
  status: statusCommand,
  'dead-letter': deadLetterCommand,
};

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const run = command ? commands[command] : undefined;
  if (!run) {
    console.log(USAGE);
    process.exitCode = command && !['-h', '--help', 'help'].includes(command) ? 2 : 0;
    return;
  }
  await run(rest);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err instanceof TallyError ? `tally: ${err.message}` : err);
  process.exit(1);
});
