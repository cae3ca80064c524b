import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  listDeadLetters,
  partitionOf,
  replayDeadLetters,
  resolveConfig,
  TallyConfigError,
  TallyWorker,
  type UsageEvent,
} from '../../../src/index.js';
import { Harness } from '../../support/tally.js';

const MINUTE = 60_000;
const meters = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
];

/**
 * The minute the file's clock starts in, fixed once: events made before and after a settle must land
 * in the same window even when a minute boundary passes in between (a late event would otherwise
 * fall into the next, still open window and not be late at all).
 */
const BASE_MINUTE = Math.floor(Date.now() / MINUTE) * MINUTE;

function event(id: string, tokens: unknown, minutesAgo = 3, subject = 'acme'): UsageEvent {
  const start = BASE_MINUTE - minutesAgo * MINUTE;
  return {
    id,
    source: 'dl',
    type: 'llm',
    subject,
    time: new Date(start + 1000).toISOString(),
    data: { tokens },
  };
}

describe('dead letters: list and replay', () => {
  let harness: Harness | undefined;
  const extraWorkers: TallyWorker[] = [];
  afterEach(async () => {
    await Promise.all(extraWorkers.splice(0).map((w) => w.close()));
    await harness?.close();
    harness = undefined;
  });

  it('lists a failing event with its fields, and a replay re-processes it (it fails again: dead-lettered anew)', async () => {
    harness = new Harness({ meters, label: 'dl' });
    const producer = harness.producer();
    const bad = event('bad-1', 'lots');
    await producer.send(bad);
    // In a batch entry: the second of three events fails.
    await producer.sendBatch([event('ok-1', 1), event('bad-2', 'many'), event('ok-2', 2)]);
    await harness.startWorker();
    await harness.settle();

    const listed = await listDeadLetters(harness.redis, harness.config);
    expect(listed).toHaveLength(2);
    const [single, inBatch] = listed;
    expect(single).toMatchObject({
      partition: 0,
      reason: 'invalid-value',
      field: 'event',
      index: 0,
      deliveries: null,
      event: { id: 'bad-1', source: 'dl', subject: 'acme' },
    });
    expect(single!.ref).toBe(`0/${single!.id}`);
    expect(JSON.parse(single!.payload)).toMatchObject({ id: 'bad-1', data: { tokens: 'lots' } });
    expect(single!.at).toBeGreaterThan(Date.now() - 60_000);
    expect(inBatch).toMatchObject({
      reason: 'invalid-value',
      field: 'event', // a bad event of a batch entry is dead-lettered alone
      index: 1,
      event: { id: 'bad-2' },
    });
    expect(await listDeadLetters(harness.redis, harness.config, { reason: 'late' })).toEqual([]);
    expect(await listDeadLetters(harness.redis, harness.config, { limit: 1 })).toEqual([single]);
    expect(await listDeadLetters(harness.redis, harness.config, { after: single!.ref })).toEqual([inBatch]);

    const dry = await replayDeadLetters(harness.redis, harness.config, { all: true, dryRun: true });
    expect(dry.replayed.map((x) => [x.ref, x.entryId, x.deleted])).toEqual([
      [single!.ref, null, false],
      [inBatch!.ref, null, false],
    ]);
    expect(await listDeadLetters(harness.redis, harness.config)).toEqual(listed); // nothing written

    const result = await replayDeadLetters(harness.redis, harness.config, {
      ids: [single!.ref, inBatch!.ref, '0/1-1'],
    });
    expect(result.notFound).toEqual(['0/1-1']);
    expect(result.failed).toEqual([]);
    expect(result.replayed.map((x) => [x.ref, x.partition, x.field, x.scope, x.deleted])).toEqual([
      [single!.ref, 0, 'event', 'event', true],
      [inBatch!.ref, 0, 'event', 'event', true],
    ]);
    await harness.settle();

    // Both were processed again and failed again: two new dead letters, pointing at the replayed entries.
    const again = await listDeadLetters(harness.redis, harness.config);
    expect(again.map((d) => [d.reason, d.event?.id, d.entry, d.field, d.index])).toEqual([
      ['invalid-value', 'bad-1', result.replayed[0]!.entryId, 'event', 0],
      ['invalid-value', 'bad-2', result.replayed[1]!.entryId, 'event', 0],
    ]);
    // The batch's event was replayed alone, unchanged.
    expect(JSON.parse(again[1]!.payload)).toEqual(JSON.parse(inBatch!.payload));
    expect(again.map((d) => d.id)).not.toContain(single!.id);
    // The good events were counted once and are not disturbed.
    expect((await harness.rollups()).map((r) => r.valueDecimal)).toEqual(['3']);
  });

  it('a late event replayed under latePolicy correct counts exactly once, even replayed twice', async () => {
    harness = new Harness({ meters, label: 'dl', windows: { latePolicy: 'dead-letter' } });
    const producer = harness.producer();
    await producer.send(event('on-time', 10));
    const first = await harness.startWorker();
    await harness.settle();
    await producer.sendBatch([event('late-1', 99), event('late-2', 1)]);
    await harness.settle();
    expect(
      (await listDeadLetters(harness.redis, harness.config)).map((d) => [
        d.reason,
        d.event?.id,
        d.field,
        d.index,
      ]),
    ).toEqual([
      // Each holds its event alone (cut out of the batch entry), not the whole entry.
      ['late', 'late-1', 'event', 0],
      ['late', 'late-2', 'event', 1],
    ]);
    const [late] = await listDeadLetters(harness.redis, harness.config);
    expect(late?.detail).toMatch(
      /^late: event time \d{4}-[\d-]+T[\d:.]+Z is in a window \(ended [\dT:.Z-]+\) already emitted, or closed by the watermark/,
    );
    expect((await harness.rollups()).map((r) => [r.revision, r.valueDecimal])).toEqual([[1, '10']]);

    // The operator switches the late policy to `correct`, then replays the late events.
    await first.close();
    const config = resolveConfig(
      { ...harness.raw, windows: { ...(harness.raw.windows as object), latePolicy: 'correct' } },
      {},
    );
    const worker = new TallyWorker({ config, logger: pino({ level: 'silent' }) });
    extraWorkers.push(worker);
    await worker.start();

    // Kept (as after a crash between the re-add and the XDEL), replayed again, then replayed and removed.
    const once = await replayDeadLetters(harness.redis, config, { reason: 'late', delete: false });
    expect(once.replayed).toHaveLength(2);
    await harness.settle();
    const twice = await replayDeadLetters(harness.redis, config, { all: true, delete: false });
    expect(twice.replayed).toHaveLength(2);
    await harness.settle();
    const thrice = await replayDeadLetters(harness.redis, config, { reason: 'late' });
    expect(thrice.replayed.every((x) => x.deleted)).toBe(true);
    await harness.settle();

    expect(await listDeadLetters(harness.redis, config)).toEqual([]);
    // The model: three distinct events, 10 + 99 + 1.
    const { latest, repeated } = await harness.finalRollups();
    expect(repeated).toEqual([]);
    expect([...latest.values()].map((r) => [r.valueDecimal, r.eventCount])).toEqual([['110', 3]]);
    expect(worker.getStats()).toMatchObject({ applied: 2, duplicates: 4, deadLettered: 0 });
  });

  it('lists dead letters oldest first across partitions, so new ones come last, and pages on by ref', async () => {
    harness = new Harness({ meters, partitions: 3, label: 'dl' });
    const r = harness.redis;
    const cfg = harness.config;
    // Explicit ids: arrival order interleaves partitions (2, 0, 1, 0, then a tie of 2 and 1).
    const written: [number, string][] = [
      [2, '1700000000000-0'],
      [0, '1700000000001-0'],
      [1, '1700000000001-1'],
      [0, '1700000000002-0'],
      [2, '1700000000003-0'],
      [1, '1700000000003-0'],
    ];
    for (const [p, id] of written)
      await r.xadd(harness.keys.deadLetter(p), id, 'reason', p === 0 ? 'late' : 'invalid', 'detail', 'x');
    // The model: sorted by (id time, id sequence, partition).
    const model = [...written]
      .sort(([pa, a], [pb, b]) => {
        const [am, as] = a.split('-').map(Number) as [number, number];
        const [bm, bs] = b.split('-').map(Number) as [number, number];
        return am - bm || as - bs || pa - pb;
      })
      .map(([p, id]) => `${p}/${id}`);
    expect(model.at(-1)).toBe('2/1700000000003-0');
    expect((await listDeadLetters(r, cfg)).map((d) => d.ref)).toEqual(model);
    // Paging by the last ref returned, two at a time, walks the same order (ties included).
    const paged: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await listDeadLetters(r, cfg, { limit: 2, ...(after ? { after } : {}) });
      if (page.length === 0) break;
      paged.push(...page.map((d) => d.ref));
      after = page.at(-1)!.ref;
    }
    expect(paged).toEqual(model);
    expect((await listDeadLetters(r, cfg, { reason: 'late' })).map((d) => d.ref)).toEqual(
      model.filter((ref) => ref.startsWith('0/')),
    );
    expect((await listDeadLetters(r, cfg, { partition: 1 })).map((d) => d.ref)).toEqual(
      model.filter((ref) => ref.startsWith('1/')),
    );
  });

  it('replays a poison entry whole, skips dead letters that are not about an event, and checks its options', async () => {
    harness = new Harness({ meters, partitions: 2, label: 'dl' });
    const r = harness.redis;
    const cfg = harness.config;
    const batch = JSON.stringify([event('p-1', 1, 1, 'acme'), event('p-2', 2, 1, 'globex')]);
    const dl1 = harness.keys.deadLetter(1);
    // As deadLetterEntries.lua and applyBatch.lua write them.
    const poisonId = (await r.xadd(
      dl1,
      '*',
      'reason',
      'poison',
      'detail',
      'boom',
      'entry',
      '1700000000000-0',
      'index',
      '-1',
      'field',
      'events',
      'payload',
      batch,
      'deliveries',
      '5',
      'at',
      String(Date.now()),
    )) as string;
    const overflowId = (await r.xadd(
      dl1,
      '*',
      'reason',
      'sum-overflow',
      'detail',
      'w:tokens += 9e18',
      'entry',
      '',
      'index',
      '-1',
      'field',
      '',
      'payload',
      '',
      'at',
      String(Date.now()),
    )) as string;

    const [poison, overflow] = await listDeadLetters(r, cfg, { partition: 1 });
    expect(poison).toMatchObject({
      ref: `1/${poisonId}`,
      reason: 'poison',
      index: -1,
      field: 'events',
      deliveries: 5,
      entry: '1700000000000-0',
    });
    expect(overflow).toMatchObject({ ref: `1/${overflowId}`, entry: null, field: null, event: null });
    expect(await listDeadLetters(r, cfg, { partition: 0 })).toEqual([]);

    await expect(replayDeadLetters(r, cfg, {})).rejects.toThrow(TallyConfigError);
    await expect(replayDeadLetters(r, cfg, { all: true, reason: 'poison' })).rejects.toThrow(
      /exactly one of/,
    );
    await expect(replayDeadLetters(r, cfg, { ids: [poisonId] })).rejects.toThrow(/names no partition/);
    await expect(replayDeadLetters(r, cfg, { ids: [`7/${poisonId}`] })).rejects.toThrow(
      /partition must be one of 0..1/,
    );
    await expect(listDeadLetters(r, cfg, { partition: 2 })).rejects.toThrow(
      /partition: expected one of 0..1/,
    );

    const result = await replayDeadLetters(r, cfg, { ids: [poisonId, overflowId], partition: 1 });
    expect(result.skipped.map((x) => [x.ref, x.reason])).toEqual([[`1/${overflowId}`, 'sum-overflow']]);
    expect(result.skipped[0]?.why).toContain('no original payload');
    expect(result.replayed).toEqual([
      expect.objectContaining({
        ref: `1/${poisonId}`,
        partition: 1,
        field: 'events',
        scope: 'entry',
        deleted: true,
      }),
    ]);
    // The whole entry is back, value unchanged, under its original field, in the dead letter's partition.
    const entries = (await r.xrange(harness.keys.events(1), '-', '+')) as [string, string[]][];
    expect(entries).toEqual([[result.replayed[0]!.entryId, ['events', batch]]]);
    expect((await listDeadLetters(r, cfg)).map((d) => d.id)).toEqual([overflowId]);

    // A worker forwards the event of the other partition and counts both once.
    await harness.startWorker();
    await harness.settle();
    const totals = (await harness.rollups()).map((x) => [x.subject, x.valueDecimal, x.partition]).sort();
    expect(totals).toEqual([
      ['acme', '1', partitionOf('acme', 2)],
      ['globex', '2', partitionOf('globex', 2)],
    ]);
  });
});
