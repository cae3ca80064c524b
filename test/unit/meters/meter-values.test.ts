import { describe, expect, it } from 'vitest';
import { compileMeters, meterUpdate } from '../../../src/meters/index.js';

const [sum, unique] = compileMeters([
  {
    slug: 'tokens',
    eventType: 'llm',
    aggregation: 'SUM',
    valueProperty: '$.tokens',
    groupBy: { model: '$.model' },
    windowSize: 'MINUTE',
    timeZone: 'UTC',
  },
  {
    slug: 'users',
    eventType: 'llm',
    aggregation: 'UNIQUE_COUNT',
    valueProperty: '$.user',
    windowSize: 'MINUTE',
    timeZone: 'UTC',
  },
]);
const event = (data: Record<string, unknown>) => ({
  id: '1',
  source: 's',
  type: 'llm',
  subject: 'acme',
  data,
});
const update = (meter: typeof sum, data: Record<string, unknown>) =>
  meterUpdate(meter!, event(data), 0, '1-0', 0);

describe('meter values an operator reads about', () => {
  it('says a number is out of range, not that it is no number', () => {
    for (const tokens of [1e308, -1e20, '1e+308', '9223372036854.775808', 10n ** 20n]) {
      expect(update(sum, { tokens }), String(tokens)).toMatchObject({
        reason: 'invalid-value',
        detail: expect.stringMatching(
          /^tokens: value .* is out of range \(values are kept within ±9,223,372,036,854\.775807\)$/,
        ) as unknown,
      });
    }
    for (const tokens of ['lots', '', '0x10', 'Infinity', null, true, [1]]) {
      expect(update(sum, { tokens }), String(tokens)).toMatchObject({
        reason: 'invalid-value',
        detail: expect.stringMatching(/is not a number$/) as unknown,
      });
    }
    expect(update(sum, { tokens: 1e308 })).toEqual({
      reason: 'invalid-value',
      detail: 'tokens: value 1e+308 is out of range (values are kept within ±9,223,372,036,854.775807)',
    });
  });

  it('says a value is missing, naming its property, rather than "undefined is not a number"', () => {
    for (const data of [{}, { tokens: undefined }, { other: 5 }]) {
      expect(update(sum, data)).toEqual({
        reason: 'invalid-value',
        detail: "tokens: value is missing ($.tokens is not in the event's data)",
      });
    }
  });

  it('keeps the value in the detail short, whatever it is', () => {
    const detail = (update(sum, { tokens: 'x'.repeat(10_000) }) as { detail: string }).detail;
    expect(detail).toBe(`tokens: value "${'x'.repeat(60)}... is not a number`);
  });

  it('rejects group-by and unique values that are not valid Unicode', () => {
    expect(update(sum, { tokens: 1, model: 'm-\ud800' })).toEqual({
      reason: 'invalid-value',
      detail: 'tokens: groupBy model contains an unpaired UTF-16 surrogate (not valid Unicode text)',
    });
    expect(update(unique, { user: 'u-\udbff' })).toMatchObject({ reason: 'invalid-value' });
    expect(update(sum, { tokens: 1, model: 'm-😀' })).toMatchObject({
      group: JSON.stringify(['acme', 'm-😀']),
    });
  });
});
