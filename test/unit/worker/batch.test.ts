import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/config/index.js';
import { EVENT_FIELD, EVENTS_FIELD } from '../../../src/events/index.js';
import { MeterIndex } from '../../../src/meters/index.js';
import { partitionOf } from '../../../src/producer/index.js';
import { MAX_CALL_COST_US, prepareBatch, type StreamEntry } from '../../../src/worker/batch.js';

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
const meters = new MeterIndex(config.meters);
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
          const prepared = prepareBatch(stream, { config, meters, partition });

          // The model: per event, where it goes.
          let home = 0;
          let forwarded = 0;
          let unmetered = 0;
          let rejected = 0;
          const sums = new Map<string, bigint>();
          for (const e of entries.flatMap((x) => x.events)) {
            if (partitionOf(e.subject, PARTITIONS) !== partition) forwarded++;
            else if (e.type !== 'llm') unmetered++;
            else if (typeof e.tokens !== 'number') rejected++;
            else {
              home++;
              const minute = Math.floor((NOW - e.offsetMs) / 60_000) * 60_000;
              const key = `tokens|${minute}|${e.model}`;
              sums.set(key, (sums.get(key) ?? 0n) + BigInt(e.tokens));
            }
          }
          expect(prepared.forwards).toHaveLength(forwarded);
          expect(prepared.unmetered).toBe(unmetered);
          expect(prepared.rejected).toBe(rejected);
          expect(prepared.events).toBe(home + forwarded + unmetered + rejected);

          // What the records say: every entry acknowledged once, in order (after any 'P' parts of it), and
          // each call within its cost budget (Redis time: 2 µs an entry, 6 a rejection, 8 + 7 per update an event).
          const ids: string[] = [];
          const got = new Map<string, bigint>();
          let valid = 0;
          let open: string | undefined;
          for (const call of prepared.calls) {
            const r = call.records;
            let cost = 0;
            let fingerprints = 0;
            for (let i = 0; i < r.length;) {
              const tag = r[i];
              if (tag === 'E' || tag === 'P') {
                const id = r[i + 1] as string;
                if (open !== undefined) expect(id).toBe(open);
                if (tag === 'E') ids.push(id);
                open = tag === 'P' ? id : undefined;
                cost += 2;
                i += 3;
              } else if (tag === 'D') {
                cost += 6;
                i += 6;
              } else if (tag === 'V') {
                valid++;
                fingerprints++;
                const updates = r[i + 6] as number;
                cost += 8 + 7 * updates;
                i += 7;
                for (let u = 0; u < updates; u++, i += 7) {
                  if (r[i] !== 'tokens') continue;
                  const key = `tokens|${r[i + 2] as string}|${(JSON.parse(r[i + 4] as string) as string[])[1]!}`;
                  got.set(key, (got.get(key) ?? 0n) + BigInt(Math.round(Number(r[i + 5]) / 1e6)));
                }
              } else throw new Error(`unknown record tag ${String(tag)}`);
            }
            expect(call.fingerprints.length).toBe(fingerprints * 16);
            expect(cost).toBeLessThanOrEqual(MAX_CALL_COST_US);
          }
          expect(open).toBeUndefined();
          expect(ids).toEqual(stream.map(([id]) => id));
          expect(valid).toBe(home);
          expect(got).toEqual(sums);
        },
      ),
      { numRuns: 150 },
    );
  });
});
