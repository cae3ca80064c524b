import { afterEach, describe, expect, it } from 'vitest';
import { partitionOf, status, type PartitionStatus, type UsageEvent } from '../../../src/index.js';
import { waitFor } from '../../support/redis.js';
import { Harness } from '../../support/tally.js';

const MINUTE = 60_000;
const meters = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
];
const minuteStart = (ms: number) => Math.floor(ms / MINUTE) * MINUTE;

/** Events over two past minutes and six subjects (both partitions of two), one entry each. */
function makeEvents(n: number): UsageEvent[] {
  const base = minuteStart(Date.now()) - 3 * MINUTE;
  return Array.from({ length: n }, (_, i) => ({
    id: `s${i}`,
    source: 'status',
    type: 'llm',
    subject: `cust-${(i % 2) * 4 + (i % 3)}`, // cust-0..2 → partition 1, cust-4..6 → partition 0
    time: new Date(base + (i % 2) * MINUTE + i * 10).toISOString(),
    data: { tokens: i + 1 },
  }));
}

/** The independent model: per partition, entries, largest event time and window starts. */
function model(events: readonly UsageEvent[], partitions: number) {
  const out = Array.from({ length: partitions }, () => ({
    entries: 0,
    maxTime: 0,
    windows: new Set<number>(),
  }));
  for (const e of events) {
    const m = out[partitionOf(e.subject, partitions)]!;
    const t = Date.parse(e.time!);
    m.entries++;
    m.maxTime = Math.max(m.maxTime, t);
    m.windows.add(minuteStart(t));
  }
  return out;
}

describe('status', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('reflects a worker that has applied everything: no lag, nothing pending, windows closed, lease held', async () => {
    harness = new Harness({ meters, partitions: 2, label: 'status' });
    const events = makeEvents(40);
    const expected = model(events, 2);
    expect(expected.every((m) => m.entries > 0)).toBe(true);
    const producer = harness.producer();
    for (const e of events) await producer.send(e);
    // One invalid event (a SUM value that is no number), as its own entry, in cust-0's partition.
    const bad = { ...events[0]!, id: 'bad-1', data: { tokens: 'lots' } };
    await producer.send(bad);
    const badPartition = partitionOf(bad.subject, 2);
    expected[badPartition]!.entries++;

    const worker = await harness.startWorker('status-worker');
    await harness.settle();
    // settle() waits for the pipeline; the lease and the registry heartbeat come with the worker's start.
    const s = await waitFor(async () => {
      const st = await status(harness!.redis, harness!.config);
      return st.partitions.every((p) => p.lease.owner === worker.consumer) ? st : undefined;
    });

    expect(s.prefix).toBe(harness.prefix);
    expect(s.partitionCount).toBe(2);
    expect(Math.abs(s.at - Date.now())).toBeLessThan(5_000);
    for (const p of s.partitions) {
      const m = expected[p.partition]!;
      expect(p.streamLength).toBe(m.entries);
      expect(p.group).toMatchObject({ lag: 0, entriesRead: m.entries, pending: 0 });
      expect(p.pending).toMatchObject({ count: 0, oldestId: null, oldestAgeMs: null });
      expect(p.windows).toEqual({ open: 0, oldest: null });
      expect(p.streamTime).toBe(m.maxTime);
      // Every window has closed, by the wall clock once the partition went quiet; the watermark is
      // built from applied event time only, so it stays at the stream time.
      expect(p.closedThrough).toBe(m.maxTime);
      expect(p.deadLetters).toBe(p.partition === badPartition ? 1 : 0);
      expect(p.outbox).toBe(0);
      expect(p.correctionsPending).toBe(0);
      expect(p.lease.ttlMs).toBeGreaterThan(0);
      expect(p.lease.ttlMs).toBeLessThanOrEqual(1_000); // worker.leaseTtl in the harness
      expect(p.consumers).toEqual([
        expect.objectContaining({ name: worker.consumer, pending: 0, leaseOwner: true, stale: false }),
      ]);
    }
    expect(s.replicas).toEqual([
      expect.objectContaining({ name: worker.consumer, live: true, partitions: [0, 1] }),
    ]);
    expect(s.warnings).toEqual([`partition ${badPartition}: 1 dead letters (tally dead-letter list)`]);
  });

  it('shows open windows with the oldest close point while their grace lasts', async () => {
    harness = new Harness({ meters, partitions: 2, label: 'status', windows: { grace: '10m' } });
    const events = makeEvents(20);
    const expected = model(events, 2);
    await harness.producer().sendBatch(events);
    await harness.startWorker();
    const s = await waitFor(async () => {
      const st = await status(harness!.redis, harness!.config);
      const applied = (p: PartitionStatus) =>
        p.group?.lag === 0 && p.pending.count === 0 && (p.closedThrough ?? 0) >= (p.streamTime ?? 1);
      return st.partitions.every(applied) ? st : undefined;
    });
    for (const p of s.partitions) {
      const m = expected[p.partition]!;
      const oldest = Math.min(...m.windows);
      expect(p.windows.open).toBe(m.windows.size);
      expect(p.windows.oldest).toEqual({
        meter: 'tokens',
        aggregation: 'S',
        start: oldest,
        end: oldest + MINUTE,
        closesAt: oldest + MINUTE + 10 * MINUTE,
      });
      expect(p.streamTime).toBe(m.maxTime);
      expect(p.closedThrough).toBeLessThan(oldest + MINUTE + 10 * MINUTE);
    }
  });

  it('shows a backlog with no worker: lag, pending entries of a consumer that stopped, no lease, a missing group', async () => {
    harness = new Harness({ meters, partitions: 2, label: 'status' });
    const r = harness.redis;
    const group = harness.config.consumerGroup;
    const stream = harness.keys.events(0);
    const ids: string[] = [];
    for (let i = 0; i < 10; i++)
      ids.push((await r.xadd(stream, '*', 'event', JSON.stringify({ i }))) as string);
    await r.xgroup('CREATE', stream, group, '0');
    // A consumer that read four entries and died before applying them.
    await r.xreadgroup('GROUP', group, 'ghost', 'COUNT', 4, 'STREAMS', stream, '>');

    const s = await status(r, harness.config);
    const [p0, p1] = s.partitions;
    expect(p0).toMatchObject({
      streamLength: 10,
      group: { lag: 6, entriesRead: 4, pending: 4, lastDeliveredId: ids[3] },
      lease: { owner: null, ttlMs: null },
      windows: { open: 0, oldest: null },
      closedThrough: null,
      streamTime: null,
      deadLetters: 0,
    });
    expect(p0!.pending).toMatchObject({
      count: 4,
      oldestId: ids[0],
      oldestConsumer: 'ghost',
      oldestDeliveries: 1,
    });
    const firstMs = Number(ids[0]!.split('-')[0]);
    expect(p0!.pending.oldestAgeMs).toBe(s.at - firstMs);
    expect(p0!.pending.oldestIdleMs).toBeGreaterThanOrEqual(0);
    expect(p0!.consumers).toEqual([
      expect.objectContaining({ name: 'ghost', pending: 4, leaseOwner: false, stale: false }),
    ]);
    // Partition 1: nothing there at all, not even the stream.
    expect(p1).toMatchObject({ streamLength: 0, group: null, consumers: [], pending: { count: 0 } });
    expect(s.replicas).toEqual([]);
    expect(s.warnings).toEqual([
      'partition 0: 10 entries waiting and no replica holds its lease',
      `partition 1: consumer group "${group}" does not exist (no worker has started on it yet, or Redis lost its data)`,
    ]);
  });
});
