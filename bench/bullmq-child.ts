/**
 * The alternative a Node team would build first: one BullMQ job per usage event, and a BullMQ Worker
 * (concurrency 100) whose processor checks the event id with `SET dedup:<source>:<id> 1 NX EX <horizon>`
 * (as OpenMeter does) and, for a new event, adds its value with one HINCRBY to a per-window hash.
 * Reports when `expected` jobs have been processed.
 *
 * argv: redisUrl queueName expected concurrency horizonSeconds windowMs
 */
import { Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { UsageEvent } from '../src/index.js';
import { modelUpdate } from './events.js';
import { childSide } from './procs.js';

const { send } = childSide();
const [
  url = '',
  queue = '',
  expectedArg = '0',
  concurrencyArg = '100',
  horizonArg = '2764800',
  windowArg = '3600000',
] = process.argv.slice(2);
const expected = Number(expectedArg);
const windowMs = Number(windowArg);
const commands = new Redis(url, { maxRetriesPerRequest: null });
const connection = new Redis(url, { maxRetriesPerRequest: null });
let processed = 0;
let duplicates = 0;
let firstMs = 0;
let cpuAtStart = process.cpuUsage();

async function processor(job: Job<UsageEvent>): Promise<void> {
  if (firstMs === 0) {
    firstMs = Date.now();
    cpuAtStart = process.cpuUsage();
  }
  const event = job.data;
  const fresh = await commands.set(`dedup:${event.source}:${event.id}`, '1', 'EX', Number(horizonArg), 'NX');
  if (fresh === null) {
    duplicates++;
  } else {
    const u = modelUpdate(event, windowMs);
    if (u) await commands.hincrby(`agg:${u.meter.slug}:${u.windowStart}`, u.group, u.micro.toString());
  }
}

const worker = new Worker<UsageEvent>(queue, processor, {
  connection,
  concurrency: Number(concurrencyArg),
  autorun: false,
});
worker.on('completed', () => {
  processed++;
  if (processed === expected) {
    const cpu = process.cpuUsage(cpuAtStart);
    send({
      type: 'done',
      firstMs,
      lastMs: Date.now(),
      processed,
      duplicates,
      cpuMs: (cpu.user + cpu.system) / 1000,
    });
  }
});
worker.on('failed', (job, err) => send({ type: 'failed', id: job?.id, error: err.message }));
await worker.waitUntilReady();
send({ type: 'loaded', pid: process.pid });
process.on('message', (m: { type: string }) => {
  if (m.type === 'go') void worker.run();
  if (m.type === 'stop') {
    void worker.close().then(() => {
      commands.disconnect();
      connection.disconnect();
      process.exit(0);
    });
  }
});
