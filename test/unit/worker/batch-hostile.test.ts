import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/config/index.js';
import { MeterIndex } from '../../../src/meters/index.js';
import { partitionOf } from '../../../src/producer/index.js';
import { prepareBatch, type StreamEntry } from '../../../src/worker/index.js';

const deep = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const config = resolveConfig(
  {
    streams: { partitions: 1, maxEntryBytes: 1_000_000 },
    meters: [{ slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { model: '$.model' }, windowSize: '1m' }],
  },
  {},
);
const meters = new MeterIndex(config.meters);
const now = Date.now();
const event = (id: string, data: string) => `{"id":"${id}","source":"s","type":"llm","subject":"acme","data":${data}}`;

/** The 'D' records of a prepared batch, as [index, reason, payload, field]. */
function deadLetters(records: (string | number)[]): [number, string, string, string][] {
  const out: [number, string, string, string][] = [];
  for (let i = 0; i < records.length; ) {
    const tag = records[i];
    if (tag === 'E') i += 3;
    else if (tag === 'D') {
      out.push([records[i + 1] as number, records[i + 2] as string, records[i + 4] as string, records[i + 5] as string]);
      i += 6;
    } else i += 5 + (records[i + 4] as number) * 7;
  }
  return out;
}

describe('prepareBatch with hostile values', () => {
  it('rejects an event whose group value is too deep to serialize as unprocessable, alone, and keeps the rest of its entry', () => {
    const bad = event('deep', `{"tokens":1,"model":${deep(10_000)}}`);
    const entries: StreamEntry[] = [
      [`${now}-0`, ['events', `[${event('a', '{"tokens":2,"model":"m"}')},${bad},${event('b', '{"tokens":3}')}]`]],
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
    const prepared = prepareBatch([[`${now}-0`, ['events', `[${text}]`]]], { config: cfg, meters, partition: wrong });
    expect(prepared.forwards).toEqual([{ partition: partitionOf('acme', 4), json: `{"time":"${new Date(now).toISOString()}",${text.slice(1)}` }]);
    expect(prepared.rejected).toBe(0);
  });
});
