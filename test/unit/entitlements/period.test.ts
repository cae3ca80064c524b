import { describe, expect, it } from 'vitest';
import { parseUsagePeriod, periodAt } from '../../../src/entitlements/period.js';
import { TallyConfigError } from '../../../src/errors/index.js';

const iso = (ms: number) => new Date(ms).toISOString();
const at = (s: string) => Date.parse(s);

function bounds(interval: string, t: string, anchor?: string, timeZone?: string): [string, string] {
  const p = periodAt(
    parseUsagePeriod({ interval, ...(anchor ? { anchor } : {}), ...(timeZone ? { timeZone } : {}) }),
    at(t),
  );
  return [iso(p.start), iso(p.end)];
}

/** Local wall-clock reading of an instant in a zone, `YYYY-MM-DD HH:mm`, via Intl (independent of period.ts). */
function local(ms: number, timeZone: string): string {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-CA', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
    })
      .formatToParts(ms)
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
}

describe('usage periods', () => {
  it('calendar months in UTC from the default anchor', () => {
    expect(bounds('MONTH', '2024-02-15T10:00:00Z')).toEqual([
      '2024-02-01T00:00:00.000Z',
      '2024-03-01T00:00:00.000Z',
    ]);
    expect(bounds('MONTH', '2024-03-01T00:00:00Z')).toEqual([
      '2024-03-01T00:00:00.000Z',
      '2024-04-01T00:00:00.000Z',
    ]);
    expect(bounds('MONTH', '2024-02-29T23:59:59.999Z')).toEqual([
      '2024-02-01T00:00:00.000Z',
      '2024-03-01T00:00:00.000Z',
    ]);
  });

  it('month ends: an anchor on the 31st clamps to shorter months without drifting', () => {
    const a = '2024-01-31';
    expect(bounds('MONTH', '2024-03-10T00:00:00Z', a)).toEqual([
      '2024-02-29T00:00:00.000Z',
      '2024-03-31T00:00:00.000Z',
    ]);
    expect(bounds('MONTH', '2024-04-30T00:00:00Z', a)).toEqual([
      '2024-04-30T00:00:00.000Z',
      '2024-05-31T00:00:00.000Z',
    ]);
    expect(bounds('MONTH', '2025-02-28T12:00:00Z', a)).toEqual([
      '2025-02-28T00:00:00.000Z',
      '2025-03-31T00:00:00.000Z',
    ]);
    // Before the anchor too.
    expect(bounds('MONTH', '2023-12-31T05:00:00Z', a)).toEqual([
      '2023-12-31T00:00:00.000Z',
      '2024-01-31T00:00:00.000Z',
    ]);
    expect(bounds('MONTH', '2023-03-01T00:00:00Z', a)).toEqual([
      '2023-02-28T00:00:00.000Z',
      '2023-03-31T00:00:00.000Z',
    ]);
    // A leap-day anchor: Feb 29, then the 28th in common years, back to the 29th in leap years.
    expect(bounds('YEAR', '2025-06-01T00:00:00Z', '2024-02-29')).toEqual([
      '2025-02-28T00:00:00.000Z',
      '2026-02-28T00:00:00.000Z',
    ]);
    expect(bounds('YEAR', '2028-03-01T00:00:00Z', '2024-02-29')).toEqual([
      '2028-02-29T00:00:00.000Z',
      '2029-02-28T00:00:00.000Z',
    ]);
  });

  it('days across DST are 23 and 25 hours long (Europe/Berlin)', () => {
    const spring = bounds('DAY', '2024-03-31T12:00:00Z', undefined, 'Europe/Berlin');
    expect(spring).toEqual(['2024-03-30T23:00:00.000Z', '2024-03-31T22:00:00.000Z']);
    const fall = bounds('DAY', '2024-10-27T12:00:00Z', undefined, 'Europe/Berlin');
    expect(fall).toEqual(['2024-10-26T22:00:00.000Z', '2024-10-27T23:00:00.000Z']);
  });

  it('months in a zone start at local midnight whatever the offset (America/New_York)', () => {
    expect(bounds('MONTH', '2024-03-15T00:00:00Z', undefined, 'America/New_York')).toEqual([
      '2024-03-01T05:00:00.000Z',
      '2024-04-01T04:00:00.000Z',
    ]);
    expect(bounds('MONTH', '2024-11-15T00:00:00Z', undefined, 'America/New_York')).toEqual([
      '2024-11-01T04:00:00.000Z',
      '2024-12-01T05:00:00.000Z',
    ]);
    // 2024-03-01T03:00Z is still February 29 in New York.
    expect(bounds('MONTH', '2024-03-01T03:00:00Z', undefined, 'America/New_York')).toEqual([
      '2024-02-01T05:00:00.000Z',
      '2024-03-01T05:00:00.000Z',
    ]);
  });

  it('an anchor time skipped by DST moves forward by the gap; a repeated one takes the first', () => {
    // 02:30 does not exist on 2024-03-10 in New York: the period starts at 03:30 EDT.
    expect(bounds('DAY', '2024-03-10T12:00:00Z', '2024-01-01T02:30', 'America/New_York')).toEqual([
      '2024-03-10T07:30:00.000Z',
      '2024-03-11T06:30:00.000Z',
    ]);
    expect(bounds('DAY', '2024-03-10T07:00:00Z', '2024-01-01T02:30', 'America/New_York')).toEqual([
      '2024-03-09T07:30:00.000Z',
      '2024-03-10T07:30:00.000Z',
    ]);
    // 01:30 happens twice on 2024-11-03: the first (EDT) one.
    expect(bounds('DAY', '2024-11-03T12:00:00Z', '2024-01-01T01:30', 'America/New_York')).toEqual([
      '2024-11-03T05:30:00.000Z',
      '2024-11-04T06:30:00.000Z',
    ]);
  });

  it('weeks start on Mondays with the default anchor', () => {
    expect(bounds('WEEK', '2024-05-16T08:00:00Z')).toEqual([
      '2024-05-13T00:00:00.000Z',
      '2024-05-20T00:00:00.000Z',
    ]);
    expect(bounds('P2W', '2024-01-20T00:00:00Z')).toEqual([
      '2024-01-15T00:00:00.000Z',
      '2024-01-29T00:00:00.000Z',
    ]);
  });

  it('time durations are exact elapsed time, even across DST', () => {
    // Origin: 2024-01-01T00:00 Berlin = 2023-12-31T23:00Z; 2197 h later falls in the period starting 2196 h in.
    expect(bounds('PT6H', '2024-03-31T12:00:00Z', undefined, 'Europe/Berlin')).toEqual([
      '2024-03-31T11:00:00.000Z',
      '2024-03-31T17:00:00.000Z',
    ]);
    expect(bounds('PT90M', '2024-01-01T02:00:00Z')).toEqual([
      '2024-01-01T01:30:00.000Z',
      '2024-01-01T03:00:00.000Z',
    ]);
  });

  it('years in a half-hour zone, and anchors given as instants', () => {
    expect(bounds('YEAR', '2024-12-31T20:00:00Z', undefined, 'Asia/Kolkata')).toEqual([
      '2024-12-31T18:30:00.000Z',
      '2025-12-31T18:30:00.000Z',
    ]);
    // 09:00 in Tokyo is 00:00 UTC: monthly on the 15th at 00:00 UTC.
    expect(bounds('MONTH', '2024-06-20T00:00:00Z', '2024-01-15T09:00:00+09:00')).toEqual([
      '2024-06-15T00:00:00.000Z',
      '2024-07-15T00:00:00.000Z',
    ]);
  });

  it('tiles the timeline and keeps the anchor time of day, in many zones (property)', () => {
    const zones = [
      'UTC',
      'Europe/Berlin',
      'America/New_York',
      'Australia/Lord_Howe',
      'Asia/Kolkata',
      'America/Sao_Paulo',
    ];
    const specs = [
      { interval: 'DAY', anchor: '2024-01-01T00:00' },
      { interval: 'MONTH', anchor: '2023-08-31T06:15' },
      { interval: 'WEEK', anchor: '2024-01-03T12:00' },
      { interval: 'P1M2D', anchor: '2022-01-10' },
    ];
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (const timeZone of zones) {
      for (const s of specs) {
        const period = parseUsagePeriod({ ...s, timeZone });
        for (let i = 0; i < 60; i++) {
          const t = at('2020-01-01T00:00:00Z') + Math.floor(rnd() * 10 * 365 * 86_400_000);
          const p = periodAt(period, t);
          expect(p.start <= t && t < p.end).toBe(true);
          expect(periodAt(period, p.end).start).toBe(p.end);
          expect(periodAt(period, p.start).start).toBe(p.start);
          expect(periodAt(period, p.start - 1).end).toBe(p.start);
          if (s.interval === 'DAY' && timeZone !== 'Australia/Lord_Howe')
            expect(local(p.start, timeZone).slice(11)).toBe('00:00');
          if (s.interval === 'MONTH' && timeZone !== 'America/Sao_Paulo') {
            // 06:15 always exists in these zones; the day is the 31st clamped to the month's end.
            const reading = local(p.start, timeZone);
            expect(reading.slice(11)).toBe('06:15');
            const [y, m, d] = reading.slice(0, 10).split('-').map(Number) as [number, number, number];
            expect(d).toBe(Math.min(31, new Date(Date.UTC(y, m, 0)).getUTCDate()));
          }
        }
      }
    }
  });

  it('rejects bad intervals, anchors and zones, naming the field', () => {
    const bad = (input: { interval: string; anchor?: string; timeZone?: string }, field: string) => {
      try {
        parseUsagePeriod(input, 'usagePeriod');
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(TallyConfigError);
        expect((err as TallyConfigError).field).toBe(field);
      }
    };
    bad({ interval: 'P' }, 'usagePeriod.interval');
    bad({ interval: 'PT' }, 'usagePeriod.interval');
    bad({ interval: 'P1X' }, 'usagePeriod.interval');
    bad({ interval: 'FORTNIGHT' }, 'usagePeriod.interval');
    bad({ interval: 'PT30S' }, 'usagePeriod.interval');
    bad({ interval: 'DAY', anchor: '2024-02-30' }, 'usagePeriod.anchor');
    bad({ interval: 'DAY', anchor: 'yesterday' }, 'usagePeriod.anchor');
    bad({ interval: 'DAY', timeZone: 'Mars/Olympus' }, 'usagePeriod.timeZone');
    expect(parseUsagePeriod({ interval: 'month' }).interval).toBe('P1M');
    expect(parseUsagePeriod({ interval: 'p1w' }).interval).toBe('P1W');
  });
});
