import type { Logger } from 'pino';
import { TallyStaleRegistryError } from '../errors/index.js';
import type { PartitionView } from '../registry/index.js';
import { StreamGroup, type RedisClient } from '../redis/index.js';
import { applyPrepared, deadLetterPoison, recordError, type ConsumerContext } from './apply.js';
import { prepareBatch, type PreparedBatch, type StreamEntry } from './batch.js';
import { isOwnWrongType, isTransientRedisError } from './errors.js';
import { instruments } from '../telemetry/index.js';
import { sleep } from '../time/index.js';

export type { ConsumerContext } from './apply.js';

interface Batch {
  readonly entries: StreamEntry[];
  /** Prepared ahead while the previous batch was applied; undefined when preparing failed. */
  readonly prepared: PreparedBatch | undefined;
}

/**
 * Marks a read-ahead promise as handled: when the loop leaves early (the group vanished while the
 * batch in hand was applied), its rejection must not become an unhandled one, which ends the process.
 * Awaiting it still sees the rejection.
 */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/** A read failed: entries may have been delivered to this consumer without reaching it. */
const READ_FAILED = Symbol('read failed');

const FIRST_RETRY_MS = 250;
const MAX_RETRY_MS = 5_000;

/**
 * Reads one partition in stream order and applies it, entry by entry in id order:
 *
 * 1. On start, when `takeover` is set (this replica just acquired the partition's lease, which proves
 *    the previous owner gone), it claims every entry pending in the group at once, with no
 *    `claimIdle` wait; then it applies the entries pending for itself, in id order.
 * 2. Then it reads new entries, one batch ahead: the next batch is read and prepared while Redis
 *    applies the current one.
 * 3. A failed apply is retried in place, with backoff, before anything newer is applied. A batch that
 *    keeps failing for a reason other than Redis being unreachable is bisected, so only the entry that
 *    fails `maxDeliveries` times on its own goes to the dead letters, as poison, with its error.
 * 4. After a failed read it first re-reads the entries pending for itself (a read whose reply was lost
 *    still delivered its entries), so nothing waits for `claimIdle`.
 *
 * So the partition's stream time (built from applied events) never runs past an entry that is
 * waiting to be applied by this consumer; closeWindows.lua also guards against other consumers'.
 */
export class PartitionConsumer {
  private readonly log: Logger;
  /** Set when the read connection closes: a read in flight then may have delivered entries whose reply was lost. */
  private readDropped = false;
  /** Recent events per entry (moving average): reads are sized in events, not entries (see readCount). */
  private eventsPerEntry = 1;

  constructor(
    private readonly ctx: ConsumerContext,
    readonly partition: number,
    /** A dedicated connection for blocking reads. */
    private readonly conn: RedisClient,
    private readonly signal: AbortSignal,
  ) {
    this.log = ctx.logger.child({ partition });
    // ioredis re-sends a command whose connection dropped; for XREADGROUP '>' that skips the entries
    // the first send delivered (they sit pending for this consumer), so a drop counts as a failed read.
    conn.on('close', () => {
      this.readDropped = true;
    });
  }

  private get stream(): string {
    return this.ctx.keys.events(this.partition);
  }

  /** Runs until the signal aborts; entries read ahead when it does are still applied (once). */
  async run(takeover: boolean): Promise<void> {
    const started = Date.now();
    const claimed = takeover ? await this.retrying('takeover', () => this.claimPending(0)) : 0;
    const own = await this.applyOwnPending();
    if (takeover || own > 0) {
      this.log.info(
        { claimed, applied: own, ms: Date.now() - started },
        'partition resumed: pending entries applied in order',
      );
    }
    let next = handled(this.readNew());
    while (!this.signal.aborted) {
      const batch = await next;
      if (batch === READ_FAILED) {
        await this.applyOwnPending();
        next = handled(this.readNew());
        continue;
      }
      next = this.signal.aborted ? Promise.resolve(undefined) : handled(this.readNew());
      if (batch) await this.applyInPlace(batch.entries, batch.prepared);
    }
    const last = await next;
    if (last && last !== READ_FAILED) await this.applyInPlace(last.entries, last.prepared);
  }

  /**
   * Claims entries pending in the group for at least `minIdleMs` (0: all of them, on a takeover) and
   * applies them in id order; entries delivered `maxDeliveries` times already go to the dead letters
   * as poison. Returns how many entries it claimed.
   */
  async claimPending(minIdleMs: number): Promise<number> {
    const { config, client, consumer, stats } = this.ctx;
    const { maxDeliveries, batchSize } = config.worker;
    const group = config.consumerGroup;
    let start = '-';
    let claimedTotal = 0;
    for (;;) {
      const pending = (await client.xpending(
        this.stream,
        group,
        'IDLE',
        minIdleMs,
        start,
        '+',
        batchSize,
      )) as [string, string, number, number][];
      const poison = pending.filter((p) => p[3] >= maxDeliveries);
      if (poison.length > 0) {
        const moved = await deadLetterPoison(
          this.ctx,
          this.partition,
          poison.map(([id, , , deliveries]) => [id, deliveries] as const),
        );
        this.log.warn({ moved, maxDeliveries }, 'poison entries moved to the dead-letter stream');
      }
      const retry = pending.filter((p) => p[3] < maxDeliveries).map((p) => p[0]);
      if (retry.length > 0) {
        const claimed = (await client.xclaim(
          this.stream,
          group,
          consumer,
          minIdleMs,
          ...retry,
        )) as (StreamEntry | null)[];
        const live = claimed.filter((e): e is StreamEntry => e !== null && e[1] !== null);
        await this.recordClaimedGone(retry, live);
        if (live.length > 0) {
          stats.reclaimed += live.length;
          claimedTotal += live.length;
          await this.applyInPlace(live, undefined);
        }
      }
      const last = pending[pending.length - 1];
      if (pending.length < batchSize || !last) return claimedTotal;
      start = `(${last[0]}`;
    }
  }

  /**
   * XCLAIM leaves out (Redis 7) or answers nil for (6.2) pending entries deleted from the stream; it
   * also leaves out entries another consumer took meanwhile. Those of `asked` not claimed and no longer
   * in the stream are lost.
   */
  private async recordClaimedGone(asked: readonly string[], claimed: readonly StreamEntry[]): Promise<void> {
    if (claimed.length === asked.length) return;
    const got = new Set(claimed.map((e) => e[0]));
    const missing = asked.filter((id) => !got.has(id));
    const pipeline = this.ctx.client.pipeline();
    for (const id of missing) pipeline.xrange(this.stream, id, id);
    const replies = (await pipeline.exec()) ?? [];
    const gone = missing.filter((_, i) => {
      const [err, found] = replies[i] ?? [null, []];
      return !err && Array.isArray(found) && found.length === 0;
    });
    if (gone.length > 0) await this.recordLost(gone);
  }

  /** Applies every entry pending for this consumer, in id order. Returns how many there were. */
  private async applyOwnPending(): Promise<number> {
    let cursor = '0';
    let total = 0;
    while (!this.signal.aborted) {
      const entries = await this.retrying('read-pending', () => this.read(cursor, 0));
      if (entries === undefined || entries.length === 0) return total;
      total += entries.length;
      cursor = (entries[entries.length - 1] as StreamEntry)[0];
      await this.applyInPlace(entries, undefined);
    }
    return total;
  }

  /** One XREADGROUP of new entries, prepared ahead; READ_FAILED when it failed. */
  private async readNew(): Promise<Batch | undefined | typeof READ_FAILED> {
    try {
      this.readDropped = false;
      const entries = await this.read('>', this.ctx.config.worker.blockMs);
      this.ctx.failures.succeeded('read', this.partition);
      if (this.readDropped) return READ_FAILED; // these and any lost entries are read again, in order
      if (entries.length === 0) return undefined;
      let prepared: PreparedBatch | undefined;
      try {
        prepared = this.prepare(entries, await this.ctx.registry.partitionView(this.partition));
      } catch {
        prepared = undefined; // fails again, and is handled, in applyInPlace
      }
      return { entries, prepared };
    } catch (err) {
      if (StreamGroup.isMissing(err)) throw err; // the replica recreates the group
      this.ctx.failures.failed('read', this.partition, err);
      await sleep(1000, this.signal);
      return READ_FAILED;
    }
  }

  /**
   * XREADGROUP from `id` ('>' for new entries, else this consumer's pending ones after `id`). Entries
   * deleted from the stream while pending come back without fields: they are acknowledged (there is
   * nothing left to apply) and left out.
   */
  private async read(id: string, blockMs: number): Promise<StreamEntry[]> {
    const { config, consumer } = this.ctx;
    const args: (string | number)[] = ['GROUP', config.consumerGroup, consumer, 'COUNT', this.readCount()];
    if (blockMs > 0) args.push('BLOCK', blockMs);
    const reply = (await this.conn.xreadgroup(
      ...(args as ['GROUP', string, string]),
      'STREAMS',
      this.stream,
      id,
    )) as [string, (StreamEntry | [string, null])[]][] | null;
    const entries = reply?.[0]?.[1] ?? [];
    const gone = entries.filter((e) => e[1] === null).map((e) => e[0]);
    if (gone.length > 0) await this.recordLost(gone);
    return entries.filter((e): e is StreamEntry => e[1] !== null);
  }

  /**
   * Entries deleted from the stream while pending (XTRIM MAXLEN 0, XDEL) can never be applied: each
   * is acknowledged and dead-lettered (reason `trimmed`, its id as `entry`, no payload), in one
   * transaction, and counted (`tally.entries.lost`) and logged, so the loss is visible.
   */
  private async recordLost(ids: readonly string[]): Promise<void> {
    const { client, keys, config, stats } = this.ctx;
    const [sec, usec] = await client.time();
    const at = String(Number(sec) * 1000 + Math.floor(Number(usec) / 1000));
    const detail = `the entry was deleted from ${this.stream} (XTRIM or XDEL) while pending, before it was applied: its events are lost`;
    const tx = client.multi().xack(this.stream, config.consumerGroup, ...ids);
    for (const id of ids) {
      tx.xadd(
        keys.deadLetter(this.partition),
        '*',
        ...[
          'reason',
          'trimmed',
          'detail',
          detail,
          'entry',
          id,
          'index',
          '-1',
          'field',
          '',
          'payload',
          '',
          'at',
          at,
        ],
      );
    }
    await tx.exec();
    stats.deadLettered += ids.length;
    instruments.entriesLost.add(ids.length, { 'tally.partition': this.partition });
    this.log.error(
      { lost: ids.length, ids: ids.length > 20 ? [...ids.slice(0, 20), '...'] : ids },
      'entries deleted from the stream while pending: their events are lost (dead letters with reason trimmed)',
    );
  }

  private prepare(entries: readonly StreamEntry[], view: PartitionView): PreparedBatch {
    const { config } = this.ctx;
    const prepared = prepareBatch(entries, { config, view, partition: this.partition });
    if (entries.length > 0) {
      const perEntry = Math.max(1, (prepared.events + prepared.rejected) / entries.length);
      this.eventsPerEntry = 0.7 * this.eventsPerEntry + 0.3 * perEntry;
    }
    return prepared;
  }

  /**
   * Entries to read at once: `batchSize` events' worth. Batch entries of 100 events read 1000 at a time
   * would be 100,000 events (about 20 MB) in one reply and one prepared batch, stalling Redis on the
   * read and the worker on the decode, with nothing left to overlap.
   */
  private readCount(): number {
    const { batchSize } = this.ctx.config.worker;
    return Math.max(1, Math.min(batchSize, Math.round(batchSize / this.eventsPerEntry)));
  }

  /**
   * Applies entries, retrying in place until they are applied, or dead-lettered as poison, or the
   * consumer stops (then they stay pending for the next owner). Redis being unreachable is retried for
   * as long as it lasts; any other failure of a batch bisects it, and a single entry failing
   * `maxDeliveries` times is poison.
   */
  private async applyInPlace(entries: StreamEntry[], prepared: PreparedBatch | undefined): Promise<void> {
    const { maxDeliveries } = this.ctx.config.worker;
    let failures = 0;
    let delay = FIRST_RETRY_MS;
    for (;;) {
      let error: unknown;
      let transient = false;
      try {
        prepared ??= this.prepare(entries, await this.ctx.registry.partitionView(this.partition));
      } catch (err) {
        error = err;
        transient = isTransientRedisError(err);
      }
      if (prepared) {
        try {
          await applyPrepared(this.ctx, this.partition, entries.length, prepared);
          this.ctx.failures.succeeded('apply', this.partition);
          return;
        } catch (err) {
          if (err instanceof TallyStaleRegistryError) {
            // The meters changed: nothing of the refused calls was applied. Prepare again at the new version.
            this.log.info(
              { prepared: err.prepared, current: err.current },
              'meter registry changed under a batch: preparing it again at the new version',
            );
            this.ctx.registry.invalidate(this.partition);
            await this.ctx.registry.refresh().catch(() => undefined);
            prepared = undefined;
            continue;
          }
          // The group vanished under the batch (XGROUP DESTROY, FLUSHALL): nothing is wrong with the
          // entries, so no bisecting and no poison; the replica recreates the group and reads again
          // (dedup drops what was applied already).
          if (StreamGroup.isMissing(err)) throw err;
          error = err;
          transient = isTransientRedisError(err) || isOwnWrongType(err);
        }
      }
      this.ctx.failures.failed('apply', this.partition, error);
      if (!transient) failures++;
      if (!transient && entries.length > 1 && failures >= 2) {
        const mid = entries.length >> 1;
        this.log.warn(
          { entries: entries.length, err: error },
          'a batch keeps failing: bisecting it to find the entry that fails',
        );
        await this.applyInPlace(entries.slice(0, mid), undefined);
        await this.applyInPlace(entries.slice(mid), undefined);
        return;
      }
      if (!transient && failures >= maxDeliveries) {
        const [id] = entries[0] as StreamEntry;
        await recordError(this.ctx, this.partition, id, error);
        const moved = await this.retrying('dead-letter', () =>
          deadLetterPoison(this.ctx, this.partition, [[id, failures]]),
        );
        this.log.warn(
          { moved, entry: id, attempts: failures, err: error },
          'poison entries moved to the dead-letter stream',
        );
        return;
      }
      if (this.signal.aborted) return;
      await sleep(delay, this.signal);
      delay = Math.min(delay * 2, MAX_RETRY_MS);
    }
  }

  /** Runs a Redis operation until it succeeds or the consumer stops (undefined then). */
  private async retrying<T>(op: string, run: () => Promise<T>): Promise<T | undefined> {
    let delay = FIRST_RETRY_MS;
    while (!this.signal.aborted) {
      try {
        const result = await run();
        this.ctx.failures.succeeded(op, this.partition);
        return result;
      } catch (err) {
        if (StreamGroup.isMissing(err)) throw err;
        this.ctx.failures.failed(op, this.partition, err);
        await sleep(delay, this.signal);
        delay = Math.min(delay * 2, MAX_RETRY_MS);
      }
    }
    return undefined;
  }
}
