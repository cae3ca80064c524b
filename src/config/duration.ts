import { TallyConfigError } from '../errors/index.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** Parses `500ms`, `10s`, `5m`, `1h`, `32d`, or a number of milliseconds, into whole milliseconds. */
export function parseDuration(value: string | number, field: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) {
      throw new TallyConfigError(field, `expected a non-negative duration, got ${value}`);
    }
    return Math.round(value);
  }
  const match = DURATION.exec(value.trim());
  if (!match) {
    throw new TallyConfigError(
      field,
      `expected a duration such as 500ms, 10s, 5m, 1h or 32d, got ${JSON.stringify(value)}`,
    );
  }
  return Math.round(Number(match[1]) * (UNIT_MS[match[2] as string] as number));
}
