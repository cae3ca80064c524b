/**
 * A rolling deploy that adds a meter, as people run it: two workers on the old config while events
 * flow at a steady rate; one is restarted with the new meter, one crashes and comes back on the old
 * config (a pod of the old version restarting mid-deploy), then it too gets the new config. No event
 * is lost for the old meters, the new meter counts exactly the entries after its recorded activation
 * point in each partition, on every replica alike, and the entitlement catalog never goes back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { partitionOf, type UsageEvent } from '../../../src/index.js';
import { TotalsModel, type ModelMeter } from '../../support/model.js';
import { waitFor } from '../../support/redis.js';
import { diffTotals, Harness } from '../../support/tally.js';

const MINUTE = 60_000;
const PARTITIONS = 2;
const calls = { slug: 'calls', eventType: 'llm', aggregation: 'COUNT', groupBy: { model: '$.model' }, windowSize: 'MINUTE' };
const tokens = { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: 'MINUTE' };
const users = { slug: 'users', eventType: 'llm', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user', windowSize: 'MINUTE' };
const model = {
  calls: { slug: 'calls', eventType: 'llm', aggregation: 'COUNT', groupBy: { model: 'model' }, windowMs: MINUTE },
  tokens: { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueKey: 'tokens', windowMs: MINUTE },
  users: { slug: 'users', eventType: 'llm', aggregation: 'UNIQUE_COUNT', valueKey: 'user', windowMs: MINUTE },
} satisfies Record<string, ModelMeter>;

const entitlements = (features: { key: string; meter: string }[]) => ({
  features,
  defaults: features.map((f) => ({ feature: f.key, type: 'metered', usagePeriod: { interval: 'DAY' }, limit: 1_000_000 })),
});

async function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

describe('rolling deploy', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('adds a meter with zero events lost for the old meters, the new one exact from its activation point, the catalog only moving forward', async () => {
    harness = new Harness({ meters: [calls, tokens], partitions: PARTITIONS, label: 'deploy' });
    const h = harness;
    const queues = { ...(h.raw.rollups as object), queues: [`${h.prefix}-billing`, `${h.prefix}-entitlements`] };
    const oldConfig = { rollups: queues, entitlements: entitlements([{ key: 'llm', meter: 'calls' }]) };
    const newConfig = {
      meters: [calls, tokens, users],
      rollups: queues,
      entitlements: entitlements([
        { key: 'llm', meter: 'calls' },
        { key: 'tokens', meter: 'tokens' },
      ]),
    };
    const definitions = h.keys.entitlementDefinitions();
    const catalog: { ver: number; fp: string }[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const [ver, fp] = await h.redis.hmget(definitions, 'ver', 'fp');
        if (ver !== null && fp !== null && catalog.at(-1)?.fp !== fp) catalog.push({ ver: Number(ver), fp });
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    let w1 = h.spawnWorker(oldConfig);
    let w2 = h.spawnWorker(oldConfig);
    await waitFor(async () => (await h.redis.hlen(h.keys.registryFollowers())) >= 4, {
      timeoutMs: 20_000,
      message: 'two workers and their evaluators to follow the registry',
    });

    // A steady producer: one event every 4 ms, each with its entry id.
    const producer = h.producer();
    const sent: { event: UsageEvent; entryId: string }[] = [];
    const base = Math.floor(Date.now() / MINUTE) * MINUTE - 5 * MINUTE;
    let producing = true;
    const production = (async () => {
      for (let i = 0; producing; i++) {
        const event: UsageEvent = {
          id: `e${i}`,
          source: 'deploy',
          type: 'llm',
          subject: `cust-${i % 7}`,
          time: new Date(base + (i % 240) * 1000).toISOString(),
          data: { model: i % 2 ? 'a' : 'b', tokens: (i % 13) + 1, user: `u${i % 11}` },
        };
        sent.push({ event, entryId: await producer.send(event) });
        await new Promise((resolve) => setTimeout(resolve, 4));
      }
    })();
    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

    await pause(3_000);
    await stop(w1, 'SIGTERM');
    w1 = h.spawnWorker(newConfig);
    // Every running process (the old worker, the new one, their evaluators) follows the new meter
    // within 5 s of its registration.
    await waitFor(async () => (await h.redis.hget(h.keys.registry(), 'version')) === '2', { timeoutMs: 20_000 });
    const registered = Date.now();
    await waitFor(
      async () => {
        const followers = Object.values(await h.redis.hgetall(h.keys.registryFollowers())).map(
          (v) => JSON.parse(v) as { version: number },
        );
        return followers.length === 4 && followers.every((f) => f.version === 2);
      },
      { timeoutMs: 20_000, intervalMs: 50, message: 'every process to follow registry v2' },
    );
    expect(Date.now() - registered).toBeLessThan(5_000);
    await pause(1_000);
    // A pod of the old version crashes and comes back on the old config, after the new one published.
    await stop(w2, 'SIGKILL');
    w2 = h.spawnWorker(oldConfig);
    await pause(7_000);
    await stop(w2, 'SIGTERM');
    w2 = h.spawnWorker(newConfig);
    await pause(3_000);
    producing = false;
    await production;
    await h.settle(90_000);
    watching = false;
    await watcher;

    // Where `users` starts counting in each partition: recorded once, in the partition's registry.
    const from = await Promise.all(
      Array.from({ length: PARTITIONS }, (_, p) => h.redis.hget(h.keys.partitionRegistry(p), 'from:users')),
    );
    const after = (entryId: string, p: number) => {
      const [ms, seq] = entryId.split('-').map(Number) as [number, number];
      const [fms, fseq] = (from[p] as string).split('-').map(Number) as [number, number];
      return ms > fms || (ms === fms && seq > fseq);
    };
    const expected = new TotalsModel([model.calls, model.tokens]);
    const expectedUsers = new TotalsModel([model.users]);
    let before = 0;
    for (const { event, entryId } of sent) {
      expected.add(event as never);
      if (after(entryId, partitionOf(event.subject, PARTITIONS))) expectedUsers.add(event as never);
      else before++;
    }
    expect(from.every((id) => id !== null && id !== '0-0')).toBe(true);
    expect(before).toBeGreaterThan(100);
    expect(sent.length - before).toBeGreaterThan(100);
    const { latest, repeated } = await h.finalRollups();
    expect(repeated).toEqual([]);
    expect(diffTotals(latest, new Map([...expected.expected(), ...expectedUsers.expected()]))).toEqual([]);
    expect(await h.redis.hget(h.keys.registry(), 'version')).toBe('2');

    // The catalog went from the old config's to the new one's once, and never back.
    expect(catalog.map((c) => c.ver)).toEqual([1, 2]);
    await stop(w1, 'SIGTERM');
    await stop(w2, 'SIGTERM');
  }, 180_000);
});
