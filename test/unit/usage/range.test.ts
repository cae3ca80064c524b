import { describe, expect, it } from 'vitest';
import { compileMeters } from '../../../src/meters/index.js';
import { emptyRangeNote, windowStartsIn } from '../../../src/usage/index.js';

const [hourly] = compileMeters([
  {
    slug: 'llm_tokens',
    eventType: 't',
    aggregation: 'SUM',
    valueProperty: '$.n',
    windowSize: 'HOUR',
    timeZone: 'UTC',
  },
]);
const meter = hourly!;
const at = (iso: string) => Date.parse(iso);

describe('the windows a usage range reads', () => {
  it('are those starting in [from, to)', () => {
    expect(windowStartsIn(meter, at('2026-01-01T10:00:00Z'), at('2026-01-01T12:00:00Z'))).toEqual([
      at('2026-01-01T10:00:00Z'),
      at('2026-01-01T11:00:00Z'),
    ]);
    expect(windowStartsIn(meter, at('2026-01-01T10:00:01Z'), at('2026-01-01T12:00:00Z'))).toEqual([
      at('2026-01-01T11:00:00Z'),
    ]);
    expect(windowStartsIn(meter, at('2026-01-01T10:05:00Z'), at('2026-01-01T10:15:00Z'))).toEqual([]);
  });

  it('explains a range no window starts in, naming the start to use, and nothing otherwise', () => {
    expect(emptyRangeNote(meter, at('2026-01-01T10:05:00Z'), at('2026-01-01T10:15:00Z'))).toBe(
      'no HOUR window of meter llm_tokens starts in 2026-01-01T10:05:00.000Z .. 2026-01-01T10:15:00.000Z: ' +
        'rows hold whole windows that start inside the range, and the window containing it started at ' +
        '2026-01-01T10:00:00.000Z; use --from 2026-01-01T10:00:00.000Z or earlier',
    );
    expect(emptyRangeNote(meter, at('2026-01-01T10:00:00Z'), at('2026-01-01T10:15:00Z'))).toBeUndefined();
    // The `--from now-10m` of the issue, ten minutes into an hour: the window in progress.
    const now = Date.now();
    const hourStart = Math.floor(now / 3_600_000) * 3_600_000;
    const from = Math.max(hourStart + 1, now - 10 * 60_000);
    expect(emptyRangeNote(meter, from, now + 1)).toContain(
      `the window in progress started at ${new Date(hourStart).toISOString()}`,
    );
  });
});
