/**
 * closeWindows.lua with a budget of rollups per call: a window with thousands of groups closes over
 * many calls (resumed from the partition's state hash), every group written exactly once. Late events
 * during the close are simulated as applyBatch applies them (the window hash updated, `member\ngroup`
 * queued in the corrections set), and a restart is a call from another connection.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MeteringScripts, TallyKeys, type WindowParams } from '../../../src/redis/index.js';
import { createTestRedis, uniquePrefix } from '../../support/redis.js';

const MINUTE = 60_000;
const BUDGET = 160;
/** Budget overshoot allowed: one HSCAN page returns a few fields beyond COUNT (a bucket's chain). */
const SLACK = 16;
const windows: WindowParams = {
  graceMs: 1000,
  latePolicy: 'correct',
  retentionMs: 24 * 60 * MINUTE,
  idleTimeoutMs: 1000,
};

interface Rollup {
  g: string;
  c: string;
  v: string;
  r: string;
}

interface Setup {
  scripts: MeteringScripts;
  keys: TallyKeys;
  redis: ReturnType<typeof createTestRedis>;
  member: string;
  wkey: string;
  /** The independent model: group → [count, value]. */
  model: Map<string, [number, number]>;
}

const groupName = (i: number) => JSON.stringify([`subject-${i}`, i % 2 === 0 ? 'gpt' : null]);

async function setup(groups: number): Promise<Setup> {
  const redis = createTestRedis();
  const keys = new TallyKeys(uniquePrefix('close'));
  const scripts = new MeteringScripts(redis, keys);
  const start = Math.floor(Date.now() / MINUTE) * MINUTE - 10 * MINUTE;
  const member = `tokens|S|${start}|${start + MINUTE}`;
  const wkey = keys.window(0, 'tokens', start);
  const model = new Map<string, [number, number]>();
  const fields: string[] = [];
  for (let i = 0; i < groups; i++) {
    const g = groupName(i);
    model.set(g, [i + 1, (i + 1) * 1_000_000]);
    fields.push(`c:${g}`, String(i + 1), `v:${g}`, String((i + 1) * 1_000_000));
  }
  for (let i = 0; i < fields.length; i += 2000) await redis.hset(wkey, ...fields.slice(i, i + 2000));
  await redis.zadd(keys.windowIndex(0), start + MINUTE + windows.graceMs, member);
  await redis.xgroup('CREATE', keys.events(0), 'g', '$', 'MKSTREAM');
  // The watermark is past the window: it is due.
  await redis.hset(keys.state(0), 'closedThrough', String(Date.now() - MINUTE));
  return { scripts, keys, redis, member, wkey, model };
}

/**
 * Every rollup in the outbox so far, in order: a page entry (a window's close: `rollups` holds a JSON
 * array of group, value, count, revision) gives each of its rollups, a correction entry itself.
 */
async function outbox(s: Setup): Promise<Rollup[]> {
  const entries = await s.redis.xrange(s.keys.outbox(0), '-', '+');
  return entries.flatMap(([, f]) => {
    const o: Record<string, string> = {};
    for (let i = 0; i < f.length; i += 2) o[f[i] as string] = f[i + 1] as string;
    if (o.rollups === undefined) return [o as unknown as Rollup];
    const page = JSON.parse(o.rollups) as (string | number)[];
    const out: Rollup[] = [];
    for (let i = 0; i < page.length; i += 4)
      out.push({
        g: String(page[i]),
        v: String(page[i + 1]),
        c: String(page[i + 2]),
        r: String(page[i + 3]),
      });
    expect(out).toHaveLength(Number(o.n));
    return out;
  });
}

/** Simulates applyBatch applying a late event (policy correct) to a window out of the index. */
async function lateEvent(s: Setup, g: string, value: number): Promise<void> {
  const [count, sum] = s.model.get(g) ?? [0, 0];
  s.model.set(g, [count + 1, sum + value]);
  await s.redis
    .multi()
    .hincrby(s.wkey, `c:${g}`, 1)
    .hincrby(s.wkey, `v:${g}`, value)
    .sadd(s.keys.corrections(0), `${s.member}\n${g}`)
    .exec();
}

async function closeStep(s: Setup, scripts = s.scripts) {
  const r = await scripts.closeWindows(0, 'g', windows, BUDGET, 1000);
  expect(r.groupExists).toBe(true);
  expect(r.rollups).toBeLessThanOrEqual(BUDGET + SLACK);
  return r;
}

async function closeAll(s: Setup): Promise<number> {
  let calls = 0;
  for (;;) {
    calls++;
    if (!(await closeStep(s)).more) return calls;
    expect(calls).toBeLessThan(1000);
  }
}

/** Latest rollup per group; fails on a (group, revision) written twice. */
function latest(rollups: Rollup[]): Map<string, Rollup> {
  const seen = new Set<string>();
  const out = new Map<string, Rollup>();
  for (const r of rollups) {
    const id = `${r.g}#${r.r}`;
    expect(seen.has(id), `${id} written twice`).toBe(false);
    seen.add(id);
    const prev = out.get(r.g);
    if (!prev || Number(r.r) > Number(prev.r)) out.set(r.g, r);
  }
  return out;
}

function expectModel(s: Setup, rollups: Rollup[]): void {
  const last = latest(rollups);
  expect(last.size).toBe(s.model.size);
  for (const [g, [count, sum]] of s.model) {
    const r = last.get(g);
    expect(r, g).toBeDefined();
    expect([r?.c, r?.v]).toEqual([String(count), String(sum)]);
  }
}

describe('closeWindows budget', () => {
  let current: Setup | undefined;
  afterEach(async () => {
    if (!current) return;
    const keys = await current.redis.keys(`${current.keys.prefix}:*`);
    if (keys.length > 0) await current.redis.del(...keys);
    current = undefined;
  });

  it('closes a window of 3,000 groups over many calls within the budget, each group once at revision 1', async () => {
    const s = (current = await setup(3000));
    const first = await closeStep(s);
    expect(first.more).toBe(true);
    expect(first.windowsClosed).toBe(0);
    // The window left the index at once, its close is kept in the state hash, its expiry is set.
    expect(await s.redis.zcard(s.keys.windowIndex(0))).toBe(0);
    expect(await s.redis.hget(s.keys.state(0), 'closing')).toBe(s.member);
    expect(await s.redis.pttl(s.wkey)).toBeGreaterThan(0);
    const calls = 1 + (await closeAll(s));
    expect(calls).toBeGreaterThanOrEqual(Math.ceil(3000 / BUDGET));
    const rollups = await outbox(s);
    expect(rollups).toHaveLength(3000);
    expect(rollups.every((r) => r.r === '1')).toBe(true);
    expectModel(s, rollups);
    expect(await s.redis.hmget(s.keys.state(0), 'closing', 'closingCursor')).toEqual([null, null]);
    // A further call finds nothing to do.
    const idle = await closeStep(s);
    expect([idle.rollups, idle.more]).toEqual([0, false]);
  });

  it('late events during a close: one correction for a group already written, none for a group not yet written', async () => {
    const s = (current = await setup(3000));
    await closeStep(s);
    await closeStep(s);
    const written = new Set((await outbox(s)).map((r) => r.g));
    const all = [...s.model.keys()];
    const emitted = all.filter((g) => written.has(g)).slice(0, 5);
    const notYet = all.filter((g) => !written.has(g)).slice(0, 5);
    expect(emitted).toHaveLength(5);
    expect(notYet).toHaveLength(5);
    for (const g of [...emitted, ...notYet]) await lateEvent(s, g, 7_000_000);
    // A group first seen during the close (a late event creates it): revision 1, once.
    const fresh = groupName(99_999);
    await lateEvent(s, fresh, 3_000_000);
    await closeAll(s);
    const rollups = await outbox(s);
    expectModel(s, rollups);
    const revisions = (g: string) => rollups.filter((r) => r.g === g).map((r) => r.r);
    for (const g of emitted) expect(revisions(g)).toEqual(['1', '2']);
    for (const g of notYet) expect(revisions(g)).toEqual(['1']);
    expect(revisions(fresh)).toEqual(['1']);
    expect(rollups).toHaveLength(3000 + 1 + emitted.length);
    expect(await s.redis.scard(s.keys.corrections(0))).toBe(0);
  });

  it('a correction popped before the close reaches its group writes revision 1, and the close skips the group', async () => {
    const s = (current = await setup(3000));
    await closeStep(s);
    const written = new Set((await outbox(s)).map((r) => r.g));
    const notYet = [...s.model.keys()].filter((g) => !written.has(g)).slice(0, 50);
    for (const g of notYet) await lateEvent(s, g, 1_000_000);
    // Corrections only, from the call's leftover budget: the close is carried on by the next calls.
    await closeAll(s);
    const rollups = await outbox(s);
    expectModel(s, rollups);
    expect(rollups.every((r) => r.r === '1')).toBe(true);
    expect(rollups).toHaveLength(3000);
  });

  it('survives a restart mid-close and a hash that grows (rehashes) while it is scanned: every group once', async () => {
    const s = (current = await setup(3000));
    await closeStep(s);
    await closeStep(s);
    // A replica that restarted (a fresh connection, nothing in memory) carries the close on.
    const other = new MeteringScripts(createTestRedis(), s.keys);
    await closeStep(s, other);
    // 3,000 new groups from late events: the hash table doubles mid-scan, so HSCAN returns some
    // fields twice; `r:` keeps each group to one rollup.
    for (let i = 0; i < 3000; i += 500) {
      const m = s.redis.multi();
      for (let j = i; j < i + 500; j++) {
        const g = groupName(10_000 + j);
        s.model.set(g, [1, 5_000_000]);
        m.hset(s.wkey, `c:${g}`, 1, `v:${g}`, 5_000_000).sadd(s.keys.corrections(0), `${s.member}\n${g}`);
      }
      await m.exec();
      await closeStep(s, other);
    }
    for (;;) if (!(await closeStep(s, other)).more) break;
    const rollups = await outbox(s);
    expectModel(s, rollups);
    expect(rollups.every((r) => r.r === '1')).toBe(true);
    expect(rollups).toHaveLength(6000);
  });

  it('closes many small windows per call and keeps calls within the budget', async () => {
    const s = (current = await setup(1));
    const start = Math.floor(Date.now() / MINUTE) * MINUTE - 100 * MINUTE;
    for (let w = 0; w < 60; w++) {
      const ws = start + w * MINUTE;
      const key = s.keys.window(0, 'tokens', ws);
      const args: string[] = [];
      for (let i = 0; i < 40; i++) {
        const g = groupName(i);
        args.push(`c:${g}`, '1', `v:${g}`, '2000000');
      }
      await s.redis.hset(key, ...args);
      await s.redis.zadd(
        s.keys.windowIndex(0),
        ws + MINUTE + windows.graceMs,
        `tokens|S|${ws}|${ws + MINUTE}`,
      );
    }
    let closed = 0;
    let calls = 0;
    for (;;) {
      calls++;
      const r = await closeStep(s);
      closed += r.windowsClosed;
      if (!r.more) break;
    }
    expect(closed).toBe(61);
    // A window of 40 groups costs 43 units (3 to start): at most 3 fit one call, none is split.
    expect(calls).toBe(20);
    expect(await s.redis.hexists(s.keys.state(0), 'closing')).toBe(0);
    const rollups = await outbox(s);
    expect(rollups).toHaveLength(60 * 40 + 1);
  });
});
