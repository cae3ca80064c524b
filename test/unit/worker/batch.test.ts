import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/config/index.js';
import { EVENT_FIELD, EVENTS_FIELD } from '../../../src/events/index.js';
import { PartitionView } from '../../../src/registry/index.js';
import { partitionOf } from '../../../src/producer/index.js';
import { cost, MAX_CALL_COST_US, prepareBatch, type StreamEntry } from '../../../src/worker/batch.js';
import { readCall, type CallCell } from '../../support/apply-call.js';

const PARTITIONS = 4;
const config = resolveConfig(
  {
    streams: { partitions: PARTITIONS },
    meters: [
      {
        slug: 'tokens',
        eventType: 'llm',
        aggregation: 'SUM',
        valueProperty: '$.tokens',
        groupBy: { model: '$.model' },
        windowSize: 'MINUTE',
      },
      { slug: 'calls', eventType: 'llm', aggregation: 'COUNT', windowSize: 'HOUR' },
    ],
  },
  {},
);
const view = new PartitionView(1, config.meters, new Map());
const NOW = Date.parse('2026-12-03T12:00:00.000Z');

/** An event the generator makes: valid, or broken in one of a few ways. */
const eventArb = fc.record({
  id: fc.string({ minLength: 1, maxLength: 8 }),
  subject: fc.constantFrom('acme', 'globex', 'initech', 'umbrella', 'hooli'),
  type: fc.constantFrom('llm', 'llm', 'llm', 'other'),
  offsetMs: fc.integer({ min: 0, max: 3 * 3_600_000 }),
  tokens: fc.oneof(fc.integer({ min: 0, max: 100_000 }), fc.constant('lots')),
  model: fc.constantFrom('gpt-5', 'claude-4'),
});

const entryArb = fc.oneof(
  eventArb.map((e) => ({ batch: false, events: [e] })),
  fc.array(eventArb, { minLength: 1, maxLength: 40 }).map((events) => ({ batch: true, events })),
);

type GeneratedEvent = typeof eventArb extends fc.Arbitrary<infer T> ? T : never;

function toEvent(e: GeneratedEvent) {
  return {
    specversion: '1.0',
    id: e.id,
    source: 'unit',
    type: e.type,
    subject: e.subject,
    time: new Date(NOW - e.offsetMs).toISOString(),
    data: { tokens: e.tokens, model: e.model },
  };
}

describe('prepareBatch', () => {
  it('accounts for every event exactly once, acknowledges every entry once and sums as a plain model does', () => {
    fc.assert(
      fc.property(
        fc.array(entryArb, { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 0, max: PARTITIONS - 1 }),
        (entries, partition) => {
          const stream: StreamEntry[] = entries.map((e, i) => {
            const events = e.events.map(toEvent);
            return [
              `${NOW + i}-0`,
              e.batch ? [EVENTS_FIELD, JSON.stringify(events)] : [EVENT_FIELD, JSON.stringify(events[0])],
            ];
          });
          const prepared = prepareBatch(stream, { config, view, partition });

          // The model: per event, where it goes.
          let home = 0;
          let forwarded = 0;
          let unmetered = 0;
          // Meters are isolated: an event whose tokens are not a number still counts in `calls`, and
          // is dead-lettered for `tokens` alone.
          let tokensRejected = 0;
          const sums = new Map<string, bigint>();
          for (const e of entries.flatMap((x) => x.events)) {
            if (partitionOf(e.subject, PARTITIONS) !== partition) forwarded++;
            else if (e.type !== 'llm') unmetered++;
            else if (typeof e.tokens !== 'number') {
              home++;
              tokensRejected++;
            } else {
              home++;
              const minute = Math.floor((NOW - e.offsetMs) / 60_000) * 60_000;
              const key = `tokens|${minute}|${e.model}`;
              sums.set(key, (sums.get(key) ?? 0n) + BigInt(e.tokens));
            }
          }
          expect(prepared.forwards).toHaveLength(forwarded);
          expect(prepared.unmetered).toBe(unmetered);
          expect(prepared.rejected).toBe(0);
          expect(prepared.events).toBe(home + forwarded + unmetered);

          // What the calls say: every entry acknowledged once, in order (after any 'P' parts of it),
          // each cell's count and sum are those of the event updates pointing to it, and each call
          // is within its cost budget.
          const ids: string[] = [];
          const got = new Map<string, bigint>();
          let valid = 0;
          let meterRejections = 0;
          let open: string | undefined;
          for (const call of prepared.calls) {
            const read = readCall(call.records);
            const counts = new Map<CallCell, { n: number; sum: number }>();
            let updates = 0;
            let dead = 0;
            for (const entry of read.entries) {
              if (open !== undefined) expect(entry.id).toBe(open);
              if (entry.tag === 'E') ids.push(entry.id);
              open = entry.tag === 'P' ? entry.id : undefined;
              for (const record of entry.records) {
                if (record.kind === 'dead') {
                  dead++;
                  continue;
                }
                valid++;
                for (const r of record.rejections) {
                  expect(r).toMatchObject({ meter: 'tokens', reason: 'invalid-value' });
                  meterRejections++;
                }
                dead += record.rejections.length;
                for (const { cell, value } of record.updates) {
                  updates++;
                  const c = counts.get(cell) ?? { n: 0, sum: 0 };
                  c.n++;
                  c.sum += value as number;
                  counts.set(cell, c);
                  if (cell.window.meter !== 'tokens') continue;
                  const key = `tokens|${cell.window.start}|${(JSON.parse(cell.group) as string[])[1]!}`;
                  got.set(key, (got.get(key) ?? 0n) + BigInt(Math.round((value as number) / 1e6)));
                }
              }
            }
            expect(read.range).toEqual({
              first: read.entries[0]?.id,
              last: read.entries.at(-1)?.id,
              entries: read.entries.length,
            });
            for (const cell of read.cells) {
              expect(counts.get(cell)?.n).toBe(cell.count);
              expect(cell.b).toBe(0);
              expect(cell.a).toBe(cell.window.agg === 'S' ? counts.get(cell)?.sum : 0);
            }
            expect(call.fingerprints.length).toBe(read.events * 16);
            const callCost =
              cost.entry * read.entries.length +
              cost.deadLetter * dead +
              cost.event * read.events +
              cost.cell * read.cells.length +
              cost.update * (updates - read.cells.length);
            expect(callCost).toBeLessThanOrEqual(MAX_CALL_COST_US);
          }
          expect(open).toBeUndefined();
          expect(prepared.chained).toBe(
            prepared.calls.some((c) => readCall(c.records).entries.some((e) => e.tag === 'P')),
          );
          expect(ids).toEqual(stream.map(([id]) => id));
          expect(valid).toBe(home);
          expect(meterRejections).toBe(tokensRejected);
          expect(got).toEqual(sums);
        },
      ),
      { numRuns: 150 },
    );
  });
});
