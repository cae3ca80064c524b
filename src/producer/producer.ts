import { TallyConfigError, TallyError, ErrorCode, TallyValidationError } from '../errors/index.js';
import { EVENT_FIELD, EVENTS_FIELD, explainInvalidEvent, type UsageEvent } from '../events/index.js';
import { connect, maskUrl, OutageLog, TallyKeys, type RedisClient } from '../redis/index.js';
import { defaultProducerOptions, type ProducerOptions } from './options.js';
import { partitionOf } from './partition.js';

/** What `sendBatchSettled` did with each event of a batch (indices into the events given). */
export interface BatchOutcome {
  /** Ids of the entries written. */
  readonly ids: string[];
  /** Events whose entry Redis acknowledged. */
  readonly acknowledged: number[];
  /** Events whose entry Redis did not acknowledge (written or not: unknown). */
  readonly unacknowledged: number[];
  /** The first failure, when `unacknowledged` is not empty. */
  readonly error?: Error;
}

/**
 * Appends usage events to the partitioned Redis streams. Events are validated against the event schema
 * before they are sent (a bad event throws TallyValidationError and nothing is written).
 * Retrying a send after an error is safe: workers drop the duplicate by (source, id).
 */
export class UsageProducer {
  private readonly client: RedisClient;
  private readonly ownsClient: boolean;
  private readonly keys: TallyKeys;
  private readonly partitions: number;
  private readonly maxEntryBytes: number;
  private readonly eventsPerEntry: number;
  private readonly sendTimeout: number;
  /** Where it writes, for error messages (password masked). */
  private readonly target: string;
  private lastError: Error | undefined;
  private closed = false;
  /** The partition count compared with the registry's, once (see checkPartitions). */
  private partitionsChecked: Promise<void> | undefined;

  constructor(options: ProducerOptions) {
    const opts = { ...defaultProducerOptions, ...options };
    if (!Number.isInteger(opts.partitions) || opts.partitions < 1) {
      throw new TallyConfigError('partitions', `expected an integer ≥ 1, got ${opts.partitions}`);
    }
    if (!Number.isInteger(opts.eventsPerEntry) || opts.eventsPerEntry < 1) {
      throw new TallyConfigError('eventsPerEntry', `expected an integer ≥ 1, got ${opts.eventsPerEntry}`);
    }
    if (!Number.isFinite(opts.sendTimeout) || opts.sendTimeout < 0) {
      throw new TallyConfigError('sendTimeout', `expected a number of ms ≥ 0, got ${opts.sendTimeout}`);
    }
    this.sendTimeout = opts.sendTimeout;
    const redis = opts.redis;
    const isClient = typeof redis === 'object' && 'pipeline' in redis;
    this.ownsClient = !isClient;
    this.client = isClient
      ? redis
      : connect(typeof redis === 'string' ? { url: redis, cluster: opts.cluster } : redis);
    this.target = isClient ? 'Redis' : `Redis at ${maskUrl(typeof redis === 'string' ? redis : redis.url)}`;
    if (this.ownsClient) {
      this.client.on('error', (err: Error) => (this.lastError = err));
      // Commands wait through a reconnect; an outage is logged once (or not at all), never per attempt.
      if (opts.logger) new OutageLog(opts.logger.child({ component: 'producer' })).watch(this.client);
      else this.client.on('error', () => undefined);
    }
    this.keys = new TallyKeys(opts.prefix);
    this.partitions = opts.partitions;
    this.maxEntryBytes = opts.maxEntryBytes;
    this.eventsPerEntry = opts.eventsPerEntry;
  }

  /**
   * Compares the partition count with the one the prefix's workers use (the meter registry's), once per
   * producer: with another count every event would land in a partition that is not its subject's
   * (or in one no worker reads). Throws a TallyConfigError then. Nothing recorded yet (no worker has
   * started) passes, and so does a Redis user that may not read the registry.
   */
  private checkPartitions(): Promise<void> {
    this.partitionsChecked ??= this.bounded(this.client.hget(this.keys.registry(), 'partitions')).then(
      (stored) => {
        if (stored !== null && Number(stored) !== this.partitions) {
          throw new TallyConfigError(
            'partitions',
            `is ${this.partitions} here, but the workers of prefix ${this.keys.prefix} use ${stored}: set partitions to ${stored}`,
          );
        }
      },
      (err: unknown) => {
        // A producer whose Redis user may only XADD (docs/operations.md, ACL) cannot read the
        // registry: it goes without the check. Anything else (Redis unreachable): checked again on
        // the next send.
        if (err instanceof Error && err.message.startsWith('NOPERM')) return;
        this.partitionsChecked = undefined;
        throw err;
      },
    );
    return this.partitionsChecked;
  }

  /** Sends one event as its own stream entry; resolves to the entry id. */
  async send(event: UsageEvent): Promise<string> {
    this.assertOpen();
    const json = this.serialize(event);
    await this.checkPartitions();
    const id = await this.bounded(
      this.client.xadd(this.keys.events(partitionOf(event.subject, this.partitions)), '*', EVENT_FIELD, json),
    );
    return id as string;
  }

  /**
   * Sends many events in batch entries (up to `eventsPerEntry` events and `maxEntryBytes` each), grouped
   * by partition, in one pipeline. All events are validated first: one bad event rejects the whole call.
   * Resolves to the ids of the entries written; rejects with the first error if Redis did not
   * acknowledge every entry (see `sendBatchSettled` to learn which events did land).
   */
  async sendBatch(events: readonly UsageEvent[]): Promise<string[]> {
    const outcome = await this.sendBatchSettled(events);
    if (outcome.error) throw outcome.error;
    return outcome.ids;
  }

  /**
   * Like `sendBatch`, but reports per event instead of throwing on a Redis failure: `acknowledged`
   * lists the indices of the events whose entry Redis acknowledged, `unacknowledged` the others (each
   * may or may not have been written: the reply was lost), and `error` the first failure. Retrying the
   * unacknowledged ones, or the whole batch, is safe: workers drop duplicates by (source, id).
   * Invalid events still throw TallyValidationError before anything is sent, unless `validated` says
   * the caller already checked each one with `explainInvalidEvent` (sizes are checked regardless).
   */
  async sendBatchSettled(
    events: readonly UsageEvent[],
    options: { validated?: boolean } = {},
  ): Promise<BatchOutcome> {
    this.assertOpen();
    await this.checkPartitions();
    const byPartition = new Map<number, { jsons: string[]; indices: number[] }>();
    events.forEach((event, index) => {
      const json = this.serialize(event, options.validated);
      const p = partitionOf(event.subject, this.partitions);
      const group = byPartition.get(p);
      if (group) {
        group.jsons.push(json);
        group.indices.push(index);
      } else byPartition.set(p, { jsons: [json], indices: [index] });
    });
    // One pipeline per partition: on Redis Cluster a pipeline must stay within one slot.
    const pipelines = [...byPartition].map(([p, { jsons, indices }]) => {
      const pipeline = this.client.pipeline();
      const key = this.keys.events(p);
      const entries: number[][] = [];
      let chunk: string[] = [];
      let members: number[] = [];
      let bytes = 2;
      const flush = () => {
        if (chunk.length === 0) return;
        if (chunk.length === 1) pipeline.xadd(key, '*', EVENT_FIELD, chunk[0] as string);
        else pipeline.xadd(key, '*', EVENTS_FIELD, `[${chunk.join(',')}]`);
        entries.push(members);
        chunk = [];
        members = [];
        bytes = 2;
      };
      jsons.forEach((json, k) => {
        const size = Buffer.byteLength(json) + 1;
        if (chunk.length >= this.eventsPerEntry || (chunk.length > 0 && bytes + size > this.maxEntryBytes))
          flush();
        chunk.push(json);
        members.push(indices[k] as number);
        bytes += size;
      });
      flush();
      return {
        entries,
        done: pipeline.exec().then(
          (r) => r ?? [],
          (err: unknown) => err as Error,
        ),
      };
    });
    const ids: string[] = [];
    const acknowledged: number[] = [];
    const unacknowledged: number[] = [];
    let error: Error | undefined;
    // One deadline for all the partitions' pipelines: past it, every entry not answered is unknown.
    const settled = await this.bounded(Promise.all(pipelines.map((p) => p.done))).catch(
      (err: unknown) => err as Error,
    );
    pipelines.forEach(({ entries }, i) => {
      const results = settled instanceof Error ? settled : (settled[i] as [Error | null, unknown][] | Error);
      entries.forEach((members, k) => {
        const [err, id] =
          results instanceof Error ? [results, null] : (results[k] ?? [new Error('no reply'), null]);
        if (err) {
          error ??= err;
          unacknowledged.push(...members);
        } else {
          ids.push(id as string);
          acknowledged.push(...members);
        }
      });
    });
    return {
      ids,
      acknowledged: acknowledged.sort((a, b) => a - b),
      unacknowledged: unacknowledged.sort((a, b) => a - b),
      ...(error ? { error } : {}),
    };
  }

  /**
   * Closes the connection if the producer opened it: waits for writes in flight while Redis answers,
   * drops them when it does not (never connected, or reconnecting). Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.ownsClient) return;
    if (this.client.status !== 'ready') return this.client.disconnect();
    await this.bounded(this.client.quit()).catch(() => this.client.disconnect());
  }

  /** Rejects after `sendTimeout` ms with an error that says which Redis did not answer and why. */
  private bounded<T>(promise: Promise<T>): Promise<T> {
    if (this.sendTimeout === 0) return promise;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const why = this.lastError
          ? `: ${this.lastError.message}`
          : this.client.status !== 'ready'
            ? ` (connection ${this.client.status})`
            : '';
        reject(
          new TallyError(
            ErrorCode.Unavailable,
            `${this.target} did not answer within ${this.sendTimeout} ms${why}. The write may still happen once it is back; sending again is safe (workers drop duplicates)`,
            ...(this.lastError ? [{ cause: this.lastError }] : []),
          ),
        );
      }, this.sendTimeout);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  private serialize(event: UsageEvent, validated = false): string {
    const invalid = validated ? undefined : explainInvalidEvent(event);
    if (invalid) throw new TallyValidationError(invalid.reason, `invalid usage event: ${invalid.detail}`);
    const json = JSON.stringify(event.specversion === undefined ? { specversion: '1.0', ...event } : event);
    if (Buffer.byteLength(json) > this.maxEntryBytes) {
      throw new TallyValidationError('oversized', `event ${event.id} exceeds ${this.maxEntryBytes} bytes`);
    }
    return json;
  }

  private assertOpen(): void {
    if (this.closed) throw new TallyError(ErrorCode.Closed, 'the producer is closed');
  }
}
