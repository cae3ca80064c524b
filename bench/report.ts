/**
 * The results table and the summary figures of latest.json. Every Tally figure is printed beside the
 * baseline it is compared with (measured in the same run), or is itself a ratio.
 */
import type { BullmqScenario } from './bullmq.js';
import type { CheckLatencyResult } from './check-latency.js';
import type { ApplyCost, ApplyScenario } from './apply.js';
import type { DrainScenario } from './drain.js';
import type { HttpScenario } from './http.js';
import type { LiveScenario } from './live.js';
import type { MachineInfo } from './machine.js';
import type { MemoryScenario } from './memory.js';
import type { RelayScenario } from './relay.js';
import type { ScalingScenario } from './scaling.js';

export interface Results {
  generatedAt: string;
  command: string;
  machine: MachineInfo;
  versions: Record<string, string>;
  params: Record<string, unknown>;
  redisConfig?: Record<string, string>;
  scenarios: {
    drain?: DrainScenario;
    apply?: ApplyScenario;
    scaling?: ScalingScenario;
    bullmq?: BullmqScenario;
    live?: LiveScenario;
    relay?: RelayScenario;
    memory?: MemoryScenario;
    http?: HttpScenario;
    checks?: CheckLatencyResult | { error: string };
  };
  summary: Record<string, unknown>;
  /** 1-minute load average before and after each scenario. */
  loadAverage?: Record<string, number[]>;
  durationSeconds?: number;
}

export interface Target {
  readonly name: string;
  readonly target: string;
  readonly measured: string;
  readonly met: boolean;
  /** How far off, when missed (e.g. "needs 1.96x more"). */
  readonly missedBy?: string;
}

const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const x = (n: number, digits = 2) => (Number.isFinite(n) ? `${n.toFixed(digits)}x` : 'n/a');
const pct = (n: number) => `${Math.round(n * 100)}%`;
const runs = (xs: readonly number[]) => xs.map((v) => `${Math.round(v / 1000)}k`).join(', ');

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  const line = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join(' | ')} |`;
  const sep = `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`;
  return [line(rows[0] ?? []), sep, ...rows.slice(1).map(line)].join('\n');
}

export function renderReport(results: Results): { table: string; summary: Record<string, unknown> } {
  const { drain, scaling, bullmq, live, memory } = results.scenarios;
  const rows: string[][] = [['Scenario', 'Tally', 'Baseline (same run)', 'Ratio', 'Target']];
  const summary: Record<string, unknown> = {};
  const targets: Target[] = [];
  /** A target of at most `limit` (a cost), with how far over it the measurement is. */
  const atMost = (name: string, measured: number, limit: number) =>
    targets.push({
      name,
      target: `<= ${limit}`,
      measured: measured.toFixed(1),
      met: measured <= limit,
      ...(measured > limit ? { missedBy: `${x(measured / limit)} over` } : {}),
    });

  const apply = results.scenarios.apply;
  if (apply) {
    // The apply step alone (bench/apply.ts): what one Redis core spends per applied event.
    const { single, batch } = apply;
    const split = (c: ApplyCost) =>
      `Redis CPU ${c.redisCpuUsPerEvent.toFixed(1)} us/ev: commands ${c.commandsUsPerEvent.toFixed(1)} (${Object.entries(
        c.byCommand,
      )
        .filter(([, us]) => us >= 0.05)
        .sort((a, b) => b[1] - a[1])
        .map(([name, us]) => `${name} ${us.toFixed(1)}`)
        .join(', ')}), Lua ${c.luaUsPerEvent.toFixed(1)}`;
    const few = apply.fewSubjects;
    for (const [label, c] of [
      [`1b apply only, ${int(single.events)} ev, single-event entries`, single],
      ['1b apply only, batch entries (100 ev/entry)', batch],
      [`1b apply only, single-event entries, ${few.subjects} subjects`, few],
    ] as [string, ApplyCost][]) {
      rows.push([
        label,
        split(c),
        `${c.cellsPerEvent.toFixed(2)} cells/ev, ${int(c.calls)} calls, longest ${c.maxCallMs.toFixed(1)} ms`,
        `${int(1e6 / c.redisCpuUsPerEvent)} ev/s per core`,
        '<= 4 us',
      ]);
    }
    summary.applyRedisUsPerEventFewSubjects = few.redisCpuUsPerEvent;
    summary.applyRedisUsPerEvent = single.redisCpuUsPerEvent;
    summary.applyRedisUsPerEventBatchEntries = batch.redisCpuUsPerEvent;
    summary.applyLuaUsPerEvent = single.luaUsPerEvent;
    summary.applyCommandsUsPerEvent = single.commandsUsPerEvent;
    summary.applyEventsPerRedisCore = 1e6 / single.redisCpuUsPerEvent;
    atMost(
      'Redis CPU per applied event (us, apply step alone, single-event entries)',
      single.redisCpuUsPerEvent,
      4,
    );
  }

  if (drain) {
    const bareBatchEntries = drain.preloadBatch.entries / drain.bareBatch.seconds;
    rows.push([
      `1 drain ${int(drain.events)} ev, single-event entries`,
      `${int(drain.tallyEventsPerSecond)} ev/s (median of ${runs(drain.tallyEventsPerSecondEachRun)})`,
      `bare XREADGROUP+XACK ${int(drain.ceilingEventsPerSecond)} entries/s (median of ${runs(drain.ceilingEntriesPerSecondEachRun)})`,
      x(drain.ratioToCeiling),
      '>= 0.50x',
    ]);
    rows.push([
      '1 drain, batch entries (100 ev/entry)',
      `${int(drain.tallyBatchEventsPerSecond)} ev/s`,
      `bare ${int(bareBatchEntries)} entries/s (${int(bareBatchEntries * 100)} ev/s)`,
      x(drain.tallyBatchEventsPerSecond / drain.ceilingEventsPerSecond),
      'vs single-entry ceiling',
    ]);
    const t = drain.tallySingle;
    rows.push([
      '1 drain: where the time goes',
      `Redis CPU ${pct(t.redisCpuSeconds / t.seconds)}, worker CPU ${pct(t.consumerCpuSeconds / t.seconds)}`,
      `bare: Redis ${pct((drain.bareSingle[0]?.redisCpuSeconds ?? 0) / (drain.bareSingle[0]?.seconds ?? 1))}, consumer ${pct((drain.bareSingle[0]?.consumerCpuSeconds ?? 0) / (drain.bareSingle[0]?.seconds ?? 1))}`,
      `Lua ${drain.luaMicrosPerEvent.toFixed(1)} us/ev`,
      '',
    ]);
    summary.eventsPerSecond = drain.tallyEventsPerSecond;
    summary.ceilingEntriesPerSecond = drain.ceilingEventsPerSecond;
    summary.ratioToCeiling = drain.ratioToCeiling;
    summary.eventsPerSecondBatchEntries = drain.tallyBatchEventsPerSecond;
    summary.luaMicrosPerEvent = drain.luaMicrosPerEvent;
    // Issue 10's per-event costs: Redis CPU fixes what one shard can meter, worker CPU what one core can.
    const redisUs = (t.redisCpuSeconds / drain.events) * 1e6;
    const workerUs = (t.consumerCpuSeconds / drain.events) * 1e6;
    const batchRatio = drain.tallyBatchEventsPerSecond / drain.tallyEventsPerSecond;
    const maxCallMs = Math.max(t.slow.maxMicros, drain.tallyBatch.slow.maxMicros) / 1000;
    summary.redisUsPerEvent = redisUs;
    summary.eventsPerRedisCore = 1e6 / redisUs;
    summary.workerUsPerEvent = workerUs;
    summary.batchEntryRatio = batchRatio;
    summary.maxRedisCallMs = maxCallMs;
    const bj = drain.tallyBatchJobs;
    const bjRate = drain.events / bj.seconds;
    rows.push([
      '1 drain, single-event entries, rollups.batchJobs',
      `${int(bjRate)} ev/s: Redis CPU ${((bj.redisCpuSeconds / drain.events) * 1e6).toFixed(1)} us/ev, worker CPU ${((bj.consumerCpuSeconds / drain.events) * 1e6).toFixed(1)} us/ev`,
      `a job per rollup ${int(drain.tallyEventsPerSecond)} ev/s`,
      x(bjRate / drain.ceilingEventsPerSecond),
      '>= 0.50x',
    ]);
    summary.eventsPerSecondBatchJobs = bjRate;
    summary.ratioToCeilingBatchJobs = bjRate / drain.ceilingEventsPerSecond;
    summary.redisUsPerEventBatchJobs = (bj.redisCpuSeconds / drain.events) * 1e6;
    summary.workerUsPerEventBatchJobs = (bj.consumerCpuSeconds / drain.events) * 1e6;
    rows.push([
      '1 drain: cost per event',
      `Redis CPU ${redisUs.toFixed(1)} us/ev (${int(1e6 / redisUs)} ev/s per Redis core), worker CPU ${workerUs.toFixed(1)} us/ev`,
      `batch entries ${int(drain.tallyBatchEventsPerSecond)} ev/s vs single ${int(drain.tallyEventsPerSecond)}`,
      x(batchRatio),
      '<= 4 / <= 8 us, batch >= 2x',
    ]);
    atMost('Redis CPU per applied event (us, drain)', redisUs, 4);
    atMost('worker CPU per event (us, drain, GC included)', workerUs, 8);
    atMost('longest Redis call during the drains (ms, SLOWLOG)', maxCallMs, 5);
    targets.push({
      name: 'batch-entry drain vs single-entry drain',
      target: '>= 2.00x',
      measured: x(batchRatio),
      met: batchRatio >= 2,
      ...(batchRatio < 2 ? { missedBy: `${x(2 / batchRatio)} short` } : {}),
    });
    targets.push({
      name: 'backlog drain vs bare-consumer ceiling (single-event entries)',
      target: '>= 0.50x',
      measured: x(drain.ratioToCeiling),
      met: drain.ratioToCeiling >= 0.5,
      ...(drain.ratioToCeiling < 0.5
        ? {
            missedBy: `${int(drain.tallyEventsPerSecond)} of the ${int(drain.ceilingEventsPerSecond * 0.5)} ev/s needed (${x(0.5 / drain.ratioToCeiling)} short)`,
          }
        : {}),
    });
  }
  if (scaling) {
    for (const r of scaling.runs) {
      rows.push([
        `3 scaling ${int(scaling.events)} ev, ${r.replicas} replica(s), ${scaling.partitions} partitions`,
        `${int(r.eventsPerSecond)} ev/s (mean of ${runs(r.eventsPerSecondEachRun)}), exact; ${int(r.eventsPerSecond / r.replicas)} per replica, ${int(r.eventsPerSecond / r.redisCpuShare)} per Redis core`,
        `1 replica ${int(scaling.runs[0]?.eventsPerSecond ?? NaN)} ev/s`,
        x(r.speedup),
        'never slower, exact',
      ]);
    }
    summary.scalingEventsPerSecond = Object.fromEntries(
      scaling.runs.map((r) => [r.replicas, r.eventsPerSecond]),
    );
    // What one shard (one Redis core) meters, whatever the number of replicas feeding it.
    summary.scalingEventsPerRedisCore = Object.fromEntries(
      scaling.runs.map((r) => [r.replicas, r.eventsPerSecond / r.redisCpuShare]),
    );
    const slowest = Math.min(...scaling.runs.map((r) => r.speedup));
    targets.push({
      name: 'scaling never slower, totals exact',
      target: '>= 0.95x of 1 replica, exact',
      measured: scaling.runs.map((r) => `${r.replicas}: ${x(r.speedup)}`).join(', '),
      met: slowest >= 0.95 && scaling.runs.every((r) => r.totalsExact),
    });
  }
  if (bullmq) {
    rows.push([
      `4 BullMQ job per event, ${int(bullmq.events)} ev`,
      `${int(bullmq.tallyEventsPerSecond)} ev/s (same events)`,
      `BullMQ c=${bullmq.concurrency}: ${int(bullmq.eventsPerSecond)} ev/s`,
      x(bullmq.ratioToBullmq, 1),
      '>= 10x',
    ]);
    if (drain) {
      rows.push([
        '4 vs Tally drain (scenario 1)',
        `${int(drain.tallyEventsPerSecond)} / ${int(drain.tallyBatchEventsPerSecond)} ev/s`,
        `BullMQ ${int(bullmq.eventsPerSecond)} ev/s`,
        `${x(drain.tallyEventsPerSecond / bullmq.eventsPerSecond, 1)} / ${x(drain.tallyBatchEventsPerSecond / bullmq.eventsPerSecond, 1)}`,
        'single / batch entries',
      ]);
    }
    rows.push([
      '4 enqueue rate',
      '(see producer rows)',
      `BullMQ addBulk ${int(bullmq.enqueueEventsPerSecond)} ev/s`,
      '',
      '',
    ]);
    summary.ratioToBullmq = bullmq.ratioToBullmq;
    summary.bullmqEventsPerSecond = bullmq.eventsPerSecond;
    targets.push({
      name: 'drain vs one BullMQ job per event',
      target: '>= 10x',
      measured: x(bullmq.ratioToBullmq, 1),
      met: bullmq.ratioToBullmq >= 10,
      ...(bullmq.ratioToBullmq < 10
        ? {
            missedBy: `Tally would need ${int(bullmq.eventsPerSecond * 10)} ev/s (${x(10 / bullmq.ratioToBullmq, 1)} faster)`,
          }
        : {}),
    });
  }
  if (live) {
    for (const r of live.runs) {
      rows.push([
        `2 live ${int(r.targetRate)} ev/s, ${r.subjects} subjects, 1 s windows${r.batchJobs ? ', batchJobs' : ''}`,
        `sustained ${int(r.sustainedEventsPerSecond)} ev/s, ${int(r.rollupsPerSecond)} rollups/s`,
        `offered ${int(r.offeredEventsPerSecond)} ev/s`,
        x(r.keptUp),
        'keeps up',
      ]);
      rows.push([
        `2 rollup latency, ${r.subjects} subjects${r.batchJobs ? ', batchJobs' : ''}`,
        `p50 ${int(r.latencyMs.p50)} ms, p99 ${int(r.latencyMs.p99)} ms`,
        'from window end + grace (200 ms)',
        '',
        'p99 <= 1000 ms',
      ]);
    }
    const head = live.runs[0];
    if (head) {
      summary.rollupLatencyP99Ms = head.latencyMs.p99;
      summary.rollupLatencyP50Ms = head.latencyMs.p50;
      summary.liveSustainedEventsPerSecond = head.sustainedEventsPerSecond;
      summary.liveSubjects = head.subjects;
      summary.rollupLatencyP99MsBySubjects = Object.fromEntries(
        live.runs.filter((r) => !r.batchJobs).map((r) => [r.subjects, r.latencyMs.p99]),
      );
      const batched = live.runs.find((r) => r.batchJobs);
      if (batched) {
        summary.rollupLatencyP99MsBatchJobs = batched.latencyMs.p99;
        summary.liveSustainedEventsPerSecondBatchJobs = batched.sustainedEventsPerSecond;
      }
      for (const r of live.runs) {
        const met = r.latencyMs.p99 <= 1000 && r.keptUp >= 0.95;
        targets.push({
          name: `rollup latency p99 at ${int(r.targetRate)} ev/s, ${r.subjects} subjects${r.batchJobs ? ', batchJobs' : ''} (${int(r.rollupsPerSecond)} rollups/s)`,
          target: '<= 1000 ms, keeping up',
          measured: `${int(r.latencyMs.p99)} ms, sustained ${x(r.keptUp)} of offered`,
          met,
          ...(met ? {} : { missedBy: `${x(r.latencyMs.p99 / 1000, 1)} the target` }),
        });
      }
    }
  }
  const { relay } = results.scenarios;
  if (relay) {
    const { batch } = relay;
    rows.push([
      `7 relay ${int(relay.rollups)} rollups, ${relay.partitions} outboxes -> ${relay.queues} queues`,
      `${int(relay.rollupsPerSecond)} rollups/s, a job per rollup (Redis ${relay.redisUsPerRollup.toFixed(1)} us, worker ${relay.workerUsPerRollup.toFixed(1)} us per rollup)`,
      `addBulk alone ${int(relay.addBulkRollupsPerSecond)} rollups/s`,
      x(relay.ratioToAddBulk),
      '>= 30,000 rollups/s',
    ]);
    rows.push([
      '7 relay, rollups.batchJobs (a job per outbox page)',
      `${int(batch.rollupsPerSecond)} rollups/s in ${int(batch.jobsPerQueue)} jobs per queue (Redis ${batch.redisUsPerRollup.toFixed(1)} us, worker ${batch.workerUsPerRollup.toFixed(1)} us per rollup)`,
      `a job per rollup ${int(relay.rollupsPerSecond)} rollups/s`,
      x(batch.rollupsPerSecond / relay.rollupsPerSecond),
      '>= 30,000 rollups/s',
    ]);
    summary.relayRollupsPerSecond = relay.rollupsPerSecond;
    summary.relayRatioToAddBulk = relay.ratioToAddBulk;
    summary.relayBatchJobsRollupsPerSecond = batch.rollupsPerSecond;
    for (const [name, measured] of [
      [`relay: outbox to ${relay.queues} BullMQ queues, a job per rollup (default)`, relay.rollupsPerSecond],
      [`relay: outbox to ${relay.queues} BullMQ queues, rollups.batchJobs`, batch.rollupsPerSecond],
    ] as [string, number][]) {
      targets.push({
        name,
        target: '>= 30,000 rollups/s',
        measured: `${int(measured)} rollups/s`,
        met: measured >= 30_000,
        ...(measured < 30_000 ? { missedBy: `${x(30_000 / measured)} short` } : {}),
      });
    }
  }
  // Issue 10: no single Redis call over 5 ms in any scenario (SLOWLOG of each one that records it).
  const longest: [string, number][] = [
    ...(drain
      ? [
          ['drain', Math.max(drain.tallySingle.slow.maxMicros, drain.tallyBatch.slow.maxMicros) / 1000] as [
            string,
            number,
          ],
        ]
      : []),
    ...(live?.runs.map((r): [string, number] => [
      `live ${r.subjects} subjects${r.batchJobs ? ' batchJobs' : ''}`,
      r.maxRedisCallMs,
    ]) ?? []),
    ...(relay
      ? [
          ['relay', relay.maxRedisCallMs] as [string, number],
          ['relay batchJobs', relay.batch.maxRedisCallMs] as [string, number],
        ]
      : []),
  ];
  if (longest.length > 0) {
    const max = Math.max(...longest.map(([, ms]) => ms));
    summary.maxRedisCallMs = max;
    summary.maxRedisCallMsByScenario = Object.fromEntries(longest);
    targets.push({
      name: 'longest Redis call in any scenario (ms, SLOWLOG)',
      target: '<= 5',
      measured: longest.map(([name, ms]) => `${name}: ${ms.toFixed(1)}`).join(', '),
      met: max <= 5,
      ...(max > 5 ? { missedBy: `${x(max / 5)} over` } : {}),
    });
  }
  if (memory) {
    for (const d of memory.dedup) {
      rows.push([
        `5 dedup memory, ${d.eventsPerBucket} ev/bucket (2^${d.bucketBits})`,
        `${d.bytesPerEvent.toFixed(1)} B/event (${pct(d.listpackShare)} listpack)`,
        `SET NX EX ${memory.setNxBytesPerEvent.toFixed(1)} B/event`,
        x(d.bytesPerEvent / memory.setNxBytesPerEvent),
        '<= 48 B',
      ]);
    }
    rows.push(['5 open window key (1 group)', `${int(memory.bytesPerOpenWindow)} B`, '', '', '']);
    rows.push(['5 group inside a window', `${int(memory.bytesPerGroupInWindow)} B`, '', '', '']);
    const send = memory.producer.find((p) => p.mode === 'send');
    for (const p of memory.producer) {
      const label = {
        send: 'send() per event',
        single: 'sendBatch, single-event entries',
        batch: 'sendBatch, batch entries',
      }[p.mode];
      rows.push([
        `5 producer ${label}`,
        `${int(p.eventsPerSecond)} ev/s, ${int(p.streamBytesPerEvent)} B/ev in stream`,
        `send() ${int(send?.eventsPerSecond ?? NaN)} ev/s`,
        x(p.eventsPerSecond / (send?.eventsPerSecond ?? NaN)),
        '',
      ]);
    }
    summary.dedupBytesPerEvent = memory.dedupBytesPerEvent;
    summary.dedupBytesPerEventByFill = Object.fromEntries(
      memory.dedup.map((d) => [d.eventsPerBucket, d.bytesPerEvent]),
    );
    summary.setNxBytesPerEvent = memory.setNxBytesPerEvent;
    summary.bytesPerOpenWindow = memory.bytesPerOpenWindow;
    summary.producerEventsPerSecond = Object.fromEntries(
      memory.producer.map((p) => [p.mode, p.eventsPerSecond]),
    );
    for (const d of memory.dedup) {
      targets.push({
        name: `dedup bytes per remembered event, ${d.eventsPerBucket} events per bucket`,
        target: '<= 48 B',
        measured: `${d.bytesPerEvent.toFixed(1)} B`,
        met: d.bytesPerEvent <= 48,
        ...(d.bytesPerEvent > 48 ? { missedBy: `${(d.bytesPerEvent - 48).toFixed(1)} B over` } : {}),
      });
    }
  }
  const { http } = results.scenarios;
  if (http) {
    rows.push([
      `6 HTTP ingest, ${http.batch} ev/request, ${http.inFlight} in flight (tally serve, 1 process)`,
      `${int(http.http)} ev/s (${runs(http.httpRuns)})`,
      `sendBatch ${int(http.direct)} ev/s (${runs(http.directRuns)})`,
      x(http.ratio),
      '>= 0.50x',
    ]);
    const l = http.latency;
    rows.push([
      `6 HTTP open loop ${int(l.rate)} ev/s, ${l.seconds.toFixed(0)} s`,
      `p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms, max ${l.max.toFixed(0)} ms`,
      `achieved ${int(l.achieved)} ev/s, ${l.failed} failed`,
      '',
      '',
    ]);
    summary.httpIngestEventsPerSecond = http.http;
    summary.httpIngestRatioToDirect = http.ratio;
    summary.httpLatencyP99Ms = l.p99;
    targets.push({
      name: 'HTTP batch ingest vs direct sendBatch',
      target: '>= 0.50x',
      measured: x(http.ratio),
      met: http.ratio >= 0.5,
      ...(http.ratio < 0.5 ? { missedBy: `${x(0.5 / http.ratio)} short` } : {}),
    });
  }
  const checks = results.scenarios.checks;
  if (checks && 'p99Ms' in checks) {
    rows.push([
      `entitlement check, ${int(checks.subjects)} subjects (issue 4)`,
      `p50 ${checks.p50Ms.toFixed(2)} ms, p99 ${checks.p99Ms.toFixed(2)} ms`,
      `Redis ${checks.redisUsPerCheck.toFixed(0)} us/check`,
      `${int(checks.concurrentChecksPerSecond)} checks/s`,
      '',
    ]);
    summary.entitlementCheckP99Ms = checks.p99Ms;
  } else if (checks) {
    rows.push(['entitlement check (issue 4)', `FAILED: ${checks.error.slice(0, 60)}`, '', '', '']);
  }
  summary.targets = targets;
  const targetRows = [
    ['Target', 'Goal', 'Measured', 'Met', 'Missed by'],
    ...targets.map((t) => [t.name, t.target, t.measured, t.met ? 'yes' : 'NO', t.missedBy ?? '']),
  ];
  const m = results.machine;
  const v = results.versions;
  const header =
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}; node ${v.node}, redis ${v.redis}, ` +
    `ioredis ${v.ioredis}, bullmq ${v.bullmq}; tally ${v.tallyCommit} (uncommitted src changes: ${v.srcUncommittedChanges})`;
  const load = Object.entries(results.loadAverage ?? {})
    .map(([name, [before = 0, after = 0]]) => `${name} ${before}->${after}`)
    .join(', ');
  const loadLine = `1-min load average (${m.cores} cores) before->after each scenario: ${load || 'n/a'}`;
  return { table: `${header}\n${loadLine}\n\n${table(rows)}\n\n${table(targetRows)}`, summary };
}
