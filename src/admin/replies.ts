/**
 * Pure parsers of the Redis replies `status()` reads (RESP2 as ioredis returns them). Fields Redis
 * versions add or leave out (e.g. `lag`/`entries-read` since 7.0, `inactive` since 7.2) come out as null.
 */

function record(flat: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!Array.isArray(flat)) return out;
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}

function num(value: unknown): number | null {
  if (value === null || value === undefined || value === '') return null;
  const n = typeof value === 'number' ? value : Number(value);
  return Number.isFinite(n) ? n : null;
}

function str(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (Buffer.isBuffer(value)) return value.toString();
  return null;
}

/** The millisecond part of a stream id (`<ms>-<seq>`), or null. */
export function streamIdMs(id: string | null | undefined): number | null {
  if (!id) return null;
  const dash = id.indexOf('-');
  const ms = Number(dash >= 0 ? id.slice(0, dash) : id);
  return Number.isSafeInteger(ms) ? ms : null;
}

export interface GroupInfo {
  readonly pending: number;
  /** Entries not yet delivered to the group (XINFO GROUPS `lag`); null when Redis cannot tell. */
  readonly lag: number | null;
  readonly entriesRead: number | null;
  readonly lastDeliveredId: string | null;
  readonly consumers: number;
}

/** One group of an `XINFO GROUPS` reply, or null when the group is not there. */
export function parseGroupInfo(reply: unknown, group: string): GroupInfo | null {
  if (!Array.isArray(reply)) return null;
  for (const item of reply) {
    const g = record(item);
    if (str(g.name) !== group) continue;
    return {
      pending: num(g.pending) ?? 0,
      lag: num(g.lag),
      entriesRead: num(g['entries-read']),
      lastDeliveredId: str(g['last-delivered-id']),
      consumers: num(g.consumers) ?? 0,
    };
  }
  return null;
}

export interface PendingSummary {
  readonly count: number;
  readonly minId: string | null;
  readonly maxId: string | null;
  /** Pending entries per consumer. */
  readonly byConsumer: ReadonlyMap<string, number>;
}

/** `XPENDING key group` (summary form). */
export function parsePendingSummary(reply: unknown): PendingSummary {
  const [count, minId, maxId, consumers] = Array.isArray(reply) ? (reply as unknown[]) : [];
  const byConsumer = new Map<string, number>();
  if (Array.isArray(consumers)) {
    for (const c of consumers) {
      if (Array.isArray(c)) byConsumer.set(String(c[0]), num(c[1]) ?? 0);
    }
  }
  return { count: num(count) ?? 0, minId: str(minId), maxId: str(maxId), byConsumer };
}

export interface PendingEntry {
  readonly id: string;
  readonly consumer: string;
  /** Time since the entry was last delivered. */
  readonly idleMs: number;
  readonly deliveries: number;
}

/** `XPENDING key group - + n` (extended form). */
export function parsePendingEntries(reply: unknown): PendingEntry[] {
  if (!Array.isArray(reply)) return [];
  return reply.filter(Array.isArray).map((e: unknown[]) => ({
    id: String(e[0]),
    consumer: String(e[1]),
    idleMs: num(e[2]) ?? 0,
    deliveries: num(e[3]) ?? 0,
  }));
}

export interface ConsumerInfo {
  readonly name: string;
  readonly pending: number;
  /** Time since the consumer's last attempted interaction (read, claim). */
  readonly idleMs: number;
  /** Time since its last successful interaction (Redis 7.2+); null before. */
  readonly inactiveMs: number | null;
}

/** `XINFO CONSUMERS key group`. */
export function parseConsumers(reply: unknown): ConsumerInfo[] {
  if (!Array.isArray(reply)) return [];
  return reply.map((item) => {
    const c = record(item);
    const inactive = num(c.inactive);
    return {
      name: str(c.name) ?? '',
      pending: num(c.pending) ?? 0,
      idleMs: num(c.idle) ?? 0,
      // -1: never read successfully.
      inactiveMs: inactive === null || inactive < 0 ? null : inactive,
    };
  });
}

/** `ZRANGE key 0 -1 WITHSCORES` → [member, score] pairs. */
export function parseScored(reply: unknown): [string, number][] {
  const out: [string, number][] = [];
  if (!Array.isArray(reply)) return out;
  for (let i = 0; i + 1 < reply.length; i += 2) out.push([String(reply[i]), num(reply[i + 1]) ?? 0]);
  return out;
}

/** `TIME` → epoch ms. */
export function parseTime(reply: unknown): number | null {
  if (!Array.isArray(reply)) return null;
  const s = num(reply[0]);
  const us = num(reply[1]);
  return s === null || us === null ? null : s * 1000 + Math.floor(us / 1000);
}
