import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/config/index.js';
import { definitionJson, definitionOf, firstDifference, PartitionView } from '../../../src/registry/index.js';

const config = resolveConfig(
  {
    meters: [
      { slug: 'calls', eventType: 'req', aggregation: 'COUNT', groupBy: { route: '$.route', a: '$.a' } },
      { slug: 'users', eventType: 'req', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user' },
      { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens' },
    ],
  },
  {},
);
type Input = (typeof config.data.meters)[number];
const [calls, users] = config.data.meters as [Input, Input, Input];

describe('meter definitions', () => {
  it('are canonical: group-by order and defaults do not make another definition', () => {
    const reordered = { ...calls, groupBy: { a: '$.a', route: '$.route' } };
    expect(definitionJson(definitionOf(reordered))).toBe(definitionJson(definitionOf(calls)));
    expect(JSON.parse(definitionJson(definitionOf(calls)))).toEqual({
      slug: 'calls',
      eventType: 'req',
      aggregation: 'COUNT',
      valueProperty: null,
      groupBy: { a: '$.a', route: '$.route' },
      windowSize: 'HOUR',
      timeZone: 'UTC',
    });
    // Name and description are not part of it.
    expect(definitionJson(definitionOf({ ...calls, description: 'other' }))).toBe(
      definitionJson(definitionOf(calls)),
    );
  });

  it('name the first field that differs, with both values', () => {
    const d = definitionOf(users);
    expect(firstDifference(d, d)).toBeUndefined();
    expect(firstDifference(d, definitionOf({ ...users, windowSize: '5m' }))).toEqual({
      field: 'windowSize',
      stored: '"HOUR"',
      wanted: '"5m"',
    });
    expect(
      firstDifference(d, definitionOf({ ...users, valueProperty: '$.u', timeZone: 'Asia/Tokyo' })),
    ).toEqual({
      field: 'valueProperty',
      stored: '"$.user"',
      wanted: '"$.u"',
    });
  });
});

describe('PartitionView', () => {
  it("counts an entry in a meter only after the meter's activation point, compared as stream ids", () => {
    const view = new PartitionView(
      3,
      config.meters,
      new Map([
        ['calls', '0-0'],
        ['users', '1700000000000-5'],
        ['tokens', '0-0'],
      ]),
    );
    const slugs = (type: string, id: string) => view.metersFor(type, id)?.map((m) => m.slug);
    expect(slugs('req', '1699999999999-9')).toEqual(['calls']);
    expect(slugs('req', '1700000000000-5')).toEqual(['calls']);
    expect(slugs('req', '1700000000000-6')).toEqual(['calls', 'users']);
    // Numeric, not text, comparison: 10 > 9 in the sequence part, and more digits in the time.
    expect(slugs('req', '1700000000000-10')).toEqual(['calls', 'users']);
    expect(slugs('req', '17000000000000-0')).toEqual(['calls', 'users']);
    expect(slugs('llm', '1-0')).toEqual(['tokens']);
    expect(slugs('other', '1800000000000-0')).toBeUndefined();
    // A type whose every meter starts later: no meter counts the entry.
    const late = new PartitionView(4, config.meters, new Map([['tokens', '1700000000000-0']]));
    expect(late.metersFor('llm', '1600000000000-0')).toBeUndefined();
  });
});
