import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/config/index.js';
import { MeterIndex } from '../../../src/meters/index.js';
import { partitionOf } from '../../../src/producer/index.js';
import { MAX_CALL_COST_US, prepareBatch, type StreamEntry } from '../../../src/worker/index.js';

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
const meters = new MeterIndex(config.meters);
const now = Date.now();
const event = (id: string, data: string) =>
  `{"id":"${id}","source":"s","type":"llm","subject":"acme","data":${data}}`;

/** The 'D' records of a prepared batch, as [index, reason, payload, field]. */
function deadLetters(records: (string | number)[]): [number, string, string, string][] {
  const out: [number, string, string, string][] = [];
  for (let i = 0; i < records.length;) {
    const tag = records[i];
    if (tag === 'E' || tag === 'P') i += 3;
    else if (tag === 'D') {
      out.push([
        records[i + 1] as number,
        records[i + 2] as string,
        records[i + 4] as string,
        records[i + 5] as string,
      ]);
      i += 6;
    } else i += 7 + (records[i + 6] as number) * 7;
  }
  return out;
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
    const prepared = prepareBatch(entries, { config, meters, partition: 0 });
    expect(prepared).toMatchObject({ entries: 3, events: 5, rejected: 2 });
    const records = prepared.calls.flatMap((c) => c.records);
    const dead = deadLetters(records);
    expect(dead.map(([index, reason, payload, field]) => [index, reason, payload === bad, field])).toEqual([
      [1, 'unprocessable', true, 'event'],
      [0, 'unprocessable', true, 'event'],
    ]);
    expect(records.filter((r) => r === 'V')).toHaveLength(3);
    // The detail says what failed.
    expect(records).toContain('RangeError: Maximum call stack size exceeded');
  });

  it('forwards a misrouted deep event as its own text, its time pinned', () => {
    const cfg = resolveConfig({ ...config.data, streams: { ...config.data.streams, partitions: 4 } }, {});
    const text = `{"id":"f","source":"s","type":"llm","subject":"acme","data":{"tokens":1,"x":${deep(10_000)}}}`;
    const wrong = (partitionOf('acme', 4) + 1) % 4;
    const prepared = prepareBatch([[`${now}-0`, ['events', `[${text}]`]]], {
      config: cfg,
      meters,
      partition: wrong,
    });
    expect(prepared.forwards).toEqual([
      {
        partition: partitionOf('acme', 4),
        json: `{"time":"${new Date(now).toISOString()}",${text.slice(1)}`,
      },
    ]);
    expect(prepared.rejected).toBe(0);
  });
});

/** Headers ('E'/'P' with their entry ids), 'V' and 'D' counts of one call's records. */
function summarize(records: (string | number)[]): {
  headers: string[];
  valid: number;
  dead: number;
  updates: number;
} {
  const out = { headers: [] as string[], valid: 0, dead: 0, updates: 0 };
  for (let i = 0; i < records.length;) {
    const tag = records[i];
    if (tag === 'E' || tag === 'P') {
      out.headers.push(`${tag}${records[i + 1] as string}`);
      i += 3;
    } else if (tag === 'D') {
      out.dead++;
      i += 6;
    } else {
      out.valid++;
      out.updates += records[i + 6] as number;
      i += 7 + (records[i + 6] as number) * 7;
    }
  }
  return out;
}

describe('prepareBatch: short script calls', () => {
  const many = (count: number, valid: boolean) =>
    `[${Array.from({ length: count }, (_, i) => (valid ? event(`e${i}`, `{"tokens":${i},"model":"m"}`) : `{"id":"x${i}"}`)).join(',')}]`;

  it('spreads an entry of 10,000 events over calls of about 2 ms, acknowledging it in the last one', () => {
    const entries: StreamEntry[] = [
      [`${now}-0`, ['event', event('before', '{"tokens":1}')]],
      [`${now}-1`, ['events', many(10_000, true)]],
      [`${now}-2`, ['event', event('after', '{"tokens":1}')]],
    ];
    const { calls, events } = prepareBatch(entries, { config, meters, partition: 0 });
    expect(events).toBe(10_002);
    const summaries = calls.map((c) => summarize(c.records));
    // 8 + 7 µs per event of one meter, 2 µs per entry header: at most 133 events per call.
    expect(calls.length).toBeGreaterThanOrEqual(10_002 / 133);
    for (const c of summaries)
      expect(2 * c.headers.length + 15 * c.valid).toBeLessThanOrEqual(MAX_CALL_COST_US);
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
    const { calls, rejected } = prepareBatch(entries, { config, meters, partition: 0 });
    expect(rejected).toBe(5_001);
    const summaries = calls.map((c) => summarize(c.records));
    for (const c of summaries)
      expect(2 * c.headers.length + 6 * c.dead).toBeLessThanOrEqual(MAX_CALL_COST_US);
    expect(calls.length).toBeGreaterThanOrEqual(15);
    const last = deadLetters(calls.at(-1)?.records ?? []).at(-1);
    expect(last?.[1]).toBe('too-many-events');
    expect(last?.[3]).toBe('events');
  });

  it('gives each event of a batch entry its UTF-8 byte range in the entry, for dead letters decided in Redis', () => {
    const a = event('a', '{"tokens":1,"model":"né"}');
    const b = event('b', '{"tokens":2,"model":"顧客"}');
    const raw = `[ ${a} ,${b}]`;
    const { calls } = prepareBatch([[`${now}-0`, ['events', raw]]], { config, meters, partition: 0 });
    const records = calls[0]?.records ?? [];
    const ranges: [number, number][] = [];
    for (let i = 0; i < records.length;) {
      if (records[i] === 'E') i += 3;
      else {
        ranges.push([records[i + 4] as number, records[i + 5] as number]);
        i += 7 + (records[i + 6] as number) * 7;
      }
    }
    const bytes = Buffer.from(raw);
    expect(ranges.map(([from, to]) => bytes.subarray(from - 1, to).toString())).toEqual([a, b]);
  });
});
