import { random } from '../../support/random.js';
import { describe, expect, it } from 'vitest';
import { TallyConfigError } from '../../../src/errors/index.js';
import {
  formatIsoUtc,
  parseWindowSize,
  windowOf,
  windowStartOf,
  windowsBetween,
  type WindowSpec,
} from '../../../src/windows/index.js';

const H = 3_600_000;
const DAY = 24 * H;
const at = (iso: string) => Date.parse(iso);
const iso = (w: { start: number; end: number }) => [formatIsoUtc(w.start), formatIsoUtc(w.end)];

// Independent model of a zone's offset: Intl's `longOffset` name ("GMT+10:30"), not the fields the
// implementation reads.
const offsetFormats = new Map<string, Intl.DateTimeFormat>();
function refOffset(zone: string, t: number): number {
  let f = offsetFormats.get(zone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' });
    offsetFormats.set(zone, f);
  }
  const name = f.formatToParts(t).find((p) => p.type === 'timeZoneName')?.value ?? '';
  const m = /^GMT(?:([+-])(\d\d):(\d\d)(?::(\d\d))?)?$/.exec(name);
  if (m === null) throw new Error(`unexpected offset name ${name}`);
  if (m[1] === undefined) return 0;
  const ms = (Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4] ?? 0)) * 1000;
  return m[1] === '-' ? -ms : ms;
}
const isTransition = (zone: string, t: number) => refOffset(zone, t - 1) !== refOffset(zone, t);

/** All offset transitions in [from, to), found by hourly scan and bisection with the reference model. */
function transitions(zone: string, from: number, to: number): number[] {
  const out: number[] = [];
  let prev = refOffset(zone, from);
  for (let t = from + H; t <= to; t += H) {
    const o = refOffset(zone, t);
    if (o !== prev) {
      let lo = t - H;
      let hi = t;
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        if (refOffset(zone, mid) === prev) lo = mid;
        else hi = mid;
      }
      out.push(hi);
      prev = o;
    }
  }
  return out;
}

describe('parseWindowSize', () => {
  it.each([
    ['MINUTE', 'MINUTE', 'fixed', 60_000],
    ['minute', 'MINUTE', 'fixed', 60_000],
    ['Hour', 'HOUR', 'fixed', H],
    ['day', 'DAY', 'day', DAY],
    ['30s', '30s', 'fixed', 30_000],
    ['1s', '1s', 'fixed', 1_000],
    ['60s', 'MINUTE', 'fixed', 60_000],
    ['5m', '5m', 'fixed', 300_000],
    ['15m', '15m', 'fixed', 900_000],
    ['90m', '90m', 'fixed', 90 * 60_000],
    ['1h', 'HOUR', 'fixed', H],
    ['6h', '6h', 'fixed', 6 * H],
    ['12h', '12h', 'fixed', 12 * H],
    ['24h', 'DAY', 'day', DAY],
    ['1d', 'DAY', 'day', DAY],
  ] as const)('%s -> %s', (input, label, kind, sizeMs) => {
    expect(parseWindowSize(input)).toEqual({ label, kind, sizeMs, timeZone: 'UTC' });
  });

  it.each([
    '',
    'abc',
    '0',
    '0s',
    '0m',
    '7m',
    '7s',
    '25h',
    '2d',
    '-5m',
    '5 m',
    '1.5h',
    '5M',
    '1w',
    '1e3s',
    'MINUTES',
  ])('rejects %j naming the field and the value', (input) => {
    const err = catchError(() => parseWindowSize(input, 'UTC', 'meters[0].windowSize'));
    expect(err).toBeInstanceOf(TallyConfigError);
    expect(err).toMatchObject({ field: 'meters[0].windowSize', code: 'ERR_TALLY_CONFIG' });
    expect((err as Error).message).toContain(JSON.stringify(input));
  });

  it('rejects a non-string size', () => {
    expect(() => parseWindowSize(5 as unknown as string)).toThrow(TallyConfigError);
  });

  it('validates the time zone', () => {
    const err = catchError(() => parseWindowSize('HOUR', 'Mars/Olympus_Mons'));
    expect(err).toBeInstanceOf(TallyConfigError);
    expect(err).toMatchObject({ field: 'timeZone' });
    expect((err as Error).message).toContain('Mars/Olympus_Mons');
    expect(() => parseWindowSize('HOUR', '')).toThrow(TallyConfigError);
  });

  it('canonicalises UTC aliases and zone name case', () => {
    expect(parseWindowSize('HOUR', 'Etc/UTC').timeZone).toBe('UTC');
    expect(parseWindowSize('HOUR', 'utc').timeZone).toBe('UTC');
    expect(parseWindowSize('HOUR', 'europe/berlin').timeZone).toBe('Europe/Berlin');
    expect(parseWindowSize('HOUR', 'Asia/Kolkata').timeZone).toBe('Asia/Kolkata');
  });
});

describe('windowOf in UTC', () => {
  const t = at('2026-11-26T10:17:42.123Z');

  it('aligns minute, 5m, hour and day windows', () => {
    expect(iso(windowOf(parseWindowSize('MINUTE'), t))).toEqual([
      '2026-11-26T10:17:00.000Z',
      '2026-11-26T10:18:00.000Z',
    ]);
    expect(iso(windowOf(parseWindowSize('5m'), t))).toEqual([
      '2026-11-26T10:15:00.000Z',
      '2026-11-26T10:20:00.000Z',
    ]);
    expect(iso(windowOf(parseWindowSize('HOUR'), t))).toEqual([
      '2026-11-26T10:00:00.000Z',
      '2026-11-26T11:00:00.000Z',
    ]);
    expect(iso(windowOf(parseWindowSize('DAY'), t))).toEqual([
      '2026-11-26T00:00:00.000Z',
      '2026-11-27T00:00:00.000Z',
    ]);
  });

  it('puts a boundary in the window it starts, the ms before in the previous one', () => {
    const hour = parseWindowSize('HOUR');
    const boundary = at('2026-11-26T10:00:00Z');
    expect(windowOf(hour, boundary)).toEqual({ start: boundary, end: boundary + H });
    expect(windowOf(hour, boundary - 1)).toEqual({ start: boundary - H, end: boundary });
    expect(windowStartOf(hour, boundary - 1)).toBe(boundary - H);
  });

  it('handles timestamps before 1970', () => {
    expect(windowOf(parseWindowSize('HOUR'), -1)).toEqual({ start: -H, end: 0 });
    expect(windowOf(parseWindowSize('DAY'), -DAY - 1)).toEqual({ start: -2 * DAY, end: -DAY });
  });
});

describe('windowOf in zones with DST', () => {
  it('makes America/New_York spring-forward day 23h and fall-back day 25h', () => {
    const day = parseWindowSize('DAY', 'America/New_York');
    const spring = windowOf(day, at('2026-03-08T12:00:00Z'));
    expect(iso(spring)).toEqual(['2026-03-08T05:00:00.000Z', '2026-03-09T04:00:00.000Z']);
    expect(spring.end - spring.start).toBe(23 * H);
    const fall = windowOf(day, at('2026-11-01T12:00:00Z'));
    expect(iso(fall)).toEqual(['2026-11-01T04:00:00.000Z', '2026-11-02T05:00:00.000Z']);
    expect(fall.end - fall.start).toBe(25 * H);
    // Local 23:59:59.999 the day before, and the first instant of the day.
    expect(windowOf(day, at('2026-11-01T03:59:59.999Z')).end).toBe(fall.start);
    expect(windowOf(day, fall.start).start).toBe(fall.start);
  });

  it('keeps hourly America/New_York windows one hour long across both transitions', () => {
    const hour = parseWindowSize('HOUR', 'America/New_York');
    // 01:59:59.999 EST, then 03:00 EDT.
    expect(iso(windowOf(hour, at('2026-03-08T06:59:59.999Z')))).toEqual([
      '2026-03-08T06:00:00.000Z',
      '2026-03-08T07:00:00.000Z',
    ]);
    expect(iso(windowOf(hour, at('2026-03-08T07:00:00Z')))).toEqual([
      '2026-03-08T07:00:00.000Z',
      '2026-03-08T08:00:00.000Z',
    ]);
    // The repeated 01:00 hour is two windows: 01:30 EDT and 01:30 EST.
    expect(iso(windowOf(hour, at('2026-11-01T05:30:00Z')))).toEqual([
      '2026-11-01T05:00:00.000Z',
      '2026-11-01T06:00:00.000Z',
    ]);
    expect(iso(windowOf(hour, at('2026-11-01T06:30:00Z')))).toEqual([
      '2026-11-01T06:00:00.000Z',
      '2026-11-01T07:00:00.000Z',
    ]);
  });

  it('cuts 6h America/New_York windows at the transition', () => {
    const six = parseWindowSize('6h', 'America/New_York');
    expect(iso(windowOf(six, at('2026-03-08T06:00:00Z')))).toEqual([
      '2026-03-08T05:00:00.000Z',
      '2026-03-08T07:00:00.000Z',
    ]);
    expect(iso(windowOf(six, at('2026-03-08T08:00:00Z')))).toEqual([
      '2026-03-08T07:00:00.000Z',
      '2026-03-08T10:00:00.000Z',
    ]);
  });

  it('aligns Europe/Berlin days to local midnight, 23h and 25h on DST days', () => {
    const day = parseWindowSize('DAY', 'Europe/Berlin');
    expect(iso(windowOf(day, at('2026-03-29T12:00:00Z')))).toEqual([
      '2026-03-28T23:00:00.000Z',
      '2026-03-29T22:00:00.000Z',
    ]);
    expect(iso(windowOf(day, at('2026-10-25T12:00:00Z')))).toEqual([
      '2026-10-24T22:00:00.000Z',
      '2026-10-25T23:00:00.000Z',
    ]);
    expect(iso(windowOf(day, at('2026-11-26T10:00:00Z')))).toEqual([
      '2026-11-25T23:00:00.000Z',
      '2026-11-26T23:00:00.000Z',
    ]);
    const quarter = parseWindowSize('15m', 'Europe/Berlin');
    // 01:59:59.999 CET -> 03:00 CEST.
    expect(iso(windowOf(quarter, at('2026-03-29T00:59:59.999Z')))).toEqual([
      '2026-03-29T00:45:00.000Z',
      '2026-03-29T01:00:00.000Z',
    ]);
    expect(iso(windowOf(quarter, at('2026-03-29T01:00:00Z')))).toEqual([
      '2026-03-29T01:00:00.000Z',
      '2026-03-29T01:15:00.000Z',
    ]);
  });

  it('handles Australia/Lord_Howe half-hour DST', () => {
    const day = parseWindowSize('DAY', 'Australia/Lord_Howe');
    // DST starts 2026-10-04 02:00 (+10:30 -> +11): a 23.5h day; ends 2026-04-05 02:00 (+11 -> +10:30): 24.5h.
    expect(iso(windowOf(day, at('2026-10-04T00:00:00Z')))).toEqual([
      '2026-10-03T13:30:00.000Z',
      '2026-10-04T13:00:00.000Z',
    ]);
    expect(iso(windowOf(day, at('2026-04-05T00:00:00Z')))).toEqual([
      '2026-04-04T13:00:00.000Z',
      '2026-04-05T13:30:00.000Z',
    ]);
    const hour = parseWindowSize('HOUR', 'Australia/Lord_Howe');
    // 01:59:59.999 +10:30 -> 02:30 +11: the 02:00 window is cut to its last 30 minutes.
    expect(iso(windowOf(hour, at('2026-10-03T15:29:59.999Z')))).toEqual([
      '2026-10-03T14:30:00.000Z',
      '2026-10-03T15:30:00.000Z',
    ]);
    expect(iso(windowOf(hour, at('2026-10-03T15:30:00Z')))).toEqual([
      '2026-10-03T15:30:00.000Z',
      '2026-10-03T16:00:00.000Z',
    ]);
    // 01:59:59.999 +11 -> 01:30 +10:30: the repeated half hour is its own window.
    expect(iso(windowOf(hour, at('2026-04-04T14:59:59.999Z')))).toEqual([
      '2026-04-04T14:00:00.000Z',
      '2026-04-04T15:00:00.000Z',
    ]);
    expect(iso(windowOf(hour, at('2026-04-04T15:00:00Z')))).toEqual([
      '2026-04-04T15:00:00.000Z',
      '2026-04-04T15:30:00.000Z',
    ]);
    expect(iso(windowOf(hour, at('2026-04-04T15:30:00Z')))).toEqual([
      '2026-04-04T15:30:00.000Z',
      '2026-04-04T16:30:00.000Z',
    ]);
  });

  it('aligns Asia/Kolkata (+5:30) hours and days', () => {
    const hour = parseWindowSize('HOUR', 'Asia/Kolkata');
    expect(iso(windowOf(hour, at('2026-11-26T10:00:00Z')))).toEqual([
      '2026-11-26T09:30:00.000Z',
      '2026-11-26T10:30:00.000Z',
    ]);
    expect(iso(windowOf(hour, at('2026-11-26T10:29:59.999Z')))).toEqual([
      '2026-11-26T09:30:00.000Z',
      '2026-11-26T10:30:00.000Z',
    ]);
    const day = parseWindowSize('DAY', 'Asia/Kolkata');
    expect(iso(windowOf(day, at('2026-11-26T10:00:00Z')))).toEqual([
      '2026-11-25T18:30:00.000Z',
      '2026-11-26T18:30:00.000Z',
    ]);
  });

  it('aligns Pacific/Chatham (+12:45/+13:45) days', () => {
    const day = parseWindowSize('DAY', 'Pacific/Chatham');
    expect(iso(windowOf(day, at('2026-11-26T10:00:00Z')))).toEqual([
      '2026-11-25T10:15:00.000Z',
      '2026-11-26T10:15:00.000Z',
    ]);
    expect(iso(windowOf(day, at('2026-07-01T00:00:00Z')))).toEqual([
      '2026-06-30T11:15:00.000Z',
      '2026-07-01T11:15:00.000Z',
    ]);
  });

  it('starts the day at the transition where midnight is skipped (America/Havana)', () => {
    const day = parseWindowSize('DAY', 'America/Havana');
    // 2026-03-08 00:00 CST -> 01:00 CDT.
    expect(iso(windowOf(day, at('2026-03-08T12:00:00Z')))).toEqual([
      '2026-03-08T05:00:00.000Z',
      '2026-03-09T04:00:00.000Z',
    ]);
  });

  it('keeps a repeated hour at midnight inside the earlier day (America/Santiago)', () => {
    const day = parseWindowSize('DAY', 'America/Santiago');
    // 2026-04-05 00:00 -03 -> 2026-04-04 23:00 -04: Saturday is 25h.
    const sat = windowOf(day, at('2026-04-05T03:30:00Z'));
    expect(iso(sat)).toEqual(['2026-04-04T03:00:00.000Z', '2026-04-05T04:00:00.000Z']);
  });
});

describe('windowsBetween', () => {
  it('lists the windows covering [from, to)', () => {
    const hour = parseWindowSize('HOUR');
    const from = at('2026-11-26T10:30:00Z');
    const windows = [...windowsBetween(hour, from, at('2026-11-26T13:00:00Z'))];
    expect(windows.map(iso)).toEqual([
      ['2026-11-26T10:00:00.000Z', '2026-11-26T11:00:00.000Z'],
      ['2026-11-26T11:00:00.000Z', '2026-11-26T12:00:00.000Z'],
      ['2026-11-26T12:00:00.000Z', '2026-11-26T13:00:00.000Z'],
    ]);
    expect([...windowsBetween(hour, from, from)]).toEqual([]);
    expect([...windowsBetween(hour, from, from + 1)]).toHaveLength(1);
  });

  it('follows DST days', () => {
    const day = parseWindowSize('DAY', 'America/New_York');
    const lengths = [...windowsBetween(day, at('2026-10-31T12:00:00Z'), at('2026-11-02T12:00:00Z'))].map(
      (w) => (w.end - w.start) / H,
    );
    expect(lengths).toEqual([24, 25, 24]);
  });
});

describe('tiling invariant (property)', () => {
  const zones = [
    'UTC',
    'America/New_York',
    'Europe/Berlin',
    'Australia/Lord_Howe',
    'Asia/Kolkata',
    'Pacific/Chatham',
    'America/Havana',
    'America/Santiago',
    'Asia/Kathmandu',
  ];
  const sizes = ['30s', 'MINUTE', '5m', '15m', '45m', 'HOUR', '2h', '6h', '12h', 'DAY'];
  const from = at('2026-01-01T00:00:00Z');
  const to = at('2028-01-01T00:00:00Z');

  /** Every property a window must have; returns what failed (plain checks: this runs ~10^5 times). */
  function violations(spec: WindowSpec, t: number): string[] {
    const zone = spec.timeZone;
    const w = windowOf(spec, t);
    const bad: string[] = [];
    const same = (a: { start: number; end: number }) => a.start === w.start && a.end === w.end;
    if (!(w.start <= t && t < w.end)) bad.push('t outside its window');
    if (!same(windowOf(spec, w.start))) bad.push('windowOf(start) differs');
    if (!same(windowOf(spec, w.end - 1))) bad.push('windowOf(end - 1) differs');
    if (windowOf(spec, w.end).start !== w.end) bad.push('gap or overlap after end');
    if (windowOf(spec, w.start - 1).end !== w.start) bad.push('gap or overlap before start');
    const localStart = w.start + refOffset(zone, w.start);
    if (spec.kind === 'fixed') {
      const aligned = (x: number) =>
        (((x + refOffset(zone, x)) % spec.sizeMs) + spec.sizeMs) % spec.sizeMs === 0;
      if (w.end - w.start > spec.sizeMs) bad.push('longer than the size');
      if (refOffset(zone, w.end - 1) !== refOffset(zone, w.start)) bad.push('spans an offset change');
      if (!aligned(w.start) && !isTransition(zone, w.start))
        bad.push('start neither aligned nor a transition');
      if (!aligned(w.end) && !isTransition(zone, w.end)) bad.push('end neither aligned nor a transition');
    } else {
      const lastLocal = w.end - 1 + refOffset(zone, w.end - 1);
      if (Math.floor(localStart / DAY) !== Math.floor(lastLocal / DAY)) bad.push('spans two local dates');
      if (localStart % DAY !== 0 && !isTransition(zone, w.start))
        bad.push('start neither midnight nor a transition');
      if (w.end - w.start < 22 * H || w.end - w.start > 26 * H) bad.push('implausible day length');
    }
    return bad.map((b) => `${spec.label} ${zone} t=${formatIsoUtc(t)} -> ${iso(w).join(' .. ')}: ${b}`);
  }

  it.each(zones)('holds for random timestamps and around every transition in %s', (zone) => {
    const rnd = random(zone.length * 7919);
    const specs = sizes.map((s) => parseWindowSize(s, zone));
    const failures: string[] = [];
    let checked = 0;
    for (let i = 0; i < 1000; i++) {
      const t = from + Math.floor(rnd() * (to - from));
      for (const spec of specs) failures.push(...violations(spec, t));
      checked++;
    }
    const trs = transitions(zone, from, to);
    if (zone === 'America/New_York' || zone === 'Australia/Lord_Howe') expect(trs).toHaveLength(4);
    for (const tr of trs) {
      for (const spec of specs) {
        for (const d of [-spec.sizeMs, -H, -1, 0, 1, H - 1, spec.sizeMs])
          failures.push(...violations(spec, tr + d));
      }
    }
    expect(checked).toBe(1000);
    expect(failures.slice(0, 10)).toEqual([]);
  });

  it('walks every window of two years back to back', () => {
    for (const zone of ['America/New_York', 'Australia/Lord_Howe', 'America/Santiago']) {
      for (const size of ['HOUR', '45m', 'DAY']) {
        const spec = parseWindowSize(size, zone);
        let prev: number | undefined;
        let count = 0;
        let broken = 0;
        for (const w of windowsBetween(spec, from, to)) {
          if ((prev !== undefined && w.start !== prev) || !(w.end > w.start)) broken++;
          prev = w.end;
          count++;
        }
        expect(broken).toBe(0);
        expect(count).toBeGreaterThan(700);
      }
    }
  });
});

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}
