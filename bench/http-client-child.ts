/**
 * A client process of the HTTP ingest scenario. `direct`: `UsageProducer.sendBatch` of `batch` events
 * per call; `http`: POST /api/v1/events of `batch` events per request (application/cloudevents-batch+json,
 * keep-alive). Closed loop: `inFlight` calls at a time over `events` events, reporting events/s. Open
 * loop (`rate` > 0): one call every batch/rate seconds for `durationMs`, reporting each call's latency.
 *
 * argv: JSON { mode, url, baseUrl, prefix, partitions, events, batch, inFlight, rate, durationMs, seed, idPrefix }
 */
import { Agent, request } from 'node:http';
import { UsageProducer, type UsageEvent } from '../src/index.js';
import { EventGenerator } from './events.js';
import { childSide } from './procs.js';

interface ClientArgs {
  mode: 'direct' | 'http';
  url: string;
  baseUrl: string;
  prefix: string;
  partitions: number;
  events: number;
  batch: number;
  inFlight: number;
  rate: number;
  durationMs: number;
  seed: number;
  idPrefix: string;
}

const { send } = childSide();
const args = JSON.parse(process.argv[2] ?? '{}') as ClientArgs;
const generator = new EventGenerator({
  subjects: 500,
  duplicateRate: 0,
  seed: args.seed,
  timeOf: () => Date.now(),
  idPrefix: args.idPrefix,
});
const take = (n: number): UsageEvent[] => Array.from({ length: n }, () => generator.next().event);

const producer =
  args.mode === 'direct'
    ? new UsageProducer({ redis: args.url, prefix: args.prefix, partitions: args.partitions })
    : undefined;
const agent = new Agent({ keepAlive: true, maxSockets: Math.max(args.inFlight, 64) });
const target = new URL('/api/v1/events', args.baseUrl);

function post(body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      target,
      {
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/cloudevents-batch+json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          res.statusCode === 204 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** One call: the events serialized as the client of each mode must (JSON body, or the producer's own JSON). */
const call = (events: UsageEvent[]): Promise<unknown> =>
  producer ? producer.sendBatch(events) : post(JSON.stringify(events));

send({ type: 'loaded', pid: process.pid });
await new Promise<void>((resolve) =>
  process.on('message', (m: { type: string }) => m.type === 'go' && resolve()),
);

if (args.rate > 0) {
  // Open loop: calls start on schedule whether or not earlier ones finished (no coordinated omission).
  const everyMs = (args.batch / args.rate) * 1000;
  const latencies: number[] = [];
  const inflight = new Set<Promise<void>>();
  const started = performance.now();
  let n = 0;
  let failed = 0;
  while (performance.now() - started < args.durationMs) {
    const due = started + n * everyMs;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const events = take(args.batch);
    const t0 = started + n * everyMs;
    n++;
    const p: Promise<void> = call(events).then(
      () => void latencies.push(performance.now() - t0),
      () => void failed++,
    );
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - started) / 1000;
  send({ type: 'done', latencies, calls: n, failed, events: n * args.batch, seconds: elapsed });
} else {
  const batches: UsageEvent[][] = [];
  for (let i = 0; i < args.events; i += args.batch) batches.push(take(Math.min(args.batch, args.events - i)));
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: args.inFlight }, async () => {
      while (next < batches.length) await call(batches[next++] as UsageEvent[]);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  send({ type: 'done', events: args.events, seconds, rate: args.events / seconds });
}
await producer?.close();
agent.destroy();
process.exit(0);
