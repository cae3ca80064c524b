import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { explainInvalidEvent, parseEventTime } from '../../../src/events/index.js';

describe('parseEventTime (strict RFC 3339)', () => {
  it.each([
    ['2026-11-26T10:00:00Z', '2026-11-26T10:00:00.000Z'],
    ['2026-11-26t10:00:00z', '2026-11-26T10:00:00.000Z'],
    ['2026-11-26 10:00:00.123456789+02:00', '2026-11-26T08:00:00.123Z'],
    ['2026-11-26T10:00:00.5-00:30', '2026-11-26T10:30:00.500Z'],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
    ['2000-02-29T23:59:59.999Z', '2000-02-29T23:59:59.999Z'],
    ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'],
    ['0099-12-31T23:00:00+23:59', '0099-12-30T23:01:00.000Z'],
    // Leap seconds count at :59.999 of the minute they end.
    ['2016-12-31T23:59:60Z', '2016-12-31T23:59:59.999Z'],
    ['2016-12-31T23:59:60.5Z', '2016-12-31T23:59:59.999Z'],
    ['2016-12-31T18:59:60-05:00', '2016-12-31T23:59:59.999Z'],
    ['2015-07-01T01:59:60+02:00', '2015-06-30T23:59:59.999Z'],
  ])('reads %s as %s', (text, iso) => {
    expect(parseEventTime(text)).toBe(Date.parse(iso));
  });

  it.each([
    '2026-11-31T00:00:00Z', // November has 30 days (Date.parse: December 1st)
    '2026-12-01T24:00:00Z', // hour 24 (Date.parse: the next day)
    '2026-02-29T00:00:00Z', // not a leap year
    '1900-02-29T00:00:00Z', // not a leap year either
    '2026-00-10T00:00:00Z',
    '2026-13-10T00:00:00Z',
    '2026-11-00T00:00:00Z',
    '2026-11-26T10:60:00Z',
    '2026-11-26T10:00:61Z',
    '2026-11-26T10:00:60Z', // a leap second is only the last second of a UTC day
    '2016-12-30T23:59:60Z', // ... at the end of a month
    '2026-11-26T10:00:00+24:00',
    '2026-11-26T10:00:00+05:60',
    '2026-11-26T10:00:00',
    '2026-11-26T10:00Z',
    '2026-11-26T10:00:00.Z',
    '+2026-11-26T10:00:00Z',
    '26/11/2026',
  ])('refuses %s', (text) => {
    expect(parseEventTime(text)).toBeUndefined();
  });

  it('agrees with Date.parse on every real instant it is given, in any offset', () => {
    const pad = (n: number, w = 2) => String(n).padStart(w, '0');
    fc.assert(
      fc.property(
        fc.integer({ min: -62_135_596_800_000 + 2 * 86_400_000, max: 253_402_300_799_999 - 2 * 86_400_000 }),
        fc.integer({ min: -(23 * 60 + 59), max: 23 * 60 + 59 }),
        fc.constantFrom('T', 't', ' '),
        (t, offset, sep) => {
          const local = new Date(t + offset * 60_000);
          const abs = Math.abs(offset);
          const text =
            `${pad(local.getUTCFullYear(), 4)}-${pad(local.getUTCMonth() + 1)}-${pad(local.getUTCDate())}${sep}` +
            `${pad(local.getUTCHours())}:${pad(local.getUTCMinutes())}:${pad(local.getUTCSeconds())}.${pad(local.getUTCMilliseconds(), 3)}` +
            (offset === 0 ? 'Z' : `${offset < 0 ? '-' : '+'}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`);
          expect(parseEventTime(text)).toBe(t);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('says so as invalid-field', () => {
    const event = { id: '1', source: 's', type: 't', subject: 'c', time: '2026-11-31T00:00:00Z' };
    expect(explainInvalidEvent(event)).toEqual({
      reason: 'invalid-field',
      detail: 'time: not an RFC 3339 timestamp of a real instant: "2026-11-31T00:00:00Z"',
    });
  });
});

describe('unpaired surrogates', () => {
  const ok = { id: 'ls-😀', source: 's', type: 't', subject: 'c' };

  it('rejects ids, sources, subjects and types that are not valid Unicode, and accepts paired ones', () => {
    expect(explainInvalidEvent(ok)).toBeUndefined();
    for (const field of ['id', 'source', 'subject', 'type'] as const) {
      for (const bad of ['ls-\ud800', 'ls-\udbff', '\udc00x', 'x\ud83d']) {
        expect(explainInvalidEvent({ ...ok, [field]: bad }), `${field} ${JSON.stringify(bad)}`).toEqual({
          reason: 'invalid-field',
          detail: `${field}: contains an unpaired UTF-16 surrogate (not valid Unicode text)`,
        });
      }
    }
    // What they would have become: the same bytes.
    expect(Buffer.from('ls-\ud800')).toEqual(Buffer.from('ls-\udbff'));
  });
});
