import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { pino, type Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { sweepDedup } from '../dedup/index.js';
import { TallyConfigError } from '../errors/index.js';
import { MeterIndex } from '../meters/index.js';
import { connect, duplicate, OutageLog, RELAY_GROUP, runScript, TallyKeys, type RedisClient } from '../redis/index.js';
import { RollupRelay } from '../rollups/index.js';
import { instruments } from '../telemetry/index.js';
import { closeDueWindows } from '../windows/index.js';
import { emptyStats, type WorkerOptions, type WorkerStats } from './options.js';
import { PartitionLeases } from './leases.js';
import { runHousekeeping, type HousekeepingStep } from './housekeeping.js';
import { PartitionConsumer, type ConsumerContext } from './partition-consumer.js';
import { sleep } from './timing.js';

interface PartitionRunner {
  readonly abort: AbortController;
  readonly consumer: PartitionConsumer;
  readonly done: Promise<void>;
}

const SWEEP_EVERY_MS = 60_000;
const TRIM_EVERY_MS = 1_000;
/** Consumers idle this long with nothing pending belonged to replicas that are gone. */
const STALE_CONSUMER_MS = 3_600_000;
const GROUP_LOST =
  'consumer group is missing: Redis lost its data (restart without persistence?) or the stream was deleted; recreating the group';

/**
 * One Tally worker replica. For each partition it reads new entries through the consumer group and
 * applies them (applyBatch.lua: dedup + aggregate + ack, atomically), reclaims entries left pending by
 * dead consumers, dead-letters poison entries, closes due windows and relays their rollups to BullMQ.
 * Run as many replicas as needed: every step is atomic in Redis and safe to run concurrently.
 */
export class TallyWorker {
  readonly consumer: string;
  readonly config: TallyConfig;
  private readonly client: RedisClient;
  private readonly ownsClient: boolean;
  private readonly logger: Logger;
  private readonly keys: TallyKeys;
  private readonly meters: MeterIndex;
  private readonly relay: RollupRelay;
  private readonly staticPartitions: readonly number[] | undefined;
  private readonly leases: PartitionLeases | undefined;
  private readonly runners = new Map<number, PartitionRunner>();
  private readonly stop = new AbortController();
  private supervisor: Promise<void> | undefined;
  private readonly stats: WorkerStats = emptyStats();
  private readonly failing = new Set<string>();
  private readonly outages: OutageLog;
  /** Partitions whose consumer group this worker created or found (see ensureGroup). */
  private readonly groupsSeen = new Set<number>();
  private started: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: WorkerOptions) {
    this.config = options.config;
    this.consumer = options.consumerName ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.ownsClient = options.connection === undefined;
    this.client = options.connection ?? connect(this.config.redis);
    this.logger = (options.logger ?? pino({ level: process.env.LOG_LEVEL ?? 'info' })).child({
      component: 'worker',
      consumer: this.consumer,
    });
    // Every connection of the worker is watched, so an outage is logged once, not per connection and retry.
    this.outages = new OutageLog(this.logger);
    this.outages.watch(this.client);
    this.keys = new TallyKeys(this.config.prefix);
    this.meters = new MeterIndex(this.config.meters);
    for (const p of options.partitions ?? []) {
      if (!Number.isInteger(p) || p < 0 || p >= this.config.partitions) {
        throw new TallyConfigError('partitions', `${p} is not a partition of 0..${this.config.partitions - 1}`);
      }
    }
    const leased = options.partitions === undefined && this.config.worker.leases;
    this.staticPartitions = leased ? undefined : (options.partitions ?? Array.from({ length: this.config.partitions }, (_, i) => i));
    this.leases = leased
      ? new PartitionLeases(this.client, this.keys, this.consumer, this.config.partitions, this.config.worker.leaseTtlMs, this.logger)
      : undefined;
    this.relay = new RollupRelay(this.client, this.config, this.meters, this.consumer, this.logger);
  }

  /** Creates the consumer groups and starts the loops; resolves once the worker is consuming. */
  start(): Promise<void> {
    this.started ??= this.doStart();
    return this.started;
  }

  private async doStart(): Promise<void> {
    if (this.staticPartitions) {
      for (const p of this.staticPartitions) await this.startPartition(p, false);
    } else {
      await this.rebalance();
      this.supervisor = this.superviseLeases();
    }
    this.logger.info(
      {
        partitions: this.staticPartitions ?? 'leased',
        held: [...this.runners.keys()],
        meters: this.config.meters.map((m) => m.slug),
        group: this.config.consumerGroup,
      },
      'worker started',
    );
  }

  /** Partitions this replica is consuming now. */
  get activePartitions(): number[] {
    return [...this.runners.keys()].sort((a, b) => a - b);
  }

  /**
   * Starts consuming a partition. `takeover`: this replica just acquired the partition's lease, so the
   * previous owner is gone and its pending entries are claimed at once (see PartitionConsumer).
   */
  private async startPartition(partition: number, takeover: boolean): Promise<void> {
    if (this.runners.has(partition) || this.stop.signal.aborted) return;
    await this.ensureGroup(partition);
    await this.relay.ensureGroup(partition);
    const abort = new AbortController();
    const conn = duplicate(this.client);
    this.outages.watch(conn);
    const signal = AbortSignal.any([abort.signal, this.stop.signal]);
    const consumer = new PartitionConsumer(this.consumerContext, partition, conn, signal);
    const done = Promise.allSettled([this.consumeLoop(consumer, takeover, signal), this.maintenanceLoop(consumer, signal)]).then(() =>
      conn.disconnect(),
    );
    this.runners.set(partition, { abort, consumer, done });
  }

  private get consumerContext(): ConsumerContext {
    return {
      client: this.client,
      config: this.config,
      keys: this.keys,
      meters: this.meters,
      consumer: this.consumer,
      logger: this.logger,
      stats: this.stats,
      report: (op, partition, err) => this.report(op, partition, err),
      recovered: (op, partition) => this.recovered(op, partition),
    };
  }

  /** Stops a partition's loops after the batch in hand. */
  private async stopPartition(partition: number): Promise<void> {
    const runner = this.runners.get(partition);
    if (!runner) return;
    runner.abort.abort();
    await runner.done;
    this.runners.delete(partition);
  }

  private async rebalance(): Promise<void> {
    const leases = this.leases as PartitionLeases;
    const { acquired, released, lost } = await leases.tick();
    for (const p of [...released, ...lost]) await this.stopPartition(p);
    for (const p of released) await leases.release(p);
    for (const p of acquired) await this.startPartition(p, true);
  }

  private async superviseLeases(): Promise<void> {
    // Renewing every third of the TTL keeps leases safe; ticking at least every 500 ms takes over a dead
    // replica's partitions within about leaseTtl + 0.5 s of its last renewal.
    const every = Math.max(100, Math.min(500, Math.floor(this.config.worker.leaseTtlMs / 3)));
    while (!this.stop.signal.aborted) {
      await sleep(every, this.stop.signal);
      if (this.stop.signal.aborted) break;
      try {
        await this.rebalance();
        this.recovered('leases', -1);
      } catch (err) {
        this.report('leases', -1, err);
      }
    }
  }

  /** Counters since start (a copy). */
  getStats(): WorkerStats {
    return { ...this.stats };
  }

  /**
   * Stops reading, finishes the batch in hand (or leaves it pending for another replica), stops the
   * loops and closes connections it opened. Idempotent; never throws.
   */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.stop.abort();
    await this.started?.catch(() => undefined);
    await this.supervisor;
    await Promise.allSettled([...this.runners.keys()].map((p) => this.stopPartition(p)));
    await this.leases?.releaseAll().catch((err: unknown) => this.logger.warn({ err }, 'releasing partition leases failed'));
    // Leave the consumer groups (only where this consumer holds nothing pending), so they do not fill
    // up with the names of replicas that came and went.
    for (const p of this.groupsSeen) {
      await this.forgetConsumers(p, '').catch((err: unknown) => this.logger.warn({ err, partition: p }, 'leaving consumer groups failed'));
    }
    await this.relay.close().catch((err: unknown) => this.logger.warn({ err }, 'closing rollup queues failed'));
    if (this.ownsClient) await this.client.quit().catch(() => undefined);
    this.logger.info({ stats: this.stats }, 'worker closed');
  }

  /**
   * Creates the partition's consumer group if it is missing. Creating it is normal the first time; for a
   * partition this worker already consumed it means the group vanished (Redis lost its data), and is
   * logged as such unless the caller already said so: a partition restarted by the lease supervisor
   * (its lease vanished too) can get here before its read loop sees NOGROUP, and used to recreate
   * the group without a word.
   */
  private async ensureGroup(partition: number, logRecreation = true): Promise<void> {
    const stream = this.keys.events(partition);
    try {
      await this.client.xgroup('CREATE', stream, this.config.consumerGroup, '0', 'MKSTREAM');
      if (logRecreation && this.groupsSeen.has(partition)) this.logger.error({ partition, stream }, GROUP_LOST);
    } catch (err) {
      if (!(err as Error).message.includes('BUSYGROUP')) throw err;
    }
    this.groupsSeen.add(partition);
  }

  /** Logs an error once until the same operation succeeds again (no log storm while Redis is down). */
  private report(op: string, partition: number, err: unknown): void {
    const key = `${op}:${partition}`;
    if (this.failing.has(key)) return;
    this.failing.add(key);
    this.logger.error({ err, partition, op }, `${op} failed; retrying`);
  }

  private recovered(op: string, partition: number): void {
    if (this.failing.delete(`${op}:${partition}`)) this.logger.info({ partition, op }, `${op} recovered`);
  }

  /**
   * Runs a partition consumer until `signal` aborts. A consumer group that vanished (Redis lost its data)
   * is recreated and consumption goes on.
   */
  private async consumeLoop(consumer: PartitionConsumer, takeover: boolean, signal: AbortSignal): Promise<void> {
    const partition = consumer.partition;
    while (!signal.aborted) {
      try {
        await consumer.run(takeover);
        return;
      } catch (err) {
        if ((err as Error).message.includes('NOGROUP')) {
          this.logger.error({ partition, stream: this.keys.events(partition) }, GROUP_LOST);
          await this.ensureGroup(partition, false).catch((e: unknown) => this.report('create-group', partition, e));
        } else {
          this.report('consume', partition, err);
          await sleep(1000, signal);
        }
        takeover = false;
      }
    }
  }

  /** Closes due windows, relays rollups, reclaims stale entries, trims, sweeps old dedup epochs. */
  private maintenanceLoop(consumer: PartitionConsumer, signal: AbortSignal): Promise<void> {
    const partition = consumer.partition;
    return runHousekeeping(this.housekeeping(consumer), this.config.worker.closeIntervalMs, signal, {
      failed: (step, err) => this.report(step, partition, err),
      succeeded: (step) => this.recovered(step, partition),
    });
  }

  /** The housekeeping table of one partition: what runs, how often. */
  private housekeeping(consumer: PartitionConsumer): HousekeepingStep[] {
    const { partition } = consumer;
    const { config, client, keys, logger, stats } = this;
    const { claimIdleMs } = config.worker;
    return [
      {
        step: 'close-windows',
        every: 0,
        run: async () => {
          const closed = await closeDueWindows(client, config, partition);
          stats.windowsClosed += closed.windowsClosed;
          instruments.windowsClosed.add(closed.windowsClosed, { 'tally.partition': partition });
          if (closed.windowsClosed > 0 || closed.corrections > 0) logger.debug({ partition, ...closed }, 'windows closed');
        },
      },
      {
        step: 'relay',
        every: 0,
        run: async () => {
          stats.rollupsRelayed += await this.relay.relay(partition);
        },
      },
      {
        // Entries idle for claimIdle: a dead replica's without leases, a stalled one's, or (a safety net)
        // this consumer's own that it lost track of. Applying an entry twice at once is harmless: only
        // one applyBatch finds it still pending for its consumer.
        step: 'reclaim',
        every: Math.max(250, Math.floor(claimIdleMs / 2)),
        run: async () => {
          const claimed = await consumer.claimPending(claimIdleMs);
          if (claimed > 0) logger.info({ partition, reclaimed: claimed }, 'reclaimed entries left pending by another consumer');
        },
      },
      {
        step: 'trim',
        every: TRIM_EVERY_MS,
        run: async () => {
          const { retainAckedMs, maxLength } = config.trim;
          await runScript(client, 'trimStream', [keys.events(partition)], [config.consumerGroup, retainAckedMs, maxLength]);
        },
      },
      {
        step: 'sweep-dedup',
        every: SWEEP_EVERY_MS,
        run: async (now) => {
          const deleted = await sweepDedup(client, config, partition, now);
          if (deleted > 0) logger.info({ partition, deleted }, 'forgot dedup buckets past the horizon');
        },
      },
      {
        step: 'forget-consumers',
        every: SWEEP_EVERY_MS,
        run: async () => {
          const removed = await this.forgetConsumers(partition, String(STALE_CONSUMER_MS));
          if (removed > 0) logger.info({ partition, removed }, 'removed consumers of dead replicas (idle, nothing pending)');
        },
      },
    ];
  }

  /**
   * Removes consumers with nothing pending from the partition's consumer groups (events and outbox):
   * this replica's own (minIdleMs '') or, with a minimum idle time, other replicas' long gone ones.
   */
  private async forgetConsumers(partition: number, minIdleMs: string): Promise<number> {
    let removed = 0;
    for (const [stream, group] of [
      [this.keys.events(partition), this.config.consumerGroup],
      [this.keys.outbox(partition), RELAY_GROUP],
    ] as const) {
      removed += (await runScript(this.client, 'forgetConsumers', [stream], [group, minIdleMs, this.consumer])) as number;
    }
    return removed;
  }
}
