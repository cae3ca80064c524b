/**
 * Snapshots of a partition's event stream and its consumer group, for tests that check what trimming,
 * reclaiming and fault recovery leave behind. Read in one MULTI, so the figures are consistent.
 */
import type { Cluster, Redis } from 'ioredis';
import { toRecord } from './tally.js';

export interface StreamSnapshot {
  length: number;
  /** Id of the oldest entry still in the stream, or undefined when it is empty. */
  firstId: string | undefined;
  lastGeneratedId: string;
  /** The group's last delivered id ('0-0' before the first read). */
  lastDelivered: string;
  pending: number;
  /** Smallest pending id, or undefined when nothing is pending. */
  minPending: string | undefined;
  /** Entries ever delivered to the group (null when Redis cannot tell). */
  entriesRead: number | null;
  /** Entries ever added to the stream (trimmed ones included). */
  entriesAdded: number;
}

/** Compares stream ids ('ms-seq'): negative, zero or positive like a comparator. */
export function compareIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split('-').map(BigInt);
  const [bm = 0n, bs = 0n] = b.split('-').map(BigInt);
  return am === bm ? Number(as - bs) : am < bm ? -1 : 1;
}

/** The stream and its group `group`, read atomically; undefined when the stream or the group does not exist. */
export async function snapshotStream(
  redis: Redis | Cluster,
  stream: string,
  group: string,
): Promise<StreamSnapshot | undefined> {
  const replies = await redis
    .multi()
    .xinfo('STREAM', stream)
    .xinfo('GROUPS', stream)
    .xpending(stream, group)
    .exec();
  if (!replies || replies.some(([err]) => err)) return undefined;
  const [[, rawStream], [, rawGroups], [, rawPending]] = replies as [unknown, unknown][] as [
    [null, unknown[]],
    [null, unknown[][]],
    [null, unknown[]],
  ];
  const info = toRecord(rawStream) as unknown as Record<string, unknown>;
  const g = rawGroups
    .map((x) => toRecord(x) as unknown as Record<string, unknown>)
    .find((x) => x.name === group);
  if (!g) return undefined;
  const first = info['first-entry'] as [string, string[]] | null;
  return {
    length: Number(info.length),
    firstId: first?.[0],
    lastGeneratedId: String(info['last-generated-id']),
    lastDelivered: String(g['last-delivered-id']),
    pending: Number(g.pending),
    minPending: (rawPending[1] as string | null) ?? undefined,
    entriesRead: g['entries-read'] === null ? null : Number(g['entries-read']),
    entriesAdded: Number(info['entries-added']),
  };
}
