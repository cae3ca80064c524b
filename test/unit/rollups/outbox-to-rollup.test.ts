import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AggregationCode, compileMeters, MeterIndex, type Aggregation } from '../../../src/meters/index.js';
import { outboxToRollup, outboxToRollups } from '../../../src/rollups/relay.js';

const aggregations = Object.keys(AggregationCode) as Aggregation[];
const meters = new MeterIndex(
  compileMeters(
    aggregations.map((aggregation) => ({
      slug: aggregation.toLowerCase(),
      eventType: 't',
      aggregation,
      ...(aggregation === 'COUNT' ? {} : { valueProperty: '$.v' }),
      groupBy: { model: '$.model', region: '$.region' },
      windowSize: 'MINUTE',
      timeZone: 'UTC',
    })),
  ),
);

/** The model: a scaled integer (micro-units) as plain decimal text, written independently of decimal.ts. */
function decimal(micro: bigint): string {
  const negative = micro < 0n;
  const abs = negative ? -micro : micro;
  const whole = abs / 1_000_000n;
  const frac = (abs % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  const text = frac ? `${whole}.${frac}` : `${whole}`;
  return negative && text !== '0' ? `-${text}` : text;
}

describe('outboxToRollup', () => {
  it('decodes every field of an outbox entry written by closeWindows', () => {
    const groupValue = fc.oneof(fc.constant(null), fc.string({ maxLength: 12 }));
    fc.assert(
      fc.property(
        fc.constantFrom(...aggregations),
        fc.bigInt({ min: -(2n ** 62n), max: 2n ** 62n }),
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.string({ maxLength: 20 }),
        groupValue,
        groupValue,
        fc.integer({ min: 0, max: 4_000_000_000 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 0, max: 1023 }),
        (aggregation, raw, count, subject, model, region, minute, revision, partition) => {
          const value = aggregation === 'UNIQUE_COUNT' ? (raw < 0n ? -raw : raw) / 1_000_000n : raw;
          const ws = minute * 60_000;
          const fields = [
            'm',
            aggregation.toLowerCase(),
            'a',
            AggregationCode[aggregation],
            'ws',
            String(ws),
            'we',
            String(ws + 60_000),
            'g',
            JSON.stringify([subject, model, region]),
            'v',
            String(value),
            'c',
            String(count),
            'r',
            String(revision),
          ];
          const job = outboxToRollup(fields, meters, partition);
          expect(job).toMatchObject({
            version: 1,
            meter: aggregation.toLowerCase(),
            aggregation,
            subject,
            groupBy: { model, region },
            windowStart: new Date(ws).toISOString(),
            windowEnd: new Date(ws + 60_000).toISOString(),
            eventCount: count,
            revision,
            partition,
          });
          if (aggregation === 'COUNT') expect(job.valueDecimal).toBe(String(count));
          else if (aggregation === 'UNIQUE_COUNT') expect(job.valueDecimal).toBe(String(value));
          else if (aggregation === 'AVG') {
            // Exact to the scale: the true quotient lies within one micro-unit of the decimal.
            const micro =
              BigInt(job.valueDecimal.replace('.', '')) *
              10n ** BigInt(6 - (job.valueDecimal.split('.')[1]?.length ?? 0));
            const diff = micro * BigInt(count) - raw;
            expect(diff < 0n ? -diff : diff).toBeLessThan(BigInt(count));
          } else expect(job.valueDecimal).toBe(decimal(raw));
          expect(job.value).toBe(Number(job.valueDecimal));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('decodes a page entry of a window close into the same rollups as one-rollup entries', () => {
    const rollup = fc.record({
      subject: fc.string({ maxLength: 20 }),
      model: fc.oneof(fc.constant(null), fc.string({ maxLength: 12 })),
      value: fc.bigInt({ min: -(2n ** 62n), max: 2n ** 62n }),
      count: fc.integer({ min: 1, max: 1_000_000 }),
      revision: fc.integer({ min: 1, max: 3 }),
    });
    fc.assert(
      fc.property(
        fc.constantFrom(...aggregations.filter((a) => a !== 'UNIQUE_COUNT')),
        fc.array(rollup, { minLength: 1, maxLength: 20 }),
        fc.integer({ min: 0, max: 1023 }),
        (aggregation, rollups, partition) => {
          const window = ['m', aggregation.toLowerCase(), 'a', AggregationCode[aggregation]];
          window.push('ws', '600000', 'we', '660000');
          // As closeWindows.lua writes them: cjson text of (group, value, count, revision) per rollup.
          const page = rollups.flatMap((r) => [
            JSON.stringify([r.subject, r.model, null]),
            String(r.value),
            String(r.count),
            r.revision,
          ]);
          const got = outboxToRollups(
            [...window, 'n', String(rollups.length), 'rollups', JSON.stringify(page)],
            meters,
            partition,
          );
          const one = rollups.map((r) => {
            const g = JSON.stringify([r.subject, r.model, null]);
            const fields = [
              ...window,
              'g',
              g,
              'v',
              String(r.value),
              'c',
              String(r.count),
              'r',
              String(r.revision),
            ];
            return { data: outboxToRollup(fields, meters, partition), group: g };
          });
          expect(got).toEqual(one);
        },
      ),
      { numRuns: 200 },
    );
  });
});
