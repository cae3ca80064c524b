import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { TallyConfig } from '../config/index.js';
import { ErrorCode, TallyConfigError, TallyError } from '../errors/index.js';
import { DAY_MS } from '../time/index.js';
import { toScaled, type Meter } from '../meters/index.js';
import {
  checkEvictionPolicy,
  checkRedisAccess,
  duplicate,
  processConsumerName,
  RedisComponent,
  STALE_CONSUMER_MS,
  type RedisClient,
} from '../redis/index.js';
import { RegistryFollower } from '../registry/index.js';
import { guardWorker, rollupsOfJob, type RollupJob } from '../rollups/index.js';
import { withSpan } from '../telemetry/index.js';
import { sleep } from '../time/index.js';
import { Definitions, type MeteredTarget, type SubjectDefinition } from './definitions.js';
import { DefinitionsFollower } from './follower.js';
import { instruments } from '../telemetry/index.js';
import { burnPlan, planArgs } from './burn-plan.js';
import { groupValues } from './model.js';
import { NotificationRelay } from './notifications.js';
import { emptyEvaluatorStats, type EvaluatorOptions, type EvaluatorStats } from './options.js';
import { periodAt } from './period.js';
import { processResets } from './resets.js';

const MAX_ATTEMPTS = 8;
/** How often the relay consumers of gone evaluators are removed from the notification outboxes' groups. */
const FORGET_EVERY_MS = 60_000;

/** What applying one rollup did to one feature's usage. */
export interface ApplyOutcome {
  readonly feature: string;
  readonly status: 'applied' | 'duplicate' | 'before-start' | 'expired';
  /** Change of the period's usage (micro-units). */
  readonly delta: string;
  readonly periodUsage: string;
  readonly notifications: number;
}

/**
 * The entitlement evaluator, a role of `tally worker`: consumes rollup jobs from the entitlements queue
 * (a BullMQ Worker) and applies each to the usage of every metered entitlement it counts for, exactly
 * once in effect (applyEntitlementRollup.lua). It also relays notifications from the partitions'
 * outboxes to the notifications queue and processes due period resets. Run any number of replicas.
 */
export class EntitlementEvaluator extends RedisComponent {
  readonly consumer: string;
  readonly definitions: Definitions;
  private readonly config: TallyConfig;
  private readonly relay: NotificationRelay;
  private readonly follower: DefinitionsFollower;
  /** The meter registry this evaluator follows (features count with the registry's meters). */
  private readonly registry: RegistryFollower;
  private readonly queue: string;
  private readonly concurrency: number;
  private readonly stats = emptyEvaluatorStats();
  private readonly stop = new AbortController();
  private worker: Worker<unknown> | undefined;
  private workerConnection: RedisClient | undefined;
  private unguard: (() => void) | undefined;
  private readonly allowEviction: boolean;
  private loop: Promise<void> | undefined;
  private started: Promise<void> | undefined;
  private lastForget = 0;

  constructor(options: EvaluatorOptions) {
    const consumer = options.consumerName ?? processConsumerName();
    super(options.config.redis, options, { component: 'entitlement-evaluator', consumer });
    this.consumer = consumer;
    this.config = options.config;
    this.allowEviction = options.allowEviction ?? false;
    const queue = this.config.entitlements.queue;
    if (queue === undefined) {
      throw new TallyConfigError(
        'entitlements.queue',
        'no rollup queue for the evaluator: set entitlements.queue or add a second rollups.queues entry',
      );
    }
    this.queue = queue;
    this.concurrency = options.concurrency ?? this.config.entitlements.concurrency;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new TallyConfigError('concurrency', `expected an integer ≥ 1, got ${this.concurrency}`);
    }
    this.registry = new RegistryFollower(this.client, this.config, this.logger, {
      role: 'evaluator',
      name: `${consumer}:evaluator`,
    });
    this.definitions = new Definitions(this.client, this.config, this.registry.index);
    this.relay = new NotificationRelay(
      this.client,
      this.config,
      this.consumer,
      this.logger,
      options.onNotifications,
    );
    this.follower = new DefinitionsFollower(
      this.client,
      this.config,
      this.definitions,
      this.logger,
      this.consumer,
    );
  }

  /**
   * Publishes the config's entitlement definitions (a new version if they differ from the published
   * ones), creates the outbox consumer groups, starts the relay/reset loop and the rollup worker. Without
   * any feature (none in the config, none published, none created through the API) it does not consume
   * the rollup queue, so rollups wait there instead of being dropped, and it says so; it starts consuming
   * once features exist.
   */
  start(): Promise<void> {
    this.started ??= this.doStart();
    return this.started;
  }

  /** Resolves once started and, if it consumes rollups (see `consuming`), once its worker is connected. */
  async waitUntilReady(): Promise<void> {
    await this.start();
    await this.worker?.waitUntilReady();
  }

  /** True once it consumes the rollup queue: false while no feature exists (see `start`). */
  get consuming(): boolean {
    return this.worker !== undefined;
  }

  private async doStart(): Promise<void> {
    // A denied command fails here with one clear error, before BullMQ can spin on it.
    const facts = await checkRedisAccess(this.client, {
      prefix: this.config.prefix,
      queuePrefix: this.config.rollups.queuePrefix,
      queues: [this.queue, this.config.entitlements.notificationsQueue],
    });
    checkEvictionPolicy(facts, this.allowEviction, this.logger);
    await this.registry.start();
    await this.follower.start();
    for (let p = 0; p < this.config.partitions; p++) await this.relay.ensureGroup(p);
    if (await this.follower.anyFeature()) this.consume();
    else this.follower.warnWaiting(this.queue);
    this.loop = this.maintenanceLoop();
  }

  /** Starts the BullMQ worker on the rollup queue. */
  private consume(): void {
    if (this.worker || this.stop.signal.aborted) return;
    this.workerConnection = duplicate(this.client);
    this.outages.watch(this.workerConnection);
    this.worker = new Worker<unknown>(this.queue, (job) => this.handle(job), {
      connection: this.workerConnection,
      prefix: this.config.rollups.queuePrefix,
      concurrency: this.concurrency,
    });
    this.worker.on('failed', (job, err) => {
      this.stats.failedJobs++;
      this.failures.failed('job', undefined, err, { jobId: job?.id, attemptsMade: job?.attemptsMade });
    });
    this.worker.on('completed', () => this.failures.succeeded('job'));
    this.worker.on('error', (err) => this.failures.failed('worker', undefined, err));
    this.unguard = guardWorker(this.worker, this.queue, this.logger);
    this.logger.info(
      {
        queue: this.queue,
        notifications: this.config.entitlements.notificationsQueue,
        concurrency: this.concurrency,
      },
      `entitlement evaluator consuming ${this.queue}`,
    );
  }

  /** A `rollup` job, or a `rollups` batch (`rollups.batchJobs`) applied rollup by rollup, in order. */
  private async handle(job: Job<unknown>): Promise<void> {
    for (const rollup of rollupsOfJob(job)) await this.applyRollup(rollup);
  }

  /** Counters since start (a copy). */
  getStats(): EvaluatorStats {
    return { ...this.stats };
  }

  /**
   * Applies one rollup to every metered entitlement of its subject that it counts for. Idempotent:
   * applying the same rollup (same revision) again changes nothing.
   */
  async applyRollup(rollup: RollupJob): Promise<ApplyOutcome[]> {
    this.stats.rollups++;
    const meter = this.definitions.meter(rollup.meter);
    if (!meter || (meter.aggregation !== 'SUM' && meter.aggregation !== 'COUNT')) {
      this.stats.skipped++;
      return [];
    }
    const value = toScaled(rollup.valueDecimal);
    if (value === undefined)
      throw new UnrecoverableError(`rollup value ${JSON.stringify(rollup.valueDecimal)} is not a decimal`);
    return withSpan(
      'entitlements.apply_rollup',
      { 'tally.meter': rollup.meter, 'tally.revision': rollup.revision },
      async () => {
        for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
          const def = await this.definitions.load(rollup.subject);
          const targets = this.definitions.meteredFor(def, meter, groupValues(meter, rollup.groupBy));
          if (targets.length === 0) {
            this.stats.skipped++;
            return [];
          }
          const outcomes: ApplyOutcome[] = [];
          let stale = false;
          for (const target of targets) {
            const outcome = await this.applyTo(def, target, meter, rollup, value);
            if (outcome === 'stale') {
              stale = true;
              break;
            }
            outcomes.push(outcome);
          }
          if (!stale) return outcomes;
          this.stats.stale++;
        }
        throw new TallyError(
          ErrorCode.State,
          `the entitlements of ${JSON.stringify(rollup.subject)} kept changing; the rollup will be retried`,
        );
      },
    );
  }

  private async applyTo(
    def: SubjectDefinition,
    target: MeteredTarget,
    meter: Meter,
    rollup: RollupJob,
    value: bigint,
  ): Promise<ApplyOutcome | 'stale'> {
    const ent = target.entitlement;
    const { subject, partition: p } = def;
    const feature = ent.feature.key;
    const ws = Date.parse(rollup.windowStart);
    const now = Date.now();
    // Attribution by window start: a window straddling a period boundary counts in the period it starts in.
    const plan = burnPlan(ent, this.definitions.grantsOf(def, feature), periodAt(ent.usagePeriod, ws));
    const current = periodAt(ent.usagePeriod, now);
    const tail = JSON.stringify(groupValues(meter, rollup.groupBy));
    const day = Math.floor(ws / DAY_MS) * DAY_MS;
    const retentionMs = this.config.windows.retentionMs;
    const [status, delta, periodUsage, notifications] = await this.definitions.scripts.applyRollup(
      { partition: p, subject, feature, version: def.version },
      meter.slug,
      day,
      [
        `${ws}|${tail}`,
        rollup.revision,
        value.toString(),
        ws,
        tail,
        current.end,
        day + DAY_MS + retentionMs + DAY_MS,
        Math.max(current.end, plan.end) + retentionMs,
        plan.thresholds.length,
        ...plan.thresholds.flatMap((t) => [t.id, t.level.toString()]),
        ...planArgs(plan),
      ],
    );
    if (status === 'stale') return 'stale';
    if (status === 'applied') this.stats.applied++;
    else if (status === 'duplicate') this.stats.duplicates++;
    else this.stats.skipped++;
    this.stats.notificationsWritten += notifications;
    instruments.entitlementRollupsApplied.add(1, { 'tally.status': status });
    return { feature, status: status as ApplyOutcome['status'], delta, periodUsage, notifications };
  }

  /** Relays notifications and processes due resets of every partition, every `entitlements.interval`. */
  private async maintenanceLoop(): Promise<void> {
    const every = this.config.entitlements.intervalMs;
    const signal = this.stop.signal;
    while (!signal.aborted) {
      await sleep(every, signal);
      if (signal.aborted) break;
      try {
        await this.tick();
        this.failures.succeeded('maintenance');
      } catch (err) {
        this.failures.failed('maintenance', undefined, err);
      }
    }
  }

  /** One pass of the relay and reset work over all partitions; exposed for tests. */
  async tick(): Promise<void> {
    await this.follower.refresh();
    if (!this.worker && (await this.follower.anyFeature())) this.consume();
    const forget = Date.now() - this.lastForget >= FORGET_EVERY_MS;
    if (forget) this.lastForget = Date.now();
    for (let p = 0; p < this.config.partitions; p++) {
      if (forget) await this.relay.forgetConsumers(p, STALE_CONSUMER_MS);
      const resets = await processResets(this.client, this.config, this.definitions, p);
      this.stats.resets += resets;
      const relayed = await this.relay.relay(p);
      this.stats.notificationsRelayed += relayed;
      if (relayed > 0) instruments.entitlementNotificationsRelayed.add(relayed, { 'tally.partition': p });
    }
  }

  /**
   * Stops taking jobs, lets the ones in hand finish (BullMQ), stops the loop and closes what it opened.
   * Idempotent; never throws (see RedisComponent.close).
   */
  protected async shutdown(): Promise<void> {
    this.stop.abort();
    await this.started?.catch(() => undefined);
    this.unguard?.();
    await this.worker
      ?.close()
      .catch((err: unknown) => this.logger.warn({ err }, 'closing the rollup worker failed'));
    await this.loop;
    // Leave the notification outboxes' groups (where nothing is pending for this consumer).
    for (let p = 0; p < this.config.partitions; p++) {
      await this.relay
        .forgetConsumers(p, null)
        .catch((err: unknown) =>
          this.logger.warn({ err, partition: p }, 'leaving the notification relay group failed'),
        );
    }
    await this.relay
      .close()
      .catch((err: unknown) => this.logger.warn({ err }, 'closing the notifications queue failed'));
    this.workerConnection?.disconnect();
    await this.registry.close();
    this.logger.info({ stats: this.stats }, 'entitlement evaluator closed');
  }
}
