import type { Logger } from 'pino';
import type { MeteringScripts, RedisClient, TallyKeys } from '../redis/index.js';

export interface LeaseChanges {
  readonly acquired: number[];
  readonly released: number[];
  readonly lost: number[];
}

/**
 * How many partitions the replica of rank `rank` (0-based, in name order) among `replicas` live ones
 * should hold: the first `partitions mod replicas` get one more, so the shares add up to `partitions`.
 */
export function leaseShare(partitions: number, replicas: number, rank: number): number {
  return Math.floor(partitions / replicas) + (rank < partitions % replicas ? 1 : 0);
}

/** Where a replica starts looking for free partitions, so replicas do not all race for partition 0. */
export function searchOffset(partitions: number, replicas: number, rank: number): number {
  return (rank * Math.ceil(partitions / replicas)) % partitions;
}

/**
 * Spreads partitions over the live replicas with leases in Redis, without any coordinator outside it.
 *
 * Each replica heartbeats into the replica registry (a sorted set scored by expiry) and computes its
 * share from the live replicas sorted by name: with P partitions and R replicas, the first P mod R get
 * ⌈P/R⌉ and the rest ⌊P/R⌋. It releases leases above its share and takes free ones (SET NX PX) below it.
 * A replica that dies stops renewing; its leases expire after `ttlMs` and the others take them over.
 * Ownership decides who reads a partition's new entries; correctness never depends on it (every
 * atomic step is safe under concurrent replicas), so a short overlap during a handover is harmless.
 */
export class PartitionLeases {
  private readonly owned = new Set<number>();

  constructor(
    private readonly client: RedisClient,
    private readonly scripts: MeteringScripts,
    private readonly keys: TallyKeys,
    private readonly consumer: string,
    private readonly partitions: number,
    private readonly ttlMs: number,
    private readonly logger: Logger,
    /** Aborted when the replica shuts down: from then on no lease is acquired (a tick in flight stops short). */
    private readonly stopping?: AbortSignal,
  ) {}

  get held(): ReadonlySet<number> {
    return this.owned;
  }

  /** Heartbeat, renew, then rebalance towards this replica's share. */
  async tick(now = Date.now()): Promise<LeaseChanges> {
    const registry = this.keys.replicas();
    await this.client.zadd(registry, now + this.ttlMs, this.consumer);
    await this.client.zremrangebyscore(registry, '-inf', now);
    const live = await this.client.zrange(registry, 0, -1);
    const rank = Math.max(0, live.sort().indexOf(this.consumer));
    const replicas = Math.max(1, live.length);
    const share = leaseShare(this.partitions, replicas, rank);

    const lost: number[] = [];
    for (const p of [...this.owned]) {
      if (!(await this.scripts.renewLease(p, this.consumer, this.ttlMs))) {
        this.owned.delete(p);
        lost.push(p);
      }
    }
    const released: number[] = [];
    for (const p of [...this.owned].sort((a, b) => b - a)) {
      if (this.owned.size <= share) break;
      this.owned.delete(p);
      released.push(p);
    }
    const acquired: number[] = [];
    const offset = searchOffset(this.partitions, replicas, rank);
    for (let i = 0; i < this.partitions && this.owned.size < share; i++) {
      const p = (offset + i) % this.partitions;
      if (this.owned.has(p) || released.includes(p)) continue;
      // A tick can wait long on Redis (an outage): one that resumes after shutdown began takes nothing.
      if (this.stopping?.aborted) break;
      if ((await this.client.set(this.keys.lease(p), this.consumer, 'PX', this.ttlMs, 'NX')) === 'OK') {
        this.owned.add(p);
        acquired.push(p);
      }
    }
    if (acquired.length || released.length || lost.length) {
      this.logger.info(
        { acquired, released, lost, held: [...this.owned].sort((a, b) => a - b), replicas, share },
        'partition leases changed',
      );
    }
    return { acquired, released, lost };
  }

  /** Gives a lease back (only if still held by this replica). */
  async release(partition: number): Promise<void> {
    this.owned.delete(partition);
    await this.scripts.renewLease(partition, this.consumer, 0);
  }

  /** Leaves the registry and gives back every lease; for a clean shutdown. */
  async releaseAll(): Promise<void> {
    for (const p of [...this.owned]) await this.release(p);
    await this.client.zrem(this.keys.replicas(), this.consumer);
  }
}
