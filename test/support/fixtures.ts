/** Shared fixtures of the pipeline tests: meters of every aggregation and a deterministic event mix. */
import type { UsageEvent } from '../../src/index.js';
import type { ModelMeter } from './model.js';

const MINUTE = 60_000;

export const METERS = [
  {
    slug: 'tokens',
    eventType: 'llm',
    aggregation: 'SUM',
    valueProperty: '$.tokens',
    groupBy: { model: '$.model' },
    windowSize: '1m',
  },
  { slug: 'calls', eventType: 'req', aggregation: 'COUNT', groupBy: { route: '$.route' }, windowSize: '1m' },
  { slug: 'lat_min', eventType: 'req', aggregation: 'MIN', valueProperty: '$.latency', windowSize: '1m' },
  { slug: 'lat_max', eventType: 'req', aggregation: 'MAX', valueProperty: '$.latency', windowSize: '1m' },
  { slug: 'lat_avg', eventType: 'req', aggregation: 'AVG', valueProperty: '$.latency', windowSize: '1m' },
  { slug: 'users', eventType: 'req', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user', windowSize: '1m' },
  { slug: 'balance', eventType: 'req', aggregation: 'LATEST', valueProperty: '$.balance', windowSize: '1m' },
];

export const MODEL_METERS: ModelMeter[] = [
  {
    slug: 'tokens',
    eventType: 'llm',
    aggregation: 'SUM',
    valueKey: 'tokens',
    groupBy: { model: 'model' },
    windowMs: MINUTE,
  },
  { slug: 'calls', eventType: 'req', aggregation: 'COUNT', groupBy: { route: 'route' }, windowMs: MINUTE },
  { slug: 'lat_min', eventType: 'req', aggregation: 'MIN', valueKey: 'latency', windowMs: MINUTE },
  { slug: 'lat_max', eventType: 'req', aggregation: 'MAX', valueKey: 'latency', windowMs: MINUTE },
  { slug: 'lat_avg', eventType: 'req', aggregation: 'AVG', valueKey: 'latency', windowMs: MINUTE },
  { slug: 'users', eventType: 'req', aggregation: 'UNIQUE_COUNT', valueKey: 'user', windowMs: MINUTE },
  { slug: 'balance', eventType: 'req', aggregation: 'LATEST', valueKey: 'balance', windowMs: MINUTE },
];

/** One event of the fixture mix (LLM tokens or an API request), drawing its values from `rnd`. */
export function fixtureEvent(
  id: string,
  source: string,
  subject: string,
  time: string,
  rnd: () => number,
): UsageEvent {
  return rnd() < 0.5
    ? {
        id,
        source,
        type: 'llm',
        subject,
        time,
        data: { tokens: Math.floor(rnd() * 1000) + 0.125, model: rnd() < 0.5 ? 'a' : 'b' },
      }
    : {
        id,
        source,
        type: 'req',
        subject,
        time,
        data: {
          route: rnd() < 0.5 ? '/x' : '/y',
          latency: Math.round(rnd() * 500_000) / 1000 - 50,
          user: `u${Math.floor(rnd() * 20)}`,
          balance: Math.round(rnd() * 1e6) / 100,
        },
      };
}

/** Deterministic events over `minutes` past minutes, in time order, with `dupRate` re-sent duplicates. */
export function makeEvents(
  n: number,
  opts: { minutes?: number; dupRate?: number; subjects?: number; seed?: number } = {},
): UsageEvent[] {
  let s = opts.seed ?? 7;
  const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const minutes = opts.minutes ?? 3;
  const start = Math.floor(Date.now() / MINUTE) * MINUTE - (minutes + 2) * MINUTE;
  const events: UsageEvent[] = [];
  for (let i = 0; i < n; i++) {
    const time = new Date(start + Math.floor((i / n) * minutes * MINUTE)).toISOString();
    const subject = `cust-${Math.floor(rnd() * (opts.subjects ?? 5))}`;
    if (events.length > 10 && rnd() < (opts.dupRate ?? 0.1)) {
      events.push(events[Math.floor(rnd() * events.length)] as UsageEvent);
      continue;
    }
    const event = fixtureEvent(`e${i}`, 'test', subject, time, rnd);
    events.push(event);
  }
  return events;
}
