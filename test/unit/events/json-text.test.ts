import { describe, expect, it } from 'vitest';
import { jsonArrayElements, withTime } from '../../../src/events/index.js';

/** `{"a":{"a":...1...}}`, nested `depth` levels: deeper than JSON.stringify can go at 10,000. */
const deepJson = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

describe('jsonArrayElements', () => {
  it('cuts out each element byte for byte, whatever it holds', () => {
    const elements = ['{"id":"a, ]}","n":1.50}', '7', '"x\\"]"', '[1,[2,{}]]', 'null', '{"e":"\\\\"}'];
    expect(jsonArrayElements(` [ ${elements.join(' ,\n')} ] `)).toEqual(elements);
    expect(jsonArrayElements('[]')).toEqual([]);
  });

  it('works at depths JSON.stringify cannot serialize', () => {
    const deep = deepJson(10_000);
    expect(() => JSON.stringify(JSON.parse(deep))).toThrow(RangeError);
    expect(jsonArrayElements(`[1,${deep},{"b":2}]`)).toEqual(['1', deep, '{"b":2}']);
  });

  it('returns undefined for what is not a well-formed array', () => {
    for (const text of ['{}', '[1,]', '[,1]', '[1', '[1]]', '["open]', '[}]'])
      expect(jsonArrayElements(text), text).toBeUndefined();
  });
});

describe('withTime', () => {
  it('adds time in front and keeps the rest byte for byte', () => {
    expect(withTime(' {"id":"a","n":1.50}', 'T')).toBe(' {"time":"T","id":"a","n":1.50}');
    expect(withTime('{ }', 'T')).toBe('{"time":"T" }');
    expect(withTime('[1]', 'T')).toBe('[1]');
    const deep = `{"id":"x","data":${deepJson(10_000)}}`;
    expect(withTime(deep, 'T')).toBe(`{"time":"T",${deep.slice(1)}`);
  });
});
