import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/config/index.js';
import { PartitionView } from '../../../src/registry/index.js';
import { partitionOf } from '../../../src/producer/index.js';
import { cost, MAX_CALL_COST_US, prepareBatch, type StreamEntry } from '../../../src/worker/batch.js';
import { readCall, type CallRecord } from '../../support/apply-call.js';

const deep = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const config = resolveConfig(
  {
    streams: { partitions: 1, maxEntryBytes: 1_000_000 },
    meters: [
      {
        slug: 'tokens',
        eventType: 'llm',
        aggregation: 'SUM',
        valueProperty: '$.tokens',
        groupBy: { model: '$.model' },
        windowSize: '1m',
      },
    ],
  },
  {},
);
const view = new PartitionView(1, config.meters, new Map());
const now = Date.now();
const event = (id: string, data: string) =>
  `{"id":"${id}","source":"s","type":"llm","subject":"acme","data":${data}}`;

type Calls = ReturnType<typeof prepareBatch>['calls'];

/** The records of prepared calls, in order. */
function recordsOf(calls: Calls): CallRecord[] {
  return calls.flatMap((c) => readCall(c.records).entries.flatMap((e) => e.records));
}

/** The dead letters of prepared calls, as [index, reason, payload, field]. */
function deadLetters(calls: Calls): [number, string, string, string][] {
  return recordsOf(calls).flatMap((r) =>
    r.kind === 'dead' ? [[r.index, r.reason, r.payload, r.field]] : [],
  );
}

describe('prepareBatch with hostile values', () => {
  it('rejects an event whose group value is too deep to serialize as unprocessable, alone, and keeps the rest of its entry', () => {
    const bad = event('deep', `{"tokens":1,"model":${deep(10_000)}}`);
    const entries: StreamEntry[] = [
      [
        `${now}-0`,
        ['events', `[${event('a', '{"tokens":2,"model":"m"}')},${bad},${event('b', '{"tokens":3}')}]`],
      ],
      [`${now}-1`, ['event', bad]],
      [`${now}-2`, ['event', event('c', '{"tokens":4}')]],
    ];
    const prepared = prepareBatch(entries, { config, view, partition: 0 });
    expect(prepared).toMatchObject({ entries: 3, events: 5, rejected: 2 });
    const dead = deadLetters(prepared.calls);
    expect(dead.map(([index, reason, payload, field]) => [index, reason, payload === bad, field])).toEqual([
      [1, 'unprocessable', true, 'event'],
      [0, 'unprocessable', true, 'event'],
    ]);
    const records = recordsOf(prepared.calls);
    expect(records.filter((r) => r.kind === 'event')).toHaveLength(3);
    // The detail says what failed.
    expect(records.map((r) => r.kind === 'dead' && r.detail)).toContain(
      'RangeError: Maximum call stack size exceeded',
    );
  });

  it('forwards a misrouted deep event as its own text, its time pinned', () => {
    const cfg = resolveConfig({ ...config.data, streams: { ...config.data.streams, partitions: 4 } }, {});
    const text = `{"id":"f","source":"s","type":"llm","subject":"acme","data":{"tokens":1,"x":${deep(10_000)}}}`;
    const wrong = (partitionOf('acme', 4) + 1) % 4;
    const prepared = prepareBatch([[`${now}-0`, ['events', `[${text}]`]]], {
      config: cfg,
      view,
      partition: wrong,
    });
    expect(prepared.forwards).toEqual([
      {
        partition: partitionOf('acme', 4),
        fields: ['forwarded', String(wrong), 'event', `{"time":"${new Date(now).toISOString()}",${text.slice(1)}`],
      },
    ]);
    expect(prepared.rejected).toBe(0);
  });
});

/** Headers ('E'/'P' with their entry ids), events, dead letters, cells and updates of one call. */
function summarize(records: (string | number)[]): {
  headers: string[];
  valid: number;
  dead: number;
  cells: number;
  updates: number;
} {
  const call = readCall(records);
  const all = call.entries.flatMap((e) => e.records);
  return {
    headers: call.entries.map((e) => `${e.tag}${e.id}`),
    valid: call.events,
    dead: all.filter((r) => r.kind === 'dead').length,
    cells: call.cells.length,
    updates: all.reduce((n, r) => n + (r.kind === 'event' ? r.updates.length : 0), 0),
  };
}

/** A call's estimated Redis time, by the worker's own cost table. */
const costOf = (c: ReturnType<typeof summarize>) =>
  cost.entry * c.headers.length +
  cost.deadLetter * c.dead +
  cost.event * c.valid +
  cost.cell * c.cells +
  cost.update * (c.updates - c.cells);

describe('prepareBatch: short script calls', () => {
  const many = (count: number, valid: boolean) =>
    `[${Array.from({ length: count }, (_, i) => (valid ? event(`e${i}`, `{"tokens":${i},"model":"m"}`) : `{"id":"x${i}"}`)).join(',')}]`;

  it('spreads an entry of 10,000 events over calls of about 2 ms, acknowledging it in the last one', () => {
    const entries: StreamEntry[] = [
      [`${now}-0`, ['event', event('before', '{"tokens":1}')]],
      [`${now}-1`, ['events', many(10_000, true)]],
      [`${now}-2`, ['event', event('after', '{"tokens":1}')]],
    ];
    const { calls, events, chained } = prepareBatch(entries, { config, view, partition: 0 });
    expect(events).toBe(10_002);
    expect(chained).toBe(true);
    const summaries = calls.map((c) => summarize(c.records));
    // Every event of one cell (one subject, model and minute): 4.5 µs an event after the first.
    expect(calls.length).toBeGreaterThanOrEqual(
      Math.floor((10_002 * (cost.event + cost.update)) / MAX_CALL_COST_US),
    );
    for (const c of summaries) expect(costOf(c)).toBeLessThanOrEqual(MAX_CALL_COST_US);
    expect(summaries.reduce((sum, c) => sum + c.valid, 0)).toBe(10_002);
    const headers = summaries.flatMap((c) => c.headers);
    expect(headers[0]).toBe(`E${now}-0`);
    expect(headers.filter((h) => h === `E${now}-1`)).toHaveLength(1);
    expect(headers.filter((h) => h === `P${now}-1`)).toHaveLength(calls.length - 1);
    expect(headers.at(-1)).toBe(`E${now}-2`);
    expect(headers.at(-2)).toBe(`E${now}-1`);
    // Fingerprint numbers restart with each call.
    for (const c of calls) expect(c.fingerprints.length).toBe(16 * summarize(c.records).valid);
  });

  it('counts rejected events towards a call, and dead-letters an entry over maxEventsPerEntry whole, once', () => {
    const entries: StreamEntry[] = [
      [`${now}-0`, ['events', many(5_000, false)]],
      [`${now}-1`, ['events', many(10_001, false)]],
    ];
    const { calls, rejected } = prepareBatch(entries, { config, view, partition: 0 });
    expect(rejected).toBe(5_001);
    const summaries = calls.map((c) => summarize(c.records));
    for (const c of summaries) expect(costOf(c)).toBeLessThanOrEqual(MAX_CALL_COST_US);
    expect(calls.length).toBeGreaterThanOrEqual(15);
    const last = deadLetters(calls.slice(-1)).at(-1);
    expect(last?.[1]).toBe('too-many-events');
    expect(last?.[3]).toBe('events');
  });

  it('gives each event of a batch entry its UTF-8 byte range in the entry, for dead letters decided in Redis', () => {
    const a = event('a', '{"tokens":1,"model":"né"}');
    const b = event('b', '{"tokens":2,"model":"顧客"}');
    const raw = `[ ${a} ,${b}]`;
    const { calls } = prepareBatch([[`${now}-0`, ['events', raw]]], { config, view, partition: 0 });
    const ranges = recordsOf(calls).map((r): [number, number] =>
      r.kind === 'event' ? [r.from, r.to] : [0, 0],
    );
    const bytes = Buffer.from(raw);
    expect(ranges.map(([from, to]) => bytes.subarray(from - 1, to).toString())).toEqual([a, b]);
  });
});
