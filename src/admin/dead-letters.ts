import type { TallyConfig } from '../config/index.js';
import { TallyConfigError } from '../errors/index.js';
import { TallyKeys, type RedisClient } from '../redis/index.js';
import { EVENT_FIELD, METER_FIELD } from '../events/index.js';
import {
  parseDeadLetter,
  parseDeadLetterRef,
  planReplay,
  type DeadLetter,
  type EventField,
} from './dead-letter-entry.js';
import {
  defaultListDeadLettersOptions,
  defaultReplayDeadLettersOptions,
  type ListDeadLettersOptions,
  type ReplayDeadLettersOptions,
} from './options.js';

/** Dead letters read per XRANGE call while scanning. */
const SCAN_CHUNK = 200;

type RawEntry = [id: string, fields: string[]];

function checkPartition(partition: number | undefined, config: TallyConfig): void {
  if (
    partition !== undefined &&
    (!Number.isInteger(partition) || partition < 0 || partition >= config.partitions)
  ) {
    throw new TallyConfigError('partition', `expected one of 0..${config.partitions - 1}, got ${partition}`);
  }
}

function checkLimit(limit: number): void {
  if (limit !== Number.POSITIVE_INFINITY && (!Number.isInteger(limit) || limit < 1)) {
    throw new TallyConfigError('limit', `expected an integer ≥ 1, got ${limit}`);
  }
}

/**
 * Dead letters of one partition with ids from `start` (an XRANGE bound: `-`, `ID` or `(ID`) to
 * `until`, oldest first, read in chunks with XRANGE (a single-key command: fine on Redis Cluster).
 */
async function* scan(
  client: RedisClient,
  keys: TallyKeys,
  partition: number,
  start = '-',
  until = '+',
): AsyncGenerator<DeadLetter> {
  let from = start;
  const key = keys.deadLetter(partition);
  for (;;) {
    const chunk = (await client.xrange(key, from, until, 'COUNT', SCAN_CHUNK).catch((err: unknown) => {
      if (!(err instanceof Error) || !err.message.startsWith('WRONGTYPE')) throw err;
      throw new Error(
        `key ${key} holds the wrong type of value (WRONGTYPE), not the dead-letter stream of partition ${partition}: ` +
          'delete or rename it (see what it holds with TYPE first), or pass --partition to read the others',
        { cause: err },
      );
    })) as RawEntry[];
    for (const [id, fields] of chunk) yield parseDeadLetter(partition, id, fields);
    const last = chunk.at(-1);
    if (!last || chunk.length < SCAN_CHUNK) return;
    from = `(${last[0]}`;
  }
}

/** Orders dead letters by entry id (arrival time: milliseconds, then sequence), then by partition. */
function compareArrival(a: DeadLetter, b: DeadLetter): number {
  const [aMs = 0, aSeq = 0] = a.id.split('-').map(Number);
  const [bMs = 0, bSeq = 0] = b.id.split('-').map(Number);
  return aMs - bMs || aSeq - bSeq || a.partition - b.partition;
}

/**
 * Lists dead letters with their fields parsed, oldest first across partitions (by entry id, then
 * partition), so new ones come last; at most `limit` (default 50). Page on with `after` set to the
 * `ref` of the last one returned.
 */
export async function listDeadLetters(
  client: RedisClient,
  config: TallyConfig,
  options: ListDeadLettersOptions = {},
): Promise<DeadLetter[]> {
  const opts = { ...defaultListDeadLettersOptions, ...options };
  checkPartition(opts.partition, config);
  checkLimit(opts.limit);
  const keys = new TallyKeys(config.prefix);
  const after =
    opts.after === undefined
      ? undefined
      : parseDeadLetterRef(opts.after, config.partitions, opts.partition, 'after');
  const partitions =
    opts.partition !== undefined ? [opts.partition] : Array.from({ length: config.partitions }, (_, i) => i);
  // After (P, ID): ids past ID everywhere, and ID itself in partitions after P (ties go by partition).
  const scans = partitions.map((p) =>
    scan(client, keys, p, after === undefined ? '-' : p <= after.partition ? `(${after.id}` : after.id),
  );
  // A merge of the partitions' scans, each oldest first: the head that arrived first goes next.
  const heads = await Promise.all(scans.map((s) => s.next()));
  const out: DeadLetter[] = [];
  while (out.length < opts.limit) {
    let next = -1;
    heads.forEach((h, i) => {
      const current = heads[next];
      if (!h.done && (next < 0 || (current && !current.done && compareArrival(h.value, current.value) < 0)))
        next = i;
    });
    const head = heads[next];
    if (!head || head.done) break;
    if (opts.reason === undefined || head.value.reason === opts.reason) out.push(head.value);
    heads[next] = await (scans[next] as AsyncGenerator<DeadLetter>).next();
  }
  await Promise.all(scans.map((s) => s.return(undefined)));
  return out;
}

export interface ReplayedDeadLetter {
  readonly ref: string;
  readonly reason: string;
  /** Event id and source, when the payload says. */
  readonly event: DeadLetter['event'];
  /** Where the event went: the event stream of this partition, under this field. */
  readonly partition: number;
  readonly field: EventField;
  /** 'event': one event of the original entry; 'entry': the whole original entry. */
  readonly scope: 'event' | 'entry';
  /** The one meter the replay counts in, or null for every meter of the event's type. */
  readonly meter: string | null;
  /** Id of the new stream entry; null on a dry run. */
  readonly entryId: string | null;
  /** Whether the dead letter was removed. */
  readonly deleted: boolean;
}

export interface ReplayResult {
  readonly dryRun: boolean;
  readonly replayed: ReplayedDeadLetter[];
  /** Dead letters that cannot be replayed (not about an event), with why; they are left in place. */
  readonly skipped: { readonly ref: string; readonly reason: string; readonly why: string }[];
  /** Requested ids that are not (or no longer) in their dead-letter stream. */
  readonly notFound: string[];
  /** Replays that failed (a Redis error); the dead letter stays and can be replayed again. */
  readonly failed: { readonly ref: string; readonly error: string }[];
}

/** The dead letters a replay selects: by ids, or by a scan bounded at the stream's end when it started. */
async function* select(
  client: RedisClient,
  config: TallyConfig,
  keys: TallyKeys,
  opts: ReplayDeadLettersOptions & { limit: number },
  notFound: string[],
): AsyncGenerator<DeadLetter> {
  if (opts.ids !== undefined) {
    const refs = opts.ids.map((text) => parseDeadLetterRef(text, config.partitions, opts.partition));
    const seen = new Set<string>();
    for (const { partition, id } of refs) {
      const ref = `${partition}/${id}`;
      if (seen.has(ref)) continue;
      seen.add(ref);
      const [entry] = (await client.xrange(keys.deadLetter(partition), id, id)) as RawEntry[];
      if (entry) yield parseDeadLetter(partition, entry[0], entry[1]);
      else notFound.push(ref);
    }
    return;
  }
  const partitions =
    opts.partition !== undefined ? [opts.partition] : Array.from({ length: config.partitions }, (_, i) => i);
  let count = 0;
  for (const p of partitions) {
    // Bound the scan by the last dead letter present now: an event that fails again while this runs
    // (a worker is consuming) is dead-lettered anew beyond the bound, and is not replayed in a loop.
    const [lastEntry] = (await client.xrevrange(keys.deadLetter(p), '+', '-', 'COUNT', 1)) as RawEntry[];
    if (!lastEntry) continue;
    for await (const dl of scan(client, keys, p, undefined, lastEntry[0])) {
      if (opts.reason !== undefined && dl.reason !== opts.reason) continue;
      yield dl;
      if (++count >= opts.limit) return;
    }
  }
}

/**
 * Re-injects dead-lettered events into the event stream of their home partition, so workers process
 * them again (after a fix of the meters or the config, or to let a late event be counted as a
 * correction); see `planReplay` for what exactly is written where. Replayed events keep their
 * (source, id), so they still dedup. Each dead letter is removed once its event is back in the
 * stream, unless `delete: false`.
 *
 * Safe to repeat, and safe against a crash: the re-add and the XDEL are two steps (on Redis Cluster
 * they are in different slots, so they cannot be one script); a crash between them leaves the dead
 * letter in place and a second replay re-adds the event once more. That repeat is harmless: the
 * worker drops it as a duplicate by (source, id) if the first copy was counted, and dead-letters it
 * again if it still fails. (Within the dedup horizon, `dedup.horizon`: a repeat replayed later than
 * that after a counted copy would count again.)
 */
export async function replayDeadLetters(
  client: RedisClient,
  config: TallyConfig,
  options: ReplayDeadLettersOptions,
): Promise<ReplayResult> {
  const opts = { ...defaultReplayDeadLettersOptions, ...options };
  const selectors = [opts.ids !== undefined, opts.reason !== undefined, opts.all === true].filter(
    Boolean,
  ).length;
  if (selectors !== 1) {
    throw new TallyConfigError('ids', 'choose what to replay with exactly one of ids, reason and all');
  }
  if (opts.ids !== undefined && opts.ids.length === 0)
    throw new TallyConfigError('ids', 'expected at least one dead-letter id');
  if (opts.payload !== undefined) {
    if (opts.ids?.length !== 1)
      throw new TallyConfigError(
        'payload',
        'a fixed payload replaces the event of exactly one dead letter: give one id',
      );
    let parsed: unknown;
    try {
      parsed = JSON.parse(opts.payload);
    } catch (err) {
      throw new TallyConfigError('payload', `is not JSON: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new TallyConfigError('payload', 'must be one event, a JSON object');
  }
  checkPartition(opts.partition, config);
  checkLimit(opts.limit);
  const keys = new TallyKeys(config.prefix);
  const result: ReplayResult = { dryRun: opts.dryRun, replayed: [], skipped: [], notFound: [], failed: [] };
  for await (const dl of select(client, config, keys, opts, result.notFound)) {
    let plan: ReturnType<typeof planReplay>;
    try {
      // A fixed payload replaces the event (one dead letter): it is routed by its own subject.
      const fixed: DeadLetter =
        opts.payload === undefined ? dl : { ...dl, payload: opts.payload, field: EVENT_FIELD, index: 0 };
      plan = planReplay(fixed, config.partitions);
    } catch (err) {
      // Nothing a dead letter holds should get here (planReplay works on text); if it does, this one
      // is reported and left in place, and the replay goes on with the others.
      plan = { replayable: false, why: `cannot plan its replay: ${(err as Error).message}` };
    }
    if (!plan.replayable) {
      result.skipped.push({ ref: dl.ref, reason: dl.reason, why: plan.why });
      continue;
    }
    const done = {
      ref: dl.ref,
      reason: dl.reason,
      event: dl.event,
      partition: plan.partition,
      field: plan.field,
      scope: plan.scope,
      meter: plan.meter,
    };
    if (opts.dryRun) {
      result.replayed.push({ ...done, entryId: null, deleted: false });
      continue;
    }
    try {
      const scope = plan.meter !== null ? [METER_FIELD, plan.meter] : [];
      const entryId = (await client.xadd(
        keys.events(plan.partition),
        '*',
        ...scope,
        plan.field,
        plan.value,
      )) as string;
      // A crash here leaves the dead letter: replaying it again re-adds the event once more, which the
      // worker drops as a duplicate (it keeps its source and id). See above.
      if (opts.delete) await client.xdel(keys.deadLetter(dl.partition), dl.id);
      result.replayed.push({ ...done, entryId, deleted: opts.delete });
    } catch (err) {
      result.failed.push({ ref: dl.ref, error: (err as Error).message });
    }
  }
  return result;
}
