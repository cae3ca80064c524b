import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TallyKeys } from '../../../src/index.js';
import { makeEvents, METERS, MODEL_METERS } from '../../support/fixtures.js';
import { TotalsModel } from '../../support/model.js';
import { startRedisCluster, type RedisClusterHandle } from '../../support/redis-cluster.js';
import { diffTotals, Harness } from '../../support/tally.js';

/** Slot of a key (CRC16/XMODEM of its hash tag), as Redis Cluster computes it. */
function slotOf(key: string): number {
  const open = key.indexOf('{');
  const close = key.indexOf('}', open + 1);
  const tag = open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key;
  let crc = 0;
  for (const byte of Buffer.from(tag)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

describe('on a 3-master Redis Cluster', () => {
  let cluster: RedisClusterHandle;
  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3, appendonly: true });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('spreads partitions over the masters and keeps totals exact through a resharding and a node restart', async () => {
    const node = cluster.nodes[0] as { host: string; port: number };
    const harness = new Harness({
      meters: METERS,
      partitions: 6,
      cluster: true,
      redisUrl: `redis://${node.host}:${node.port}`,
      label: 'cluster',
    });
    try {
      const keys = new TallyKeys(harness.prefix);
      const owners = new Set<number>();
      for (let p = 0; p < 6; p++) owners.add(await cluster.slotOwner(slotOf(keys.events(p))));
      expect(owners.size).toBeGreaterThan(1);

      const events = makeEvents(12_000, { dupRate: 0.1, subjects: 30 });
      const model = new TotalsModel(MODEL_METERS);
      for (const e of events) model.add(e as never);
      const producer = harness.producer();
      await harness.startWorker();
      await producer.sendBatch(events.slice(0, 4000));

      // Move partition 0's slot (stream, windows, dedup: one hash tag) to another master mid-stream.
      const slot = slotOf(keys.events(0));
      const from = await cluster.slotOwner(slot);
      await cluster.moveSlot(slot, (from + 1) % 3);
      await producer.sendBatch(events.slice(4000, 8000));

      // Restart a master (AOF on): clients reconnect and resume.
      await cluster.restartNode(2);
      await producer.sendBatch(events.slice(8000));
      await harness.settle(60_000);

      const { latest, repeated } = await harness.finalRollups();
      expect(repeated).toEqual([]);
      expect(diffTotals(latest, model.expected())).toEqual([]);
    } finally {
      await harness.close();
    }
  }, 120_000);
});
