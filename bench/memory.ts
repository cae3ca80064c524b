/**
 * Scenario 5, memory and producer send rate, each measured as Redis INFO `used_memory` after minus
 * before on an otherwise empty Redis (keys not being measured are deleted before the "after" reading).
 *
 *  dedup: N distinct events (UUID ids) applied by a Tally worker at the default horizon (32 d), then
 *    everything but the dedup buckets deleted. Bytes per event depend on how full the buckets are
 *    (`events per bucket` = remembered events per epoch ÷ 2^bucketBits), so they are measured at
 *    several fills; the bucket count is chosen per fill to keep N near `--memory-events` (buckets are
 *    independent, so 2^11 buckets × 100 events cost per event what 2^16 buckets × 100 events do).
 *    Baseline in the same run: a plain `SET dedup:<source>:<id> 1 NX EX <horizon>` per event.
 *  windows: K open windows with one group each (per window key: hash + window-index member), and one
 *    window with K groups (per group inside a window).
 *  producer: send rate and stream bytes per event for `send()` per event, `sendBatch` with single-event
 *    entries, and `sendBatch` with batch entries (100 events per entry).
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { UsageEvent } from '../src/index.js';
import { writeBenchConfig } from './config.js';
import { drainGenerator, drainTimeoutMs, fmt, HOUR_MS, type BenchContext } from './drain.js';
import { SOURCE } from './events.js';
import { preload, type SendMode } from './preload.js';
import { scanKeys, memoryUsageOf, usedMemory } from './redis-stats.js';
import { runTallyDrain } from './runners.js';

const HORIZON_SECONDS = 32 * 86_400;

export interface DedupFill {
  readonly eventsPerBucket: number;
  readonly bucketBits: number;
  readonly events: number;
  /** INFO used_memory delta per remembered event. */
  readonly bytesPerEvent: number;
  /** Sum of MEMORY USAGE of the bucket keys per event (cross-check). */
  readonly memoryUsagePerEvent: number;
  /** Share of bucket keys in the compact listpack encoding. */
  readonly listpackShare: number;
}

export interface MemoryScenario {
  readonly dedup: DedupFill[];
  /** The design point: the fill closest to 100 events per bucket (buckets sized per docs, listpack). */
  readonly dedupBytesPerEvent: number;
  readonly setNxBytesPerEvent: number;
  readonly setNxKeyLength: number;
  readonly bytesPerOpenWindow: number;
  readonly bytesPerGroupInWindow: number;
  readonly producer: {
    mode: SendMode;
    eventsPerSecond: number;
    streamBytesPerEvent: number;
    entries: number;
  }[];
}

/** Deterministic UUID-shaped ids (what producers typically send). */
function uuid(i: number): string {
  const h = createHash('md5').update(`bench-${i}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

async function deleteAllBut(redis: Redis, keep: (key: string) => boolean): Promise<void> {
  const keys = (await scanKeys(redis, '*')).filter((k) => !keep(k));
  // DEL, not UNLINK: the memory must be freed before the next INFO reading.
  for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
}

/** Runs a Tally worker over a preloaded single-partition backlog until it is applied. */
async function applyWithTally(
  ctx: BenchContext,
  prefix: string,
  events: number,
  o: { bucketBits?: number; windowSize: string },
): Promise<void> {
  const config = writeBenchConfig(ctx.dir, {
    url: ctx.url,
    prefix,
    partitions: 1,
    batchSize: ctx.params.batchSize,
    windowSize: o.windowSize,
    grace: '30d', // nothing closes: windows stay open
    ...(o.bucketBits === undefined ? {} : { bucketBits: o.bucketBits }),
  });
  await runTallyDrain(ctx.redis, {
    configPath: config,
    streams: [`${prefix}:{p0}:events`],
    group: 'tally',
    replicas: ['-'],
    timeoutMs: drainTimeoutMs(events),
  });
}

function event(
  id: string,
  type: string,
  subject: string,
  time: number,
  data: Record<string, unknown>,
): UsageEvent {
  return { specversion: '1.0', id, source: SOURCE, type, subject, time: new Date(time).toISOString(), data };
}

export async function runMemoryScenario(ctx: BenchContext): Promise<MemoryScenario> {
  const { redis, url, params, log } = ctx;
  const t0 = Math.floor((Date.now() - 2 * HOUR_MS) / HOUR_MS) * HOUR_MS;

  // --- dedup, at several bucket fills ---
  const dedup: DedupFill[] = [];
  let nextId = 0;
  for (const fill of params.dedupFills) {
    const bucketBits = Math.min(24, Math.max(4, Math.round(Math.log2(params.memoryEvents / fill))));
    const n = fill * 2 ** bucketBits;
    await redis.flushall();
    const before = await usedMemory(redis);
    const prefix = `dedup${fill}`;
    const first = nextId;
    // One meter, window and group for every event: the window costs nothing per event.
    await preload({
      url,
      prefix,
      partitions: 1,
      mode: 'batch',
      events: n,
      generator: () =>
        event(uuid(nextId++), 'api.request', 'customer-0', t0, { route: '/v1/chat', region: 'us' }),
      keepCells: false,
    });
    await applyWithTally(ctx, prefix, n, { bucketBits, windowSize: 'HOUR' });
    const isDedup = (k: string) => k.startsWith(`${prefix}:{p0}:d:`) || k === `${prefix}:{p0}:dedup-epochs`;
    await deleteAllBut(redis, isDedup);
    const after = await usedMemory(redis);
    const buckets = (await scanKeys(redis, `${prefix}:{p0}:d:*`)).filter((k) => !k.endsWith('dedup-epochs'));
    const sample = buckets.slice(0, 500);
    const pipeline = redis.pipeline();
    for (const k of sample) pipeline.object('ENCODING', k);
    const encodings = ((await pipeline.exec()) ?? []).map(([, e]) => String(e));
    const row: DedupFill = {
      eventsPerBucket: fill,
      bucketBits,
      events: n,
      bytesPerEvent: (after - before) / n,
      memoryUsagePerEvent: (await memoryUsageOf(redis, buckets)) / n,
      listpackShare:
        encodings.filter((e) => e === 'listpack' || e === 'ziplist').length / Math.max(1, encodings.length),
    };
    dedup.push(row);
    log(
      `memory: dedup at ${fill} events/bucket (2^${bucketBits} buckets, ${n} events): ${row.bytesPerEvent.toFixed(1)} B/event, ${(row.listpackShare * 100).toFixed(0)}% of buckets listpack`,
    );
    nextId = first + n;
  }

  // --- baseline: SET NX EX per event, same ids ---
  await redis.flushall();
  const n0 = params.memoryEvents;
  const beforeSet = await usedMemory(redis);
  let keyLength = 0;
  for (let i = 0; i < n0; i += 10_000) {
    const pipeline = redis.pipeline();
    for (let j = i; j < Math.min(n0, i + 10_000); j++) {
      const key = `dedup:${SOURCE}:${uuid(j)}`;
      keyLength = key.length;
      pipeline.set(key, '1', 'EX', HORIZON_SECONDS, 'NX');
    }
    await pipeline.exec();
  }
  const setNxBytesPerEvent = ((await usedMemory(redis)) - beforeSet) / n0;
  log(`memory: baseline SET key NX EX: ${setNxBytesPerEvent.toFixed(1)} B/event (key length ${keyLength})`);

  // --- open windows: K windows × 1 group, then 1 window × K groups ---
  const k = params.windowKeys;
  await redis.flushall();
  const beforeWindows = await usedMemory(redis);
  await preload({
    url,
    prefix: 'win',
    partitions: 1,
    mode: 'batch',
    events: k,
    // Minute windows, one event each, oldest first, all within the last ~2 weeks (retention 35 d).
    generator: (() => {
      let i = 0;
      return () => {
        const e = event(`w${i}`, 'llm.completion', 'customer-0', t0 - (k - i) * 60_000, {
          tokens: 100,
          model: 'gpt-5',
          region: 'us',
        });
        i++;
        return e;
      };
    })(),
    keepCells: false,
  });
  await applyWithTally(ctx, 'win', k, { windowSize: '1m' });
  const windowKeys = (await scanKeys(redis, 'win:{p0}:w:*')).length;
  if (windowKeys !== k) throw new Error(`memory: expected ${k} open window keys, found ${windowKeys}`);
  await deleteAllBut(
    redis,
    (key) => key.startsWith('win:{p0}:w:') || key === 'win:{p0}:windows' || key === 'win:{p0}:state',
  );
  const bytesPerOpenWindow = ((await usedMemory(redis)) - beforeWindows) / k;

  await redis.flushall();
  const beforeGroups = await usedMemory(redis);
  await preload({
    url,
    prefix: 'grp',
    partitions: 1,
    mode: 'batch',
    events: k,
    generator: (() => {
      let i = 0;
      return () =>
        event(`g${i}`, 'llm.completion', `customer-${i++}`, t0, {
          tokens: 100,
          model: 'gpt-5',
          region: 'us',
        });
    })(),
    keepCells: false,
  });
  await applyWithTally(ctx, 'grp', k, { windowSize: 'HOUR' });
  await deleteAllBut(
    redis,
    (key) => key.startsWith('grp:{p0}:w:') || key === 'grp:{p0}:windows' || key === 'grp:{p0}:state',
  );
  const bytesPerGroupInWindow = ((await usedMemory(redis)) - beforeGroups) / k;
  log(
    `memory: ${bytesPerOpenWindow.toFixed(0)} B per open window key (1 group), ${bytesPerGroupInWindow.toFixed(0)} B per group inside a window`,
  );

  // --- producer send rate: per event, single-event entries, batch entries ---
  const producer: MemoryScenario['producer'] = [];
  for (const mode of ['send', 'single', 'batch'] as const) {
    await redis.flushall();
    const before = await usedMemory(redis);
    const r = await preload({
      url,
      prefix: `send-${mode}`,
      partitions: 1,
      mode,
      events: params.sendEvents,
      generator: drainGenerator(params, params.sendEvents),
      keepCells: false,
    });
    const streamBytesPerEvent = ((await usedMemory(redis)) - before) / params.sendEvents;
    producer.push({ mode, eventsPerSecond: r.eventsPerSecond, streamBytesPerEvent, entries: r.entries });
    log(
      `memory: producer ${mode}: ${fmt(r.eventsPerSecond)} events/s, ${streamBytesPerEvent.toFixed(0)} stream bytes/event`,
    );
  }
  await redis.flushall();

  const design = [...dedup].sort(
    (a, b) => Math.abs(a.eventsPerBucket - 100) - Math.abs(b.eventsPerBucket - 100),
  )[0];
  return {
    dedup,
    dedupBytesPerEvent: design?.bytesPerEvent ?? NaN,
    setNxBytesPerEvent,
    setNxKeyLength: keyLength,
    bytesPerOpenWindow,
    bytesPerGroupInWindow,
    producer,
  };
}
