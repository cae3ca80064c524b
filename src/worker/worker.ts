import type { TallyConfig } from '../config/index.js';
import { TallyConfigError } from '../errors/index.js';
import { RegistryFollower } from '../registry/index.js';
import {
  checkEvictionPolicy,
  checkRedisAccess,
  duplicate,
  MeteringScripts,
  processConsumerName,
  RedisComponent,
  StreamGroup,
  TallyKeys,
} from '../redis/index.js';
import { RollupRelay } from '../rollups/index.js';
import type { ConsumerContext } from './apply.js';
import { runHousekeeping } from './housekeeping.js';
import { observePartitionGauges } from './gauges.js';
import { PartitionLeases } from './leases.js';
import { emptyStats, type WorkerOptions, type WorkerStats } from './options.js';
import { PartitionConsumer } from './partition-consumer.js';
import { forgetConsumers, partitionHousekeeping } from './partition-housekeeping.js';
import { sleep } from '../time/index.js';

interface PartitionRunner {
  readonly abort: AbortController;
  readonly consumer: PartitionConsumer;
  readonly done: Promise<void>;
}

const GROUP_LOST =
  'consumer group is missing: Redis lost its data (restart without persistence?) or the stream was deleted; recreating the group';

/**
 * One Tally worker replica. For each partition it reads new entries through the consumer group and
 * applies them (applyBatch.lua: dedup + aggregate + ack, atomically), reclaims entries left pending by
 * dead consumers, dead-letters poison entries, closes due windows and relays their rollups to BullMQ.
 * Run as many replicas as needed: every step is atomic in Redis and safe to run concurrently.
 */
export class TallyWorker extends RedisComponent {
  readonly consumer: string;
  readonly config: TallyConfig;
  private readonly keys: TallyKeys;
  /** The meter registry this replica obeys (the config's meters are declared to it at start). */
  readonly registry: RegistryFollower;
  private readonly relay: RollupRelay;
  private readonly staticPartitions: readonly number[] | undefined;
  private readonly leases: PartitionLeases | undefined;
  private readonly runners = new Map<number, PartitionRunner>();
  private readonly stop = new AbortController();
  private supervisor: Promise<void> | undefined;
  private readonly stats: WorkerStats = emptyStats();
  private readonly ctx: ConsumerContext;
  /** Partitions whose consumer group this worker created or found (see ensureGroup). */
  private readonly groupsSeen = new Set<number>();
  private started: Promise<void> | undefined;
  private unobserve: (() => void) | undefined;
  private readonly allowEviction: boolean;

  constructor(options: WorkerOptions) {
    const name = options.consumerName ?? processConsumerName();
    super(options.config.redis, options, { component: 'worker', consumer: name });
    this.config = options.config;
    this.consumer = name;
    this.allowEviction = options.allowEviction ?? false;
    this.keys = new TallyKeys(this.config.prefix);
    this.registry = new RegistryFollower(this.client, this.config, this.logger, {
      role: 'worker',
      name: this.consumer,
      ...(options.registryIntervalMs !== undefined ? { intervalMs: options.registryIntervalMs } : {}),
    });
    const scripts = new MeteringScripts(this.client, this.keys);
    const { client, config, keys, registry, consumer, logger, stats, failures } = this;
    this.ctx = { client, scripts, config, keys, registry, consumer, logger, stats, failures };
    for (const p of options.partitions ?? []) {
      if (!Number.isInteger(p) || p < 0 || p >= this.config.partitions) {
        throw new TallyConfigError(
          'partitions',
          `${p} is not a partition of 0..${this.config.partitions - 1}`,
        );
      }
    }
    const leased = options.partitions === undefined && this.config.worker.leases;
    this.staticPartitions = leased
      ? undefined
      : (options.partitions ?? Array.from({ length: this.config.partitions }, (_, i) => i));
    this.leases = leased
      ? new PartitionLeases(
          this.client,
          scripts,
          this.keys,
          this.consumer,
          this.config.partitions,
          this.config.worker.leaseTtlMs,
          this.logger,
          this.stop.signal,
        )
      : undefined;
    this.relay = new RollupRelay(this.client, this.config, this.registry.index, this.consumer, this.logger);
  }

  /** Creates the consumer groups and starts the loops; resolves once the worker is consuming. */
  start(): Promise<void> {
    this.started ??= this.doStart();
    return this.started;
  }

  private async doStart(): Promise<void> {
    // A denied command fails here with one clear error, not later as a stuck partition.
    const facts = await checkRedisAccess(this.client, {
      prefix: this.config.prefix,
      queuePrefix: this.config.rollups.queuePrefix,
      queues: this.config.rollups.queues,
    });
    checkEvictionPolicy(facts, this.allowEviction, this.logger);
    // Refuses to start (one TallyConfigError) when the config contradicts the registry.
    await this.registry.start();
    this.unobserve = observePartitionGauges({
      client: this.client,
      keys: this.keys,
      group: this.config.consumerGroup,
      partitions: () => this.activePartitions,
    });
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
        meters: this.registry.index.meters.map((m) => m.slug),
        registryVersion: this.registry.version,
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
    const consumer = new PartitionConsumer(this.ctx, partition, conn, signal);
    const done = Promise.allSettled([
      this.consumeLoop(consumer, takeover, signal),
      this.maintenanceLoop(consumer, signal),
    ]).then(() => conn.disconnect());
    this.runners.set(partition, { abort, consumer, done });
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
        this.failures.succeeded('leases');
      } catch (err) {
        this.failures.failed('leases', undefined, err);
      }
    }
  }

  /**
   * For readiness probes: whether the worker is running (started, not closing), and the operations
   * (`<op>:<partition>`) failing now, each logged once until it recovers.
   */
  get health(): { running: boolean; failing: string[] } {
    return {
      running: this.started !== undefined && !this.stop.signal.aborted,
      failing: this.failures.current,
    };
  }

  /** Counters since start (a copy). */
  getStats(): WorkerStats {
    return { ...this.stats };
  }

  /**
   * Stops reading, finishes the batch in hand (or leaves it pending for another replica), stops the
   * loops and closes connections it opened. Idempotent; never throws (see RedisComponent.close).
   */
  protected async shutdown(): Promise<void> {
    this.stop.abort();
    this.unobserve?.();
    await this.started?.catch(() => undefined);
    await this.supervisor;
    await Promise.allSettled([...this.runners.keys()].map((p) => this.stopPartition(p)));
    await this.leases
      ?.releaseAll()
      .catch((err: unknown) => this.logger.warn({ err }, 'releasing partition leases failed'));
    // Leave the consumer groups (only where this consumer holds nothing pending), so they do not fill
    // up with the names of replicas that came and went.
    for (const p of this.groupsSeen) {
      await forgetConsumers(this.ctx, this.relay, p, null).catch((err: unknown) =>
        this.logger.warn({ err, partition: p }, 'leaving consumer groups failed'),
      );
    }
    await this.relay
      .close()
      .catch((err: unknown) => this.logger.warn({ err }, 'closing rollup queues failed'));
    await this.registry.close();
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
    const created = await StreamGroup.ensure(this.client, stream, this.config.consumerGroup);
    if (created && logRecreation && this.groupsSeen.has(partition))
      this.logger.error({ partition, stream }, GROUP_LOST);
    this.groupsSeen.add(partition);
  }

  /**
   * Runs a partition consumer until `signal` aborts. A consumer group that vanished (Redis lost its data)
   * is recreated and consumption goes on.
   */
  private async consumeLoop(
    consumer: PartitionConsumer,
    takeover: boolean,
    signal: AbortSignal,
  ): Promise<void> {
    const partition = consumer.partition;
    while (!signal.aborted) {
      try {
        await consumer.run(takeover);
        return;
      } catch (err) {
        if (StreamGroup.isMissing(err)) {
          this.logger.error({ partition, stream: this.keys.events(partition) }, GROUP_LOST);
          // Not consuming until the group is back: /readyz says so (it watches `consume`).
          this.failures.failed('consume', partition, err);
          try {
            await this.ensureGroup(partition, false);
            await this.relay.ensureGroup(partition);
            this.failures.succeeded('consume', partition);
          } catch (e) {
            this.failures.failed('create-group', partition, e);
            await sleep(250, signal);
          }
        } else {
          this.failures.failed('consume', partition, err);
          await sleep(1000, signal);
        }
        takeover = false;
      }
    }
  }

  /** Closes due windows, relays rollups, reclaims stale entries, trims, sweeps old dedup epochs. */
  private maintenanceLoop(consumer: PartitionConsumer, signal: AbortSignal): Promise<void> {
    const partition = consumer.partition;
    return runHousekeeping(
      partitionHousekeeping(this.ctx, consumer, this.relay),
      this.config.worker.closeIntervalMs,
      signal,
      {
        failed: (step, err) => this.failures.failed(step, partition, err),
        succeeded: (step) => this.failures.succeeded(step, partition),
      },
    );
  }
}
