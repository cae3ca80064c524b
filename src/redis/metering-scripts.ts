/**
 * The typed layer over the metering scripts: one method per Lua script, which owns its KEYS (built by
 * TallyKeys for one partition, so every call touches one slot), its ARGV order and its reply type.
 * Nothing outside src/redis calls `runScript`. The entitlement scripts have theirs in
 * entitlement-scripts.ts.
 */
import { TallyStaleRegistryError } from '../errors/index.js';
import type { TallyKeys } from './keys.js';
import { runScript, type RedisClient } from './scripts.js';

/** What applyBatch and closeWindows need of `windows` in the config (one ARGV order for both). */
export interface WindowParams {
  readonly graceMs: number;
  readonly latePolicy: 'correct' | 'dead-letter';
  readonly retentionMs: number;
  readonly idleTimeoutMs: number;
}

export interface ApplyBatchParams {
  readonly group: string;
  readonly consumer: string;
  readonly windows: WindowParams;
  readonly generations: number;
  readonly bucketBits: number;
  /** The meter-registry version the call was prepared at. */
  readonly registryVersion: number;
}

export interface ApplyBatchReply {
  readonly applied: number;
  readonly duplicates: number;
  readonly deadLettered: number;
  readonly corrected: number;
}

export interface CloseWindowsReply {
  /** Windows whose close finished in this call (a big window takes several calls). */
  readonly windowsClosed: number;
  readonly rollups: number;
  readonly corrections: number;
  /** A window close in progress, more due windows or corrections remain after this call's budget. */
  readonly more: boolean;
  /** The close watermark after this call (epoch ms). */
  readonly closedThrough: number;
  /** False when the partition's stream or consumer group does not exist (yet, or any more). */
  readonly groupExists: boolean;
}

const num = (v: unknown): number => Number(v ?? 0);

export class MeteringScripts {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: TallyKeys,
  ) {}

  /**
   * applyBatch.lua: dedup, aggregate and acknowledge entries of one partition (a long entry over
   * several calls), atomically per call. Throws TallyStaleRegistryError, having applied nothing, when
   * the partition is at another registry version than the call was prepared at.
   */
  async applyBatch(
    partition: number,
    p: ApplyBatchParams,
    records: Buffer,
    fingerprints: Buffer,
  ): Promise<ApplyBatchReply> {
    const k = this.keys;
    const reply = (await runScript(
      this.client,
      'applyBatch',
      [
        k.events(partition),
        k.deadLetter(partition),
        k.state(partition),
        k.windowIndex(partition),
        k.corrections(partition),
        k.dedupEpochs(partition),
        k.partitionBase(partition),
        k.partitionRegistry(partition),
      ],
      [
        p.group,
        p.windows.graceMs,
        p.windows.latePolicy,
        p.windows.retentionMs,
        p.generations,
        p.bucketBits,
        p.consumer,
        records,
        fingerprints,
        p.registryVersion,
      ],
    )) as unknown[];
    if (reply[0] === 'stale')
      throw new TallyStaleRegistryError(partition, p.registryVersion, Number(reply[1] || 0));
    const [applied, duplicates, deadLettered, corrected] = reply;
    return {
      applied: num(applied),
      duplicates: num(duplicates),
      deadLettered: num(deadLettered),
      corrected: num(corrected),
    };
  }

  /**
   * closeWindows.lua: closes due windows and emits pending corrections into the outbox, in one bounded
   * step of about `maxRollups` rollups (a bigger window goes on in the next calls).
   */
  async closeWindows(
    partition: number,
    group: string,
    windows: WindowParams,
    maxRollups: number,
    maxCorrections: number,
  ): Promise<CloseWindowsReply> {
    const k = this.keys;
    const [w, r, c, more, closedThrough, status] = (await runScript(
      this.client,
      'closeWindows',
      [
        k.events(partition),
        k.state(partition),
        k.windowIndex(partition),
        k.corrections(partition),
        k.outbox(partition),
        k.partitionBase(partition),
      ],
      [group, windows.graceMs, windows.idleTimeoutMs, windows.retentionMs, maxRollups, maxCorrections],
    )) as [number, number, number, number, string, string];
    return {
      windowsClosed: w,
      rollups: r,
      corrections: c,
      more: more === 1 && status === 'ok',
      closedThrough: Number(closedThrough),
      groupExists: status === 'ok',
    };
  }

  /** deadLetterEntries.lua: moves entries still pending to the dead-letter stream as poison. Returns how many moved. */
  async deadLetterEntries(
    partition: number,
    group: string,
    entries: readonly (readonly [id: string, deliveries: number])[],
  ): Promise<number> {
    const k = this.keys;
    return num(
      await runScript(
        this.client,
        'deadLetterEntries',
        [k.events(partition), k.deadLetter(partition), k.errors(partition)],
        [group, ...entries.flatMap(([id, deliveries]) => [id, deliveries])],
      ),
    );
  }

  /** sweepDedup.lua: deletes dedup buckets of epochs past the horizon, at most `maxKeys` per call. */
  async sweepDedup(
    partition: number,
    currentEpoch: number,
    generations: number,
    maxKeys: number,
  ): Promise<{ deleted: number; more: boolean }> {
    const [deleted, , more] = (await runScript(
      this.client,
      'sweepDedup',
      [this.keys.dedupEpochs(partition), this.keys.partitionBase(partition)],
      [currentEpoch, generations, maxKeys],
    )) as [number, number, number];
    return { deleted, more: more === 1 };
  }

  /** trimStream.lua: trims entries every group has applied, older than `retainAckedMs`, or beyond `maxLength`. */
  async trimStream(
    partition: number,
    group: string,
    retainAckedMs: number,
    maxLength: number,
  ): Promise<void> {
    await runScript(
      this.client,
      'trimStream',
      [this.keys.events(partition)],
      [group, retainAckedMs, maxLength],
    );
  }

  /** renewLease.lua: extends a partition lease this consumer holds (`ttlMs` 0 releases it). True if held. */
  async renewLease(partition: number, consumer: string, ttlMs: number): Promise<boolean> {
    return (
      (await runScript(this.client, 'renewLease', [this.keys.lease(partition)], [consumer, ttlMs])) === 1
    );
  }
}
