/**
 * The meter registry as `tally status` shows it: its version, meters and the processes following
 * it, and event streams beyond the partition count that no worker reads. Single-key commands only.
 */
import type { RedisClient, TallyKeys } from '../redis/index.js';

/** A process following the meter registry (worker, evaluator, serve), by its last heartbeat. */
export interface RegistryProcess {
  readonly name: string;
  readonly role: string;
  /** The registry version it follows. */
  readonly version: number;
  /** When it last said so (epoch ms); a process says so every few seconds while it runs. */
  readonly seenAt: number;
}

export interface RegistryStatus {
  /** 0 when nothing is registered yet (no process has started on this prefix). */
  readonly version: number;
  /** The partition count recorded by the first process; null before. */
  readonly partitions: number | null;
  readonly meters: readonly {
    readonly slug: string;
    readonly eventType: string;
    readonly aggregation: string;
    readonly windowSize: string;
    /** Registry version from which it counts. */
    readonly activeSince: number;
    /** Deleted (epoch ms): it counts no more; its windows still close and stay queryable. */
    readonly deletedAt: number | null;
  }[];
  /** Processes seen in the last 30 s, with the version each follows. */
  readonly processes: readonly RegistryProcess[];
}

/** A stream beyond the partition count: no worker reads it (a producer configured with more partitions). */
export interface UnreadStream {
  readonly partition: number;
  readonly key: string;
  readonly length: number;
}

/** How long `tally status` lists a process after its last registry heartbeat. */
const PROCESS_SEEN_MS = 30_000;

export async function registryStatus(
  client: RedisClient,
  keys: TallyKeys,
  now: number,
): Promise<RegistryStatus> {
  const flat = await client.hgetall(keys.registry());
  const meters: RegistryStatus['meters'][number][] = [];
  for (const [field, value] of Object.entries(flat)) {
    if (!field.startsWith('d:')) continue;
    const slug = field.slice(2);
    let def: { eventType?: string; aggregation?: string; windowSize?: string } = {};
    try {
      def = JSON.parse(value) as typeof def;
    } catch {
      // Reported with what is known.
    }
    meters.push({
      slug,
      eventType: def.eventType ?? '?',
      aggregation: def.aggregation ?? '?',
      windowSize: def.windowSize ?? '?',
      activeSince: Number(flat[`v:${slug}`] ?? 0),
      deletedAt: intOrNullText(flat[`x:${slug}`]),
    });
  }
  meters.sort((a, b) => (a.slug < b.slug ? -1 : 1));
  const processes: RegistryProcess[] = [];
  for (const [name, value] of Object.entries(await client.hgetall(keys.registryFollowers()))) {
    try {
      const p = JSON.parse(value) as { role?: string; version?: number; at?: number };
      const seenAt = Number(p.at ?? 0);
      if (now - seenAt <= PROCESS_SEEN_MS)
        processes.push({ name, role: p.role ?? '?', version: Number(p.version ?? 0), seenAt });
    } catch {
      // Not one of ours: skipped.
    }
  }
  processes.sort((a, b) => (a.name < b.name ? -1 : 1));
  return {
    version: Number(flat.version ?? 0),
    partitions: intOrNullText(flat.partitions),
    meters,
    processes,
  };
}

/** The largest partition count the config allows: streams up to it are looked for. */
const MAX_PARTITIONS = 1024;

/** Event streams of partitions at or beyond `partitions` that exist (one EXISTS each, single-key). */
export async function unreadStreams(
  client: RedisClient,
  keys: TallyKeys,
  partitions: number,
): Promise<UnreadStream[]> {
  const beyond = Array.from({ length: MAX_PARTITIONS - partitions }, (_, i) => partitions + i);
  const exists = await Promise.all(beyond.map((p) => client.exists(keys.events(p))));
  const found = beyond.filter((_, i) => exists[i] === 1);
  return Promise.all(
    found.map(async (p) => ({
      partition: p,
      key: keys.events(p),
      length: await client.xlen(keys.events(p)),
    })),
  );
}

function intOrNullText(value: string | undefined): number | null {
  if (value === undefined || value === '') return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}
