import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  listDeadLetters,
  partitionOf,
  replayDeadLetters,
  status,
  type UsageEvent,
} from '../../../src/index.js';
import { startRedisCluster, type RedisClusterHandle } from '../../support/redis-cluster.js';
import { Harness } from '../../support/tally.js';

const meters = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
];

describe('status and dead-letter replay on a 3-master Redis Cluster', () => {
  let cluster: RedisClusterHandle;
  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it(
    'reads every partition (one slot per pipeline) and replays into another slot',
    { timeout: 60_000 },
    async () => {
      const node = cluster.nodes[0]!;
      const harness = new Harness({
        meters,
        partitions: 4,
        cluster: true,
        redisUrl: `redis://${node.host}:${node.port}`,
        label: 'admin-cluster',
      });
      try {
        const time = new Date(Date.now() - 3 * 60_000).toISOString();
        const events: UsageEvent[] = Array.from({ length: 40 }, (_, i) => ({
          id: `c${i}`,
          source: 'cluster',
          type: 'llm',
          subject: `cust-${i % 8}`,
          time,
          data: { tokens: i % 10 === 0 ? 'lots' : 1 },
        }));
        const producer = harness.producer();
        for (const e of events) await producer.send(e);
        const worker = await harness.startWorker();
        await harness.settle(30_000);

        const s = await status(harness.redis, harness.config);
        const perPartition = [0, 1, 2, 3].map((p) => events.filter((e) => partitionOf(e.subject, 4) === p));
        expect(
          s.partitions.map((p) => [p.streamLength, p.group?.lag, p.pending.count, p.deadLetters]),
        ).toEqual(
          perPartition.map((es) => [
            es.length,
            0,
            0,
            es.filter((e) => (e.data as { tokens: unknown }).tokens === 'lots').length,
          ]),
        );
        expect(s.partitions.every((p) => p.consumers.some((c) => c.name === worker.consumer))).toBe(true);

        const dead = await listDeadLetters(harness.redis, harness.config, { reason: 'invalid-value' });
        expect(dead.map((d) => d.event?.id).sort()).toEqual(['c0', 'c10', 'c20', 'c30']);
        const result = await replayDeadLetters(harness.redis, harness.config, { reason: 'invalid-value' });
        expect(result.replayed).toHaveLength(4);
        expect(result.failed).toEqual([]);
        await harness.settle(30_000);
        const again = await listDeadLetters(harness.redis, harness.config);
        expect(again.map((d) => d.event?.id).sort()).toEqual(['c0', 'c10', 'c20', 'c30']);
        expect(again.map((d) => d.id)).not.toContain(dead[0]!.id);
      } finally {
        await harness.close();
      }
    },
  );
});
