import { describe, expect, it } from 'vitest';
import { compileMeters } from '../../../src/meters/index.js';
import { defaultRange, rowWindows } from '../../../src/usage/index.js';

const [meter] = compileMeters([
  { slug: 'm', eventType: 't', aggregation: 'COUNT', windowSize: 'HOUR', timeZone: 'UTC' },
]);
const iso = (ms: number) => new Date(ms).toISOString();

describe('query row windows', () => {
  it('cuts calendar months in the requested zone, DST months included', () => {
    const berlin = rowWindows(meter!, 'MONTH', 'Europe/Berlin')!;
    // March 2026: CET until the last Sunday, CEST after: 31 days minus one hour.
    const march = berlin.boundsOf(Date.parse('2026-03-15T12:00:00Z'));
    expect([iso(march.start), iso(march.end)]).toEqual([
      '2026-02-28T23:00:00.000Z',
      '2026-03-31T22:00:00.000Z',
    ]);
    // The first instant of a month belongs to it; the instant before, to the previous one.
    expect(iso(berlin.boundsOf(march.start).start)).toBe(iso(march.start));
    expect(iso(berlin.boundsOf(march.start - 1).end)).toBe(iso(march.start));
    const december = berlin.boundsOf(Date.parse('2026-12-31T22:59:59Z'));
    expect([iso(december.start), iso(december.end)]).toEqual([
      '2026-11-30T23:00:00.000Z',
      '2026-12-31T23:00:00.000Z',
    ]);
    const kiritimati = rowWindows(meter!, 'month', 'Pacific/Kiritimati')!.boundsOf(
      Date.parse('2026-06-30T10:00:00Z'),
    );
    expect([iso(kiritimati.start), iso(kiritimati.end)]).toEqual([
      '2026-06-30T10:00:00.000Z',
      '2026-07-31T10:00:00.000Z',
    ]);
    const utc = rowWindows(meter!, 'MONTH', 'UTC')!.boundsOf(Date.parse('2028-02-10T00:00:00Z'));
    expect([iso(utc.start), iso(utc.end)]).toEqual(['2028-02-01T00:00:00.000Z', '2028-03-01T00:00:00.000Z']);
  });

  it('refuses sizes finer than the stored windows, accepts coarser ones in another zone', () => {
    expect(() => rowWindows(meter!, 'MINUTE', undefined)).toThrow(/finer than meter m's windows/);
    expect(() => rowWindows(meter!, 'WEEK', undefined)).toThrow(/invalid window size/);
    const day = rowWindows(meter!, 'DAY', 'Asia/Kolkata')!;
    expect(day.isMeterWindow).toBe(false);
    expect(iso(day.boundsOf(Date.parse('2026-05-01T20:00:00Z')).start)).toBe('2026-05-01T18:30:00.000Z');
    expect(rowWindows(meter!, 'HOUR', undefined)!.isMeterWindow).toBe(true);
  });

  it('defaults to the retention horizon and the end of the current row', () => {
    const now = Date.parse('2026-05-10T10:20:00Z');
    const hourly = defaultRange(meter!, undefined, 2 * 86_400_000, now);
    expect([iso(hourly.from), iso(hourly.to)]).toEqual([
      '2026-05-08T11:00:00.000Z',
      '2026-05-10T11:00:00.000Z',
    ]);
    const monthly = defaultRange(meter!, rowWindows(meter!, 'MONTH', 'UTC'), 35 * 86_400_000, now);
    expect([iso(monthly.from), iso(monthly.to)]).toEqual([
      '2026-05-01T00:00:00.000Z',
      '2026-06-01T00:00:00.000Z',
    ]);
  });
});
