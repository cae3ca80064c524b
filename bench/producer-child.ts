/**
 * A live producer process: sends bench events timed "now" at a target rate with `sendBatch` (batch
 * entries of up to 100 events), every `tickMs` catching up with the schedule. Keeps its own model
 * (per-meter count and micro-unit sum of distinct events) and reports it at the end.
 *
 * argv: JSON { url, prefix, partitions, rate, durationMs, subjects, duplicateRate, seed, tickMs }
 */
import { UsageProducer } from '../src/index.js';
import { EventGenerator, Model } from './events.js';
import { childSide } from './procs.js';

interface ProducerArgs {
  url: string;
  prefix: string;
  partitions: number;
  rate: number;
  durationMs: number;
  subjects: number;
  duplicateRate: number;
  seed: number;
  tickMs: number;
}

const { send } = childSide();
const args = JSON.parse(process.argv[2] ?? '{}') as ProducerArgs;
const producer = new UsageProducer({ redis: args.url, prefix: args.prefix, partitions: args.partitions });
const generator = new EventGenerator({
  subjects: args.subjects,
  duplicateRate: args.duplicateRate,
  seed: args.seed,
  timeOf: () => Date.now(),
  idPrefix: 'live',
});
const model = new Model(1000, false);
send({ type: 'loaded', pid: process.pid });
await new Promise<void>((resolve) =>
  process.on('message', (m: { type: string }) => m.type === 'go' && resolve()),
);

const startMs = Date.now();
let sent = 0;
let behindTicks = 0;
let maxSendMs = 0;
while (Date.now() - startMs < args.durationMs) {
  const tickStart = Date.now();
  const due = Math.floor(((tickStart - startMs) / 1000) * args.rate) - sent;
  if (due > 0) {
    const { events } = generator.take(Math.min(due, 20_000));
    for (const e of events) model.add(e);
    const t = performance.now();
    await producer.sendBatch(events);
    maxSendMs = Math.max(maxSendMs, performance.now() - t);
    sent += events.length;
  }
  const spent = Date.now() - tickStart;
  if (spent > args.tickMs) behindTicks++;
  await new Promise((r) => setTimeout(r, Math.max(1, args.tickMs - spent)));
}
const endMs = Date.now();
await producer.close();
send({
  type: 'done',
  startMs,
  endMs,
  sent,
  unique: model.unique,
  duplicates: model.duplicates,
  totals: model.meterTotals(),
  behindTicks,
  maxSendMs,
});
process.exit(0);
