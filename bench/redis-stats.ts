/**
 * What the bench reads from Redis: INFO sections, command statistics, consumer-group progress,
 * and the window hashes the correctness check compares against the model.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { Model } from './events.js';

/**
 * Connection options for the bench's own clients: fail instead of retrying forever, so a crashed
 * redis-server ends the run (with cleanup) rather than hanging it.
 */
export const FAIL_FAST: RedisOptions = {
  maxRetriesPerRequest: 2,
  retryStrategy: (times) => (times > 20 ? null : 100),
};

export function benchClient(url: string): Redis {
  return new Redis(url, FAIL_FAST);
}

export async function info(redis: Redis, section: string): Promise<Map<string, string>> {
  const text = await redis.info(section);
  const out = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) out.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return out;
}

export async function usedMemory(redis: Redis): Promise<number> {
  return Number((await info(redis, 'memory')).get('used_memory'));
}

/** Redis server CPU seconds (user + sys) so far. */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const cpu = await info(redis, 'cpu');
  return Number(cpu.get('used_cpu_user')) + Number(cpu.get('used_cpu_sys'));
}

export interface CommandStat {
  calls: number;
  usec: number;
}

/** INFO commandstats as { command: { calls, usec } } (commands run inside scripts are counted too). */
export async function commandStats(redis: Redis): Promise<Record<string, CommandStat>> {
  const out: Record<string, CommandStat> = {};
  for (const [key, value] of await info(redis, 'commandstats')) {
    const fields = Object.fromEntries(value.split(',').map((kv) => kv.split('=') as [string, string]));
    out[key.replace(/^cmdstat_/, '')] = { calls: Number(fields.calls), usec: Number(fields.usec) };
  }
  return out;
}

function field(flat: unknown[], name: string): unknown {
  for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i] === name) return flat[i + 1];
  return undefined;
}

function idLess(a: string, b: string): boolean {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am < bm || (am === bm && as < bs);
}

export interface GroupProgress {
  readonly lastDelivered: string;
  readonly pending: number;
  readonly lastId: string;
}

/** Consumer-group progress on each stream (one pipeline). */
export async function groupProgress(
  redis: Redis,
  streams: readonly string[],
  group: string,
): Promise<GroupProgress[]> {
  const pipeline = redis.pipeline();
  for (const s of streams) pipeline.xinfo('GROUPS', s).xinfo('STREAM', s);
  const results = (await pipeline.exec()) ?? [];
  return streams.map((_s, i) => {
    const [groupsErr, groups] = results[2 * i] ?? [];
    const [streamErr, stream] = results[2 * i + 1] ?? [];
    const err = groupsErr ?? streamErr;
    if (err) throw err;
    const g = (groups as unknown[][]).find((x) => field(x, 'name') === group);
    return {
      lastDelivered: g ? String(field(g, 'last-delivered-id')) : '0-0',
      pending: g ? Number(field(g, 'pending')) : 0,
      lastId: String(field(stream as unknown[], 'last-generated-id')),
    };
  });
}

export interface DrainTiming {
  /** First poll that saw any entry delivered to the group (epoch ms). */
  readonly startMs: number;
  /** First poll that saw every entry delivered and acknowledged. */
  readonly endMs: number;
  readonly seconds: number;
}

/**
 * Polls the group on every stream until all entries (up to each stream's last id at the time of the
 * poll) are delivered and acknowledged. The clock starts at the first poll that sees a delivery, so
 * process start-up is not counted. Resolution: `pollMs`.
 */
export async function waitForDrain(
  redis: Redis,
  streams: readonly string[],
  group: string,
  options: { timeoutMs: number; pollMs?: number; onPoll?: () => void },
): Promise<DrainTiming> {
  const pollMs = options.pollMs ?? 10;
  const deadline = Date.now() + options.timeoutMs;
  let startMs: number | undefined;
  for (;;) {
    const progress = await groupProgress(redis, streams, group);
    const now = Date.now();
    if (startMs === undefined && progress.some((p) => p.lastDelivered !== '0-0')) startMs = now;
    if (
      startMs !== undefined &&
      progress.every((p) => p.pending === 0 && !idLess(p.lastDelivered, p.lastId))
    ) {
      return { startMs, endMs: now, seconds: (now - startMs) / 1000 };
    }
    if (now > deadline) {
      throw new Error(
        `drain of ${streams.join(', ')} by group ${group} did not finish in ${options.timeoutMs} ms: ${JSON.stringify(progress)}`,
      );
    }
    options.onPoll?.();
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 5000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

/** Sum of MEMORY USAGE (exact: SAMPLES 0) over keys. */
export async function memoryUsageOf(redis: Redis, keys: readonly string[]): Promise<number> {
  let total = 0;
  for (let i = 0; i < keys.length; i += 1000) {
    const pipeline = redis.pipeline();
    for (const k of keys.slice(i, i + 1000)) pipeline.memory('USAGE', k, 'SAMPLES', 0);
    for (const [err, n] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      total += Number(n);
    }
  }
  return total;
}

/**
 * Reads every window hash of a prefix (`<prefix>:{p<i>}:w:<meter>:<start>`, fields `c:<group>` and
 * `v:<group>`, as documented in src/redis/keys.ts) into cells keyed like the model's.
 */
export async function readWindowCells(
  redis: Redis,
  prefix: string,
): Promise<Map<string, { count: number; micro: bigint }>> {
  const keys = (await scanKeys(redis, `${prefix}:{p*}:w:*`)).filter((k) => !k.endsWith(':u'));
  const cells = new Map<string, { count: number; micro: bigint }>();
  for (let i = 0; i < keys.length; i += 200) {
    const chunk = keys.slice(i, i + 200);
    const pipeline = redis.pipeline();
    for (const k of chunk) pipeline.hgetall(k);
    const results = (await pipeline.exec()) ?? [];
    chunk.forEach((key, j) => {
      const [err, hash] = results[j] ?? [];
      if (err) throw err;
      const match = /:w:([^:]+):(\d+)$/.exec(key);
      if (!match) return;
      const [, meter = '', start = '0'] = match;
      for (const [f, v] of Object.entries(hash as Record<string, string>)) {
        if (!f.startsWith('c:') && !f.startsWith('v:')) continue;
        const cellKey = Model.cellKey(meter, Number(start), f.slice(2));
        const cell = cells.get(cellKey) ?? { count: 0, micro: 0n };
        // Several partitions never share a (meter, window, group): a subject lives in one partition.
        if (f.startsWith('c:')) cell.count += Number(v);
        else cell.micro += BigInt(v);
        cells.set(cellKey, cell);
      }
    });
  }
  return cells;
}

const readable = (cellKey: string) => cellKey.split('\u0000').join(' | ');

export interface TotalsCheck {
  readonly ok: boolean;
  readonly cells: number;
  readonly events: number;
  readonly mismatches: string[];
}

/** Compares every (meter, window, group) cell in Redis with the model, exactly. */
export async function checkWindowTotals(redis: Redis, prefix: string, model: Model): Promise<TotalsCheck> {
  const actual = await readWindowCells(redis, prefix);
  const mismatches: string[] = [];
  let events = 0;
  for (const [key, want] of model.cells) {
    const got = actual.get(key);
    events += got?.count ?? 0;
    if (!got || got.count !== want.count || got.micro !== want.micro) {
      mismatches.push(
        `${readable(key)}: want count ${want.count} sum ${want.micro}, got ${got ? `count ${got.count} sum ${got.micro}` : 'nothing'}`,
      );
    }
    actual.delete(key);
  }
  for (const [key, got] of actual)
    mismatches.push(`${readable(key)}: unexpected cell count ${got.count} sum ${got.micro}`);
  return {
    ok: mismatches.length === 0,
    cells: model.cells.size,
    events,
    mismatches: mismatches.slice(0, 10),
  };
}
