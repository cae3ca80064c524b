/**
 * The one place Redis key names are built. Every key of a partition carries the partition's hash tag
 * `{p<i>}`, so each atomic step (one Lua script) touches a single Cluster slot.
 *
 * Per-window and per-dedup-bucket keys are derived inside the Lua scripts from `partitionBase(p)`
 * (as BullMQ derives job keys from its queue prefix): the set of windows or buckets a batch touches is
 * only known while it runs. The derivations there (`w:<meter>:<start>`, `w:<meter>:<start>:u`,
 * `d:<epoch>:<bucket>`) must stay identical to `window()`, `uniques()` and `dedupBucket()` below.
 */
export class TallyKeys {
  constructor(readonly prefix: string) {}

  /** `{p<i>}`: the hash tag shared by every key of partition i. */
  static tag(partition: number): string {
    return `{p${partition}}`;
  }

  /** `<prefix>:{p<i>}:` — the base from which scripts derive window and dedup keys. */
  partitionBase(partition: number): string {
    return `${this.prefix}:${TallyKeys.tag(partition)}:`;
  }

  /** The partition's event stream (public contract). */
  events(partition: number): string {
    return `${this.partitionBase(partition)}events`;
  }

  /** Dead letters: invalid, poison and late events with a reason (public contract). */
  deadLetter(partition: number): string {
    return `${this.partitionBase(partition)}dead-letter`;
  }

  /** Hash: streamTime (largest event time applied) and closedThrough (close watermark). */
  state(partition: number): string {
    return `${this.partitionBase(partition)}state`;
  }

  /** Sorted set of open windows (`meter|agg|start|end`), scored by close point (end + grace). */
  windowIndex(partition: number): string {
    return `${this.partitionBase(partition)}windows`;
  }

  /** Set of closed (window, group) pairs changed by late events, awaiting a correction rollup. */
  corrections(partition: number): string {
    return `${this.partitionBase(partition)}corrections`;
  }

  /** Stream of rollups written atomically with window closing, relayed to BullMQ. */
  outbox(partition: number): string {
    return `${this.partitionBase(partition)}outbox`;
  }

  /** String: the consumer name of the replica holding this partition's lease (expires unless renewed). */
  lease(partition: number): string {
    return `${this.partitionBase(partition)}lease`;
  }

  /**
   * Sorted set of live worker replicas (member: consumer name, score: heartbeat expiry in epoch ms).
   * Not per partition: it is only ever touched by single-key commands.
   */
  replicas(): string {
    return `${this.prefix}:replicas`;
  }

  /** Hash entry id → last error of a batch that failed with it (for poison dead letters). */
  errors(partition: number): string {
    return `${this.partitionBase(partition)}errors`;
  }

  /** Hash epoch → bucket bits of the dedup epochs that exist. */
  dedupEpochs(partition: number): string {
    return `${this.partitionBase(partition)}dedup-epochs`;
  }

  /** Hash holding one window's aggregates: fields `c:<group>`, `v:<group>`, `t:<group>`, `r:<group>`. */
  window(partition: number, meter: string, windowStart: number): string {
    return `${this.partitionBase(partition)}w:${meter}:${windowStart}`;
  }

  /** Hash of the distinct values seen by a UNIQUE_COUNT window: fields `<group>\n<value>`. */
  uniques(partition: number, meter: string, windowStart: number): string {
    return `${this.window(partition, meter, windowStart)}:u`;
  }

  /** Hash of remembered event fingerprints of one dedup epoch and bucket. */
  dedupBucket(partition: number, epoch: number, bucket: number): string {
    return `${this.partitionBase(partition)}d:${epoch}:${bucket}`;
  }
}

/** The consumer group the relay uses on each partition's outbox stream. */
export const RELAY_GROUP = 'tally-relay';
