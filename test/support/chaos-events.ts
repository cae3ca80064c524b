/**
 * A deterministic (seeded) event mix for the chaos test, over the meters of fixtures.ts: out-of-order
 * event times (a few events far behind, so they arrive after their window closed), duplicates re-sent
 * soon and duplicates re-sent at the very end, and invalid events (non-numeric values) that the
 * workers must dead-letter.
 */
import { random } from './random.js';
import type { UsageEvent } from '../../src/index.js';
import { fixtureEvent } from './fixtures.js';

const MINUTE = 60_000;

export interface ChaosMixOptions {
  /** Distinct valid events. */
  events: number;
  subjects: number;
  /** Share of all sent events that are duplicates. @defaultValue 0.1 */
  duplicateRate?: number;
  /** Share of the duplicates re-sent only after the main stream. @defaultValue 0.25 */
  lateDuplicateShare?: number;
  /** Invalid events mixed into the main stream. */
  invalid: number;
  /** Event times span this many minutes, ending two minutes ago. @defaultValue 20 */
  minutes?: number;
  /** Share of events whose time lies 70 s to `maxDelayMs` behind their neighbours'. @defaultValue 0.01 */
  lateRate?: number;
  /** @defaultValue 180000 */
  maxDelayMs?: number;
  seed: number;
  /** Clock the times are relative to. @defaultValue Date.now() */
  now?: number;
}

export interface ChaosMix {
  /** The main stream, in sending order: valid events, soon-repeated duplicates and invalid events. */
  main: UsageEvent[];
  /** Duplicates of events from anywhere in the main stream, sent after it. */
  lateDuplicates: UsageEvent[];
  /** Ids of the invalid events (each sent once). */
  invalidIds: Set<string>;
  /** Events sent in all (main + late duplicates). */
  total: number;
  duplicates: number;
  /** Events whose time is far behind (likely to land in a closed window). */
  delayed: number;
}

export function makeChaosMix(opts: ChaosMixOptions): ChaosMix {
  const rnd = random(opts.seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)] as T;
  const n = opts.events;
  const minutes = opts.minutes ?? 20;
  const duplicateRate = opts.duplicateRate ?? 0.1;
  const lateShare = opts.lateDuplicateShare ?? 0.25;
  const lateRate = opts.lateRate ?? 0.01;
  const maxDelayMs = opts.maxDelayMs ?? 3 * MINUTE;
  const start = Math.floor((opts.now ?? Date.now()) / MINUTE) * MINUTE - (minutes + 2) * MINUTE;
  // duplicates / (n + duplicates) = duplicateRate
  const duplicates = Math.round((n * duplicateRate) / (1 - duplicateRate));
  const lateDuplicates = Math.round(duplicates * lateShare);
  const soonDuplicates = duplicates - lateDuplicates;
  const subjects = Array.from({ length: opts.subjects }, (_, i) => `cust-${i}`);

  const originals: UsageEvent[] = [];
  const main: UsageEvent[] = [];
  const invalidIds = new Set<string>();
  let delayed = 0;
  const timeAt = (i: number): number => {
    const base = start + Math.floor((i / n) * minutes * MINUTE);
    if (rnd() < lateRate) {
      delayed++;
      return base - 70_000 - Math.floor(rnd() * (maxDelayMs - 70_000));
    }
    return base - Math.floor(rnd() * 2_000); // small jitter: out of order, mostly within the window
  };
  const invalidEvery = n / Math.max(1, opts.invalid);
  const soonEvery = n / Math.max(1, soonDuplicates);
  let nextInvalid = invalidEvery / 2;
  let nextSoon = soonEvery;
  for (let i = 0; i < n; i++) {
    const time = new Date(timeAt(i)).toISOString();
    const subject = pick(subjects);
    const event = fixtureEvent(`c${i}`, 'chaos', subject, time, rnd);
    originals.push(event);
    main.push(event);
    if (i >= nextSoon && originals.length > 1) {
      // A retry shortly after: a copy of one of the last few thousand events.
      main.push(originals[Math.max(0, originals.length - 1 - Math.floor(rnd() * 5_000))] as UsageEvent);
      nextSoon += soonEvery;
    }
    if (i >= nextInvalid && invalidIds.size < opts.invalid) {
      const id = `bad${invalidIds.size}`;
      invalidIds.add(id);
      main.push(
        rnd() < 0.5
          ? { id, source: 'chaos', type: 'llm', subject, time, data: { tokens: 'lots', model: 'a' } }
          : {
              id,
              source: 'chaos',
              type: 'req',
              subject,
              time,
              data: { route: '/x', latency: 'slow', user: 'u1', balance: 1 },
            },
      );
      nextInvalid += invalidEvery;
    }
  }
  const late = Array.from({ length: lateDuplicates }, () => pick(originals));
  const soon = main.length - n - invalidIds.size;
  return {
    main,
    lateDuplicates: late,
    invalidIds,
    total: main.length + late.length,
    duplicates: soon + late.length,
    delayed,
  };
}
