/** Instants on the command line: ISO 8601, or relative to now (`now`, `now-24h`, `now+5m`). */
import { InvalidArgumentError } from 'commander';
import { parseDuration } from '../config/index.js';

const RELATIVE = /^now(?:([+-])(.+))?$/i;

/** Epoch ms of an ISO 8601 date-time or of `now`, `now-<duration>`, `now+<duration>` (durations: 30s, 15m, 24h, 7d). */
export function parseInstant(value: string, name: string, now = Date.now()): number {
  const rel = RELATIVE.exec(value.trim());
  if (rel) {
    if (rel[1] === undefined) return now;
    let ms: number;
    try {
      ms = parseDuration(rel[2] as string, name);
    } catch {
      throw new InvalidArgumentError(
        `expected now-<duration> such as now-24h or now-7d, got ${JSON.stringify(value)}`,
      );
    }
    return rel[1] === '-' ? now - ms : now + ms;
  }
  const ms = /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : Number.NaN;
  if (!Number.isFinite(ms))
    throw new InvalidArgumentError(
      `expected an ISO 8601 date-time or now, now-24h, now-7d..., got ${JSON.stringify(value)}`,
    );
  return ms;
}

/** A commander argument parser for an instant; the value becomes an ISO 8601 string. */
export function instant(name: string): (value: string) => string {
  return (value) => new Date(parseInstant(value, name)).toISOString();
}
