import { ReplyError } from 'ioredis';
import type { Logger } from 'pino';
import { ErrorCode, TallyError } from '../errors/index.js';
import { TallyKeys } from './keys.js';
import { runScript, type RedisClient } from './scripts.js';

/** Where a component works: Tally's key prefix and the BullMQ queues it reads or writes. */
export interface AccessScope {
  readonly prefix: string;
  readonly queuePrefix: string;
  readonly queues: readonly string[];
}

/** What the server told the probe, for the checks that follow it (see worker start). */
export interface ServerFacts {
  /** `maxmemory-policy` from INFO memory (undefined if the server does not say). */
  readonly maxmemoryPolicy: string | undefined;
}

const DOCS = 'the minimal ACL is in docs/operations.md, "Security"';

/** A denial, as a command gets it (NOPERM) or, on Redis 7.0, a command inside a script. */
const DENIED = /\bNOPERM\b.*$|The user executing the script can't.*$/m;

function isDenied(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (DENIED.test(e.message)) return true;
  }
  return false;
}

function deniedMessage(err: unknown): string {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const match = DENIED.exec(e.message);
    if (match) return match[0];
  }
  return String(err);
}

function isReply(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (e instanceof ReplyError) return true;
  }
  return false;
}

/**
 * Runs `run`; a NOPERM reply becomes a TallyError naming what was denied. Any other reply (NOGROUP,
 * no such key...) means the command was allowed: the probes use keys that hold nothing. A failure
 * without a reply (no connection) is thrown as it is.
 */
async function probe<T>(what: string, run: () => Promise<T>): Promise<T | undefined> {
  try {
    return await run();
  } catch (err) {
    if (isDenied(err)) {
      throw new TallyError(
        ErrorCode.Permission,
        `the Redis user may not ${what} (${deniedMessage(err)}); grant it: ${DOCS}`,
        { cause: err },
      );
    }
    if (isReply(err)) return undefined;
    throw err;
  }
}

/**
 * Checks, before anything starts, that the Redis user may run what Tally needs: INFO (BullMQ reads
 * the server version with it and spins when it is denied; Tally reads the eviction policy), TIME and
 * scripts (every Lua step reads Redis's clock), the stream commands, and keys under Tally's prefix
 * and under each BullMQ queue's. Throws a TallyError (code ERR_TALLY_PERMISSION) naming the first
 * denied permission. Writes nothing: every probe key is empty and every write is conditional.
 */
export async function checkRedisAccess(client: RedisClient, scope: AccessScope): Promise<ServerFacts> {
  const key = new TallyKeys(scope.prefix).probe();
  const group = 'tally-probe';
  const info = await probe('run INFO', () => client.info('memory'));
  await probe('run TIME', () => client.time());
  await probe(`run scripts (EVALSHA, EVAL) that call TIME and access keys under ${scope.prefix}:*`, () =>
    runScript(client, 'probe', [key], []),
  );
  for (const queue of scope.queues) {
    const queueKey = TallyKeys.queueProbe(scope.queuePrefix, queue);
    await probe(`run scripts on the keys of BullMQ queue ${queue} (${scope.queuePrefix}:${queue}:*)`, () =>
      runScript(client, 'probe', [queueKey], []),
    );
  }
  const streamCommands: [string, () => Promise<unknown>][] = [
    ['XREADGROUP', () => client.xreadgroup('GROUP', group, group, 'COUNT', 1, 'STREAMS', key, '>')],
    ['XGROUP', () => client.xgroup('CREATECONSUMER', key, group, group)],
    ['XPENDING', () => client.xpending(key, group)],
    ['XCLAIM', () => client.xclaim(key, group, group, 0, '0-1')],
    ['XAUTOCLAIM', () => client.xautoclaim(key, group, group, 0, '0-0', 'COUNT', 1)],
    ['XACK', () => client.xack(key, group, '0-1')],
    ['XADD', () => client.xadd(key, 'NOMKSTREAM', '*', 'probe', '1')],
    ['XRANGE', () => client.xrange(key, '-', '+', 'COUNT', 1)],
    ['XDEL', () => client.xdel(key, '0-1')],
    ['XINFO', () => client.xinfo('GROUPS', key)],
    ['SET', () => client.set(key, '1', 'PX', 1, 'XX')],
  ];
  for (const [command, run] of streamCommands)
    await probe(`run ${command} on keys under ${scope.prefix}:*`, run);
  const policy = typeof info === 'string' ? /^maxmemory_policy:(\S+)/m.exec(info)?.[1] : undefined;
  return { maxmemoryPolicy: policy };
}

/**
 * Refuses a Redis that may evict keys (`maxmemory-policy` other than `noeviction`): an evicted dedup
 * bucket counts its events twice, an evicted window loses its total, an evicted BullMQ job its rollup,
 * and nothing says so. With `allowEviction` it only warns (once per component).
 */
export function checkEvictionPolicy(facts: ServerFacts, allowEviction: boolean, logger?: Logger): void {
  const policy = facts.maxmemoryPolicy;
  if (policy === undefined || policy === 'noeviction') return;
  const risk = `Redis maxmemory-policy is ${policy}, not noeviction: under memory pressure Redis deletes keys, and Tally would count events twice (evicted dedup buckets) and lose totals and rollups`;
  if (!allowEviction) {
    throw new TallyError(
      ErrorCode.Config,
      `${risk}. Set maxmemory-policy noeviction, or run with --allow-eviction (option allowEviction) to accept that`,
    );
  }
  logger?.warn({ maxmemoryPolicy: policy }, `${risk}; running anyway (allowEviction)`);
}
