import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { parseInstant } from '../../../src/cli/time.js';

describe('instants on the command line', () => {
  const now = Date.parse('2026-12-03T10:00:00.000Z');

  it('takes ISO 8601 and times relative to now', () => {
    expect(parseInstant('2026-11-01T00:00:00Z', '--from', now)).toBe(Date.parse('2026-11-01T00:00:00Z'));
    expect(parseInstant('2026-11-01T01:00:00+01:00', '--from', now)).toBe(Date.parse('2026-11-01T00:00:00Z'));
    expect(parseInstant('now', '--to', now)).toBe(now);
    expect(parseInstant('NOW', '--to', now)).toBe(now);
    expect(parseInstant('now-24h', '--from', now)).toBe(now - 86_400_000);
    expect(parseInstant('now-7d', '--from', now)).toBe(now - 7 * 86_400_000);
    expect(parseInstant('now+90s', '--at', now)).toBe(now + 90_000);
  });

  it('refuses anything else with a message naming the forms it takes', () => {
    for (const bad of ['-24h', 'yesterday', 'now-', 'now-1y', '24h', '12345', '']) {
      expect(() => parseInstant(bad, '--from', now), bad).toThrow(InvalidArgumentError);
    }
    expect(() => parseInstant('now-1y', '--from', now)).toThrow(/now-24h/);
  });
});
