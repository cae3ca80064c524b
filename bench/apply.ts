/**
 * Scenario "apply": the Redis cost of the apply step alone (applyBatch.lua), without the relay, the
 * close step or a worker process on the same cores. The drain's Redis CPU per event also carries the
 * BullMQ jobs of every window it closes (one rollup per ~8 events at 500 subjects); this scenario
 * isolates what issue 10's "Redis CPU per applied event" means.
 *
 * The drain's events (same generator, 5% duplicates) are preloaded as single-event entries and as
 * batch entries, read through the consumer group and prepared by Tally's own prepareBatch in this
 * process; then, with Redis's counters reset, every call is sent as the worker sends it. Redis's own
 * CPU time (INFO cpu) and command statistics split the cost into the commands the script runs
 * (dedup, cell writes, XPENDING, XACK) and the Lua around them. The window totals are then checked
 * against the model.
 */
import { resolveConfig, type TallyConfig } from '../src/config/index.js';
import { MeterRegistry, type PartitionView } from '../src/registry/index.js';
import { MeteringScripts, TallyKeys } from '../src/redis/index.js';
import { prepareBatch, type PreparedBatch, type StreamEntry } from '../src/worker/batch.js';
import { packRecords } from '../src/worker/records.js';
import { readCall } from '../test/support/apply-call.js';
import { drainGenerator, type BenchContext } from './drain.js';
import { meterConfig } from './events.js';
import { preload, type SendMode } from './preload.js';
import { checkWindowTotals, commandStats, redisCpuSeconds } from './redis-stats.js';

/** Per event, in µs of Redis time. */
export interface ApplyCost {
  readonly events: number;
  readonly calls: number;
  /** Distinct (window, group) cells per event: 1 means no two events of a call share a cell. */
  readonly cellsPerEvent: number;
  /** Redis CPU (INFO cpu, user + sys) over the calls, per event. */
  readonly redisCpuUsPerEvent: number;
  /** EVALSHA time per event, of which `commandsUsPerEvent` in the commands the script ran. */
  readonly scriptUsPerEvent: number;
  readonly commandsUsPerEvent: number;
  readonly luaUsPerEvent: number;
  /** Commands the script ran, µs per event each. */
  readonly byCommand: Record<string, number>;
  /** The longest call (ms, SLOWLOG). */
  readonly maxCallMs: number;
}

export interface ApplyScenario {
  readonly single: ApplyCost;
  readonly batch: ApplyCost;
  /** Single-event entries again with 10 subjects: events of a call share cells (fewer cell writes). */
  readonly fewSubjects: ApplyCost & { readonly subjects: number };
}

/** Subjects of the low-cardinality pass. */
const FEW_SUBJECTS = 10;

const GROUP = 'tally';
const CONSUMER = 'bench';

async function measure(
  ctx: BenchContext,
  mode: SendMode,
  events: number,
  subjects = ctx.params.subjects,
): Promise<ApplyCost> {
  const { redis, url, params } = ctx;
  const prefix = `apply-${mode}-${subjects}`;
  const { model } = await preload({
    url,
    prefix,
    partitions: 1,
    mode,
    events,
    generator: { ...drainGenerator(params, events), subjects },
  });
  const config: TallyConfig = resolveConfig(
    { streams: { prefix, partitions: 1 }, meters: meterConfig('HOUR') },
    {},
  );
  const keys = new TallyKeys(prefix);
  const registry = new MeterRegistry(redis, keys);
  await registry.declare(config);
  const view = (await registry.syncPartition(0, await registry.read())) as PartitionView;
  const stream = keys.events(0);
  await redis.xgroup('CREATE', stream, GROUP, '0');

  // Read and prepare everything first: only the calls are measured.
  const batches: PreparedBatch[] = [];
  const count = mode === 'batch' ? Math.max(1, Math.round(params.batchSize / 100)) : params.batchSize;
  for (;;) {
    const reply = (await redis.xreadgroup(
      'GROUP',
      GROUP,
      CONSUMER,
      'COUNT',
      count,
      'STREAMS',
      stream,
      '>',
    )) as [string, StreamEntry[]][] | null;
    const entries = reply?.[0]?.[1] ?? [];
    if (entries.length === 0) break;
    batches.push(prepareBatch(entries, { config, view, partition: 0 }));
  }
  const calls = batches.flatMap((b) => b.calls);
  const cells = calls.reduce((n, c) => n + readCall(c.records).cells.length, 0);
  const packed = calls.map((c) => ({ records: packRecords(c.records), fingerprints: c.fingerprints }));

  const scripts = new MeteringScripts(redis, keys);
  const p = {
    group: GROUP,
    consumer: CONSUMER,
    windows: config.windows,
    generations: config.dedup.generations,
    bucketBits: config.dedup.bucketBits,
    registryVersion: view.version,
  };
  await scripts.applyBatch(0, p, packRecords([0, 0, '', '', 0]), Buffer.alloc(0)); // loads the script
  await redis.config('SET', 'slowlog-log-slower-than', '5000');
  await redis.config('RESETSTAT');
  await redis.slowlog('RESET');
  const cpu0 = await redisCpuSeconds(redis);
  for (const c of packed) await scripts.applyBatch(0, p, c.records, c.fingerprints);
  const cpu = (await redisCpuSeconds(redis)) - cpu0;
  const stats = await commandStats(redis);
  const slow = (await redis.slowlog('GET', 128)) as [number, number, number, string[]][];

  const check = await checkWindowTotals(redis, prefix, model);
  if (check.mismatches.length > 0)
    throw new Error(`apply (${mode}): totals differ from the model:\n  ${check.mismatches.join('\n  ')}`);
  await redis.flushall();

  const per = (usec: number) => usec / events;
  const script = stats.evalsha?.usec ?? 0;
  const byCommand: Record<string, number> = {};
  let commands = 0;
  for (const [name, stat] of Object.entries(stats)) {
    if (['evalsha', 'config|resetstat', 'config|set', 'slowlog|reset', 'info'].includes(name)) continue;
    byCommand[name] = per(stat.usec);
    commands += stat.usec;
  }
  return {
    events,
    calls: calls.length,
    cellsPerEvent: cells / events,
    redisCpuUsPerEvent: per(cpu * 1e6),
    scriptUsPerEvent: per(script),
    commandsUsPerEvent: per(commands),
    luaUsPerEvent: per(script - commands),
    byCommand,
    maxCallMs:
      Math.max(0, ...slow.filter(([, , , a]) => /^evalsha$/i.test(a[0] ?? '')).map(([, , us]) => us)) / 1000,
  };
}

export async function runApplyScenario(ctx: BenchContext): Promise<ApplyScenario> {
  const events = Math.min(ctx.params.events, 100_000);
  ctx.log(`apply: ${events} events as single-event entries, applyBatch calls alone`);
  const single = await measure(ctx, 'single', events);
  ctx.log(
    `apply:   Redis CPU ${single.redisCpuUsPerEvent.toFixed(1)} us/ev (commands ${single.commandsUsPerEvent.toFixed(1)}, Lua ${single.luaUsPerEvent.toFixed(1)}), ${single.cellsPerEvent.toFixed(2)} cells/ev`,
  );
  ctx.log(`apply: the same events as batch entries (100 events per entry)`);
  const batch = await measure(ctx, 'batch', events);
  ctx.log(
    `apply:   Redis CPU ${batch.redisCpuUsPerEvent.toFixed(1)} us/ev (commands ${batch.commandsUsPerEvent.toFixed(1)}, Lua ${batch.luaUsPerEvent.toFixed(1)})`,
  );
  ctx.log(`apply: single-event entries again, ${FEW_SUBJECTS} subjects (events of a call share cells)`);
  const few = await measure(ctx, 'single', events, FEW_SUBJECTS);
  ctx.log(
    `apply:   Redis CPU ${few.redisCpuUsPerEvent.toFixed(1)} us/ev (commands ${few.commandsUsPerEvent.toFixed(1)}, Lua ${few.luaUsPerEvent.toFixed(1)}), ${few.cellsPerEvent.toFixed(2)} cells/ev`,
  );
  return { single, batch, fewSubjects: { ...few, subjects: FEW_SUBJECTS } };
}
