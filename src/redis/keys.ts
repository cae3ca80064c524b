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

  /** Hash: streamTime (largest event time applied), closedThrough (close watermark), guardId/guardMs (pending guard). */
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

  /**
   * Stream of rollups written atomically with window closing, relayed to BullMQ: an entry per page of
   * a window's close or per correction (closeWindows.lua). `:v2` since pages: a relay of an older
   * version reads only legacyOutbox, so it never misreads a page during a rolling upgrade.
   */
  outbox(partition: number): string {
    return `${this.partitionBase(partition)}outbox:v2`;
  }

  /** The outbox of versions before pages (one rollup per entry): still relayed, never written. */
  legacyOutbox(partition: number): string {
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

  /**
   * A key that never holds data: the start-up permission probe (redis/access.ts) reads and
   * conditionally writes it, so the Redis user's key patterns are checked against Tally's prefix.
   */
  probe(): string {
    return `${this.prefix}:probe`;
  }

  /** The same probe key under a BullMQ queue's prefix (`<queuePrefix>:<queue>:probe`). */
  static queueProbe(queuePrefix: string, queue: string): string {
    return `${queuePrefix}:${queue}:probe`;
  }

  /**
   * Hash of the meter registry: `version`, `partitions`, and per meter its definition, info,
   * activation version, creation and deletion (registerMeters.lua). Not per partition: single-key
   * scripts only.
   */
  registry(): string {
    return `${this.prefix}:registry`;
  }

  /** Hash process name → JSON {role, version, at}: which registry version each running process follows. */
  registryFollowers(): string {
    return `${this.prefix}:registry:followers`;
  }

  /** Hash: the registry `version` this partition is at, and each active meter's `from:<slug>` entry id. */
  partitionRegistry(partition: number): string {
    return `${this.partitionBase(partition)}registry`;
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

  // Entitlements. A subject's entitlement keys live in its home partition's slot (`{p<i>}`), beside the
  // window hashes of its usage, so one script can read both (docs/entitlements.md, "Where keys live").
  // checkEntitlement.lua derives window, contribution and group-set keys from partitionBase(p) the
  // same way as below.

  /** Hash of a subject's entitlements: `ver`, `e:<feature>` (entitlement JSON), `g:<feature>:<id>` (grants). */
  entitlementDefinition(partition: number, subject: string): string {
    return `${this.partitionBase(partition)}ent:def:${subject}`;
  }

  /** Hash of a subject's usage of a metered feature: `since`, `p:<periodStart>`, `b:<periodStart>:<t>`, `n:<periodStart>:<id>`. */
  entitlementUsage(partition: number, feature: string, subject: string): string {
    return `${this.partitionBase(partition)}ent:use:${feature}:${subject}`;
  }

  /** Hash of the rollup values applied to a feature's usage, for windows starting on one UTC day: `<windowStart>|<tail>` → `rev|value|periodStart`. */
  entitlementContributions(partition: number, feature: string, dayStart: number, subject: string): string {
    return `${this.partitionBase(partition)}ent:con:${feature}:${dayStart}:${subject}`;
  }

  /** Set of group-by tails (JSON arrays without the subject) seen in a meter's rollups in the partition. */
  entitlementGroups(partition: number, meter: string): string {
    return `${this.partitionBase(partition)}ent:tails:${meter}`;
  }

  /** Set of group-by tails seen in a meter's rollups of one subject. */
  entitlementSubjectGroups(partition: number, meter: string, subject: string): string {
    return `${this.entitlementGroups(partition, meter)}:${subject}`;
  }

  /** Sorted set `<feature>\n<subject>` → end of the current usage period: resets due. */
  entitlementResets(partition: number): string {
    return `${this.partitionBase(partition)}ent:resets`;
  }

  /** Stream of entitlement notifications written atomically with the usage they report, relayed to BullMQ. */
  entitlementOutbox(partition: number): string {
    return `${this.partitionBase(partition)}ent:outbox`;
  }

  /** Hash of features created through the API (key → JSON). Not per partition: single-key commands only. */
  entitlementFeatures(): string {
    return `${this.prefix}:ent:features`;
  }

  /**
   * Hash of the entitlement definitions (config features and defaults) the evaluators apply:
   * `ver`, `fp` (fingerprint), `doc` (JSON), `at` (published, ms), `by` (publisher). Written at evaluator
   * start (publishEntitlementDefinitions.lua), read by checkers. Not per partition: single-key commands only.
   */
  entitlementDefinitions(): string {
    return `${this.prefix}:ent:definitions`;
  }

  /**
   * The notification keys (channels, rules, events, deliveries) share the hash tag `{notify}`, so one
   * script can touch them all on Cluster. `kind` is one of the names listed in NotificationKeyKinds.
   */
  notification(kind: NotificationKeyKind): string {
    return `${this.prefix}:{notify}:${kind}`;
  }
}

/**
 * The notification keys: `channels`, `rules` and `events` are hashes id → JSON; `index` a sorted set of
 * event ids by creation time; `deliveries` a hash `<channelId>\n<eventId>` → delivery status JSON; `due`
 * a sorted set of those members by the time their next attempt is due (a claimed one: its lease end);
 * `leases` a hash member → the token of the replica holding the attempt.
 */
export const NotificationKeyKinds = [
  'channels',
  'rules',
  'events',
  'index',
  'deliveries',
  'due',
  'leases',
] as const;
export type NotificationKeyKind = (typeof NotificationKeyKinds)[number];

/** The consumer group the relay uses on each partition's outbox stream. */
export const RELAY_GROUP = 'tally-relay';
