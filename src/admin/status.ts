import type { TallyConfig } from '../config/index.js';
import { TallyKeys, type RedisClient } from '../redis/index.js';
import { registryStatus, unreadStreams, type RegistryStatus, type UnreadStream } from './registry-status.js';
import {
  parseConsumers,
  parseGroupInfo,
  parsePendingEntries,
  parsePendingSummary,
  parseScored,
  parseTime,
  streamIdMs,
  type ConsumerInfo,
  type GroupInfo,
} from './replies.js';

export interface PendingStatus {
  /** Entries delivered to a consumer and not yet applied (acknowledged). */
  readonly count: number;
  readonly oldestId: string | null;
  /** Time since the oldest pending entry entered the stream (from its id). */
  readonly oldestAgeMs: number | null;
  /** Time since the oldest pending entry was last delivered (it is reclaimed after `worker.claimIdle`). */
  readonly oldestIdleMs: number | null;
  readonly oldestDeliveries: number | null;
  readonly oldestConsumer: string | null;
}

export interface OpenWindow {
  readonly meter: string;
  readonly aggregation: string;
  readonly start: number;
  readonly end: number;
  /** Close point (end + grace), epoch ms of event time. */
  readonly closesAt: number;
}

export interface PartitionStatus {
  readonly partition: number;
  /** XLEN of the event stream (applied entries stay until trimmed). */
  readonly streamLength: number;
  /** The consumer group on the stream; null when it does not exist (no worker started it, or Redis lost its data). */
  readonly group: GroupInfo | null;
  readonly pending: PendingStatus;
  /** Consumers known to the group (gone ones stay listed until deleted with XGROUP DELCONSUMER). */
  readonly consumers: readonly ConsumerStatus[];
  /** The replica holding the partition's lease, and the lease's remaining time; nulls when nobody holds it. */
  readonly lease: { readonly owner: string | null; readonly ttlMs: number | null };
  readonly windows: { readonly open: number; readonly oldest: OpenWindow | null };
  /** Close watermark (event time): windows closing at or before it are closed. */
  readonly closedThrough: number | null;
  /** Largest event time applied. */
  readonly streamTime: number | null;
  readonly deadLetters: number;
  /** Rollups written by window closing and not yet relayed to BullMQ. */
  readonly outbox: number;
  /** Closed (window, group) pairs changed by late events, awaiting a correction rollup. */
  readonly correctionsPending: number;
  /** Keys that hold the wrong type of value (WRONGTYPE): their figures read as empty, and the partition stalls. */
  readonly wrongTypeKeys: readonly string[];
}

export interface ConsumerStatus extends ConsumerInfo {
  /** Holds the partition's lease. */
  readonly leaseOwner: boolean;
  /**
   * Most likely gone: nothing pending, idle for longer than `worker.claimIdle`, not holding the lease and
   * not a live replica of the registry. Harmless (a gone consumer's pending entries are reclaimed anyway).
   */
  readonly stale: boolean;
}

export interface ReplicaStatus {
  readonly name: string;
  /** Heartbeat expiry, epoch ms; null for a lease holder missing from the registry. */
  readonly expiresAt: number | null;
  /** Heartbeat not expired; null when not in the registry (an older worker holding a lease). */
  readonly live: boolean | null;
  /** Partitions whose lease it holds. */
  readonly partitions: readonly number[];
}

export interface TallyStatus {
  readonly prefix: string;
  readonly consumerGroup: string;
  readonly partitionCount: number;
  /** Whether the config spreads partitions with leases (else lease figures are expected to be empty). */
  readonly leases: boolean;
  /** When the figures were read, by Redis's clock (epoch ms). */
  readonly at: number;
  readonly partitions: readonly PartitionStatus[];
  /** From the replica registry; empty when no replica registered (no leased workers, or older workers). */
  readonly replicas: readonly ReplicaStatus[];
  /** The meter registry: its version, meters, and the version each running process follows. */
  readonly registry: RegistryStatus;
  /** Event streams of partitions beyond the partition count: nobody reads them. */
  readonly unreadStreams: readonly UnreadStream[];
  /** Things an operator should look at, one sentence each. */
  readonly warnings: readonly string[];
}

/** Partitions read at once (one pipeline each). */
const PARALLEL_PARTITIONS = 16;

type PipelineResult = [Error | null, unknown][];

/** A missing stream or group: reported as such, not as a failure. */
function isMissing(err: Error | null): boolean {
  return err !== null && /NOGROUP|no such key/i.test(err.message);
}

/** A key holding another type than Tally writes there (a string at `{p2}:state`, ...). */
function isWrongType(err: Error | null): boolean {
  return err !== null && err.message.startsWith('WRONGTYPE');
}

function reply(results: PipelineResult, i: number, what: string): unknown {
  const [err, value] = results[i] ?? [new Error('no reply'), null];
  if (err && !isMissing(err) && !isWrongType(err)) throw new Error(`${what}: ${err.message}`, { cause: err });
  return err ? null : value;
}

function parseWindowMember(member: string, closesAt: number): OpenWindow | null {
  // `meter|agg|start|end` (closeWindows.lua); meter slugs contain no '|'.
  const [meter, aggregation, start, end] = member.split('|');
  if (meter === undefined || aggregation === undefined) return null;
  return { meter, aggregation, start: Number(start), end: Number(end), closesAt };
}

function intOrNull(value: unknown): number | null {
  if (value === null || value === undefined || value === '') return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

interface PartitionContext {
  readonly keys: TallyKeys;
  readonly group: string;
  readonly now: number;
  readonly claimIdleMs: number;
  /** Consumer names with a live heartbeat in the replica registry. */
  readonly live: ReadonlySet<string>;
}

async function partitionStatus(
  client: RedisClient,
  ctx: PartitionContext,
  p: number,
): Promise<PartitionStatus> {
  const { keys, group, now } = ctx;
  const events = keys.events(p);
  const lease = keys.lease(p);
  // Every key here carries the partition's hash tag, so the pipeline stays in one Cluster slot; and
  // each command is single-key (XINFO has no key position for ioredis, but rides with the others).
  const results = await client
    .pipeline()
    .xlen(events)
    .xinfo('GROUPS', events)
    .xpending(events, group)
    .xpending(events, group, '-', '+', 1)
    .xinfo('CONSUMERS', events, group)
    .get(lease)
    .pttl(lease)
    .zcard(keys.windowIndex(p))
    .zrange(keys.windowIndex(p), 0, 0, 'WITHSCORES')
    .hmget(keys.state(p), 'streamTime', 'closedThrough')
    .xlen(keys.deadLetter(p))
    .xlen(keys.outbox(p))
    .scard(keys.corrections(p))
    .xlen(keys.legacyOutbox(p))
    .exec();
  if (!results) throw new Error(`partition ${p}: the status pipeline was not executed`);
  const r = (i: number, what: string) => reply(results, i, `partition ${p} ${what}`);
  // The key each command above read, in order: a wrong type is reported by name, not thrown.
  const read = [
    events,
    events,
    events,
    events,
    events,
    lease,
    lease,
    keys.windowIndex(p),
    keys.windowIndex(p),
  ];
  read.push(keys.state(p), keys.deadLetter(p), keys.outbox(p), keys.corrections(p), keys.legacyOutbox(p));
  const wrongTypeKeys = [...new Set(read.filter((_, i) => isWrongType(results[i]?.[0] ?? null)))];

  const groupInfo = parseGroupInfo(r(1, 'XINFO GROUPS'), group);
  const summary = parsePendingSummary(r(2, 'XPENDING'));
  const [oldest] = parsePendingEntries(r(3, 'XPENDING - +'));
  const owner = r(5, 'GET lease');
  const ttl = intOrNull(r(6, 'PTTL lease'));
  const ownerName = typeof owner === 'string' ? owner : null;
  const [first] = parseScored(r(8, 'ZRANGE windows'));
  const [streamTime, closedThrough] = (r(9, 'HMGET state') as unknown[] | null) ?? [];
  const oldestMs = streamIdMs(summary.minId);
  return {
    partition: p,
    streamLength: intOrNull(r(0, 'XLEN events')) ?? 0,
    group: groupInfo,
    pending: {
      count: summary.count,
      oldestId: summary.minId,
      oldestAgeMs: oldestMs === null ? null : Math.max(0, now - oldestMs),
      oldestIdleMs: oldest?.idleMs ?? null,
      oldestDeliveries: oldest?.deliveries ?? null,
      oldestConsumer: oldest?.consumer ?? null,
    },
    consumers: parseConsumers(r(4, 'XINFO CONSUMERS')).map((c) => ({
      ...c,
      leaseOwner: c.name === ownerName,
      stale: c.name !== ownerName && c.pending === 0 && c.idleMs > ctx.claimIdleMs && !ctx.live.has(c.name),
    })),
    // PTTL: -2 no key, -1 no expiry (never written so by Tally; shown as null).
    lease: { owner: ownerName, ttlMs: ownerName !== null && ttl !== null && ttl >= 0 ? ttl : null },
    windows: {
      open: intOrNull(r(7, 'ZCARD windows')) ?? 0,
      oldest: first ? parseWindowMember(first[0], first[1]) : null,
    },
    streamTime: intOrNull(streamTime),
    closedThrough: intOrNull(closedThrough),
    deadLetters: intOrNull(r(10, 'XLEN dead-letter')) ?? 0,
    outbox: (intOrNull(r(11, 'XLEN outbox')) ?? 0) + (intOrNull(r(13, 'XLEN legacy outbox')) ?? 0),
    correctionsPending: intOrNull(r(12, 'SCARD corrections')) ?? 0,
    wrongTypeKeys,
  };
}

function fmtMs(ms: number): string {
  return ms < 10_000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

/** Sentences about what looks wrong (pure: from the figures and the config). */
export function statusWarnings(
  status: Omit<TallyStatus, 'warnings'>,
  config: Pick<TallyConfig, 'consumerGroup' | 'worker'>,
): string[] {
  const out: string[] = [];
  for (const s of status.partitions) {
    const waiting = (s.group?.lag ?? 0) + s.pending.count;
    if (s.group === null) {
      out.push(
        `partition ${s.partition}: consumer group ${JSON.stringify(config.consumerGroup)} does not exist ` +
          '(no worker has started on it yet, or Redis lost its data)',
      );
    } else if (status.leases && s.lease.owner === null && waiting > 0) {
      out.push(`partition ${s.partition}: ${waiting} entries waiting and no replica holds its lease`);
    } else if (!status.leases && s.consumers.length === 0 && waiting > 0) {
      out.push(`partition ${s.partition}: ${waiting} entries waiting and no consumer has ever read it`);
    }
    if (s.pending.oldestIdleMs !== null && s.pending.oldestIdleMs > 3 * config.worker.claimIdleMs) {
      out.push(
        `partition ${s.partition}: entry ${s.pending.oldestId} pending and idle for ${fmtMs(s.pending.oldestIdleMs)} ` +
          `(reclaimed after ${fmtMs(config.worker.claimIdleMs)}): is a worker running its maintenance loop?`,
      );
    }
    for (const key of s.wrongTypeKeys)
      out.push(
        `partition ${s.partition}: key ${key} holds the wrong type of value (WRONGTYPE): the partition ` +
          'stalls until it is deleted or renamed (see what it holds with TYPE and DUMP first)',
      );
    if (s.deadLetters > 0)
      out.push(`partition ${s.partition}: ${s.deadLetters} dead letters (tally dead-letter list)`);
  }
  const stale = status.replicas.filter((r) => r.live === false);
  if (stale.length > 0)
    out.push(`replica registry: ${stale.map((r) => r.name).join(', ')} stopped heartbeating`);
  const reg = status.registry;
  if (reg.partitions !== null && reg.partitions !== status.partitionCount)
    out.push(
      `this config says ${status.partitionCount} partitions, the registry ${reg.partitions}: processes with this config refuse to start`,
    );
  const lagging = reg.processes.filter((p) => p.version < reg.version);
  if (lagging.length > 0)
    out.push(
      `${lagging.map((p) => `${p.name} (${p.role}, v${p.version})`).join(', ')} not yet at registry v${reg.version} (they follow within seconds)`,
    );
  for (const u of status.unreadStreams)
    out.push(
      `${u.key}: ${u.length} entries in a partition beyond the ${status.partitionCount} configured, which no worker reads (a producer with another partition count?)`,
    );
  return out;
}

/**
 * A snapshot of every partition's figures and of the replica registry, for operators (`tally status`).
 * Read-only. Uses single-key commands only, pipelined per partition (one Cluster slot each), so it
 * works on one Redis and on Redis Cluster alike. Each partition is read in one round trip (a
 * pipeline, not a transaction), partitions at slightly different moments: the snapshot is not
 * atomic. Lease keys and the registry may be absent (leases off, or workers that predate them):
 * their figures are then empty.
 */
export async function status(client: RedisClient, config: TallyConfig): Promise<TallyStatus> {
  const keys = new TallyKeys(config.prefix);
  const now = parseTime(await client.time()) ?? Date.now();
  const registry = parseScored(await client.zrange(keys.replicas(), 0, -1, 'WITHSCORES'));
  const ctx: PartitionContext = {
    keys,
    group: config.consumerGroup,
    now,
    claimIdleMs: config.worker.claimIdleMs,
    live: new Set(registry.filter(([, expiresAt]) => expiresAt > now).map(([name]) => name)),
  };
  const partitions: PartitionStatus[] = [];
  for (let from = 0; from < config.partitions; from += PARALLEL_PARTITIONS) {
    const batch = Array.from(
      { length: Math.min(PARALLEL_PARTITIONS, config.partitions - from) },
      (_, i) => from + i,
    );
    partitions.push(...(await Promise.all(batch.map((p) => partitionStatus(client, ctx, p)))));
  }
  const held = new Map<string, number[]>();
  for (const s of partitions) {
    if (s.lease.owner === null) continue;
    const list = held.get(s.lease.owner) ?? [];
    list.push(s.partition);
    held.set(s.lease.owner, list);
  }
  const replicas: ReplicaStatus[] = registry.map(([name, expiresAt]) => ({
    name,
    expiresAt,
    live: expiresAt > now,
    partitions: held.get(name) ?? [],
  }));
  // A lease holder missing from the registry (registry trimmed, or an older worker): list it anyway.
  for (const [name, ps] of held) {
    if (!registry.some(([n]) => n === name))
      replicas.push({ name, expiresAt: null, live: null, partitions: ps });
  }
  const base = {
    prefix: config.prefix,
    consumerGroup: config.consumerGroup,
    partitionCount: config.partitions,
    leases: config.worker.leases,
    at: now,
    partitions,
    replicas,
    registry: await registryStatus(client, keys, now),
    unreadStreams: await unreadStreams(client, keys, Math.max(config.partitions, 0)),
  };
  return { ...base, warnings: statusWarnings(base, config) };
}

export type { RegistryProcess, RegistryStatus, UnreadStream } from './registry-status.js';
