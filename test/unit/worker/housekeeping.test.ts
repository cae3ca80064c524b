import { describe, expect, it } from 'vitest';
import { runHousekeeping, type HousekeepingStep } from '../../../src/worker/housekeeping.js';

describe('runHousekeeping', () => {
  it('runs each step on its own cadence, and a failing step neither stops the others nor itself', async () => {
    const runs = { fast: 0, slow: 0, broken: 0 };
    const failed: string[] = [];
    const recovered: string[] = [];
    let brokenUntil = 3;
    const steps: HousekeepingStep[] = [
      { step: 'fast', every: 0, run: () => Promise.resolve(void runs.fast++) },
      { step: 'slow', every: 100, run: () => Promise.resolve(void runs.slow++) },
      {
        step: 'broken',
        every: 0,
        run: () => {
          runs.broken++;
          return brokenUntil-- > 0 ? Promise.reject(new Error('boom')) : Promise.resolve();
        },
      },
    ];
    const stop = new AbortController();
    const loop = runHousekeeping(steps, 10, stop.signal, {
      failed: (step) => failed.push(step),
      succeeded: (step) => recovered.push(step),
    });
    const started = Date.now();
    while (runs.fast < 12 && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 5));
    stop.abort();
    await loop;
    const elapsed = Date.now() - started;
    // The every-round steps ran each round; the 100 ms step at most once per 100 ms (and at least once).
    expect(runs.fast).toBeGreaterThanOrEqual(12);
    expect(runs.broken).toBe(runs.fast);
    expect(runs.slow).toBeGreaterThanOrEqual(1);
    expect(runs.slow).toBeLessThanOrEqual(Math.floor(elapsed / 100) + 1);
    expect(runs.slow).toBeLessThan(runs.fast);
    expect(failed).toEqual(['broken', 'broken', 'broken']);
    expect(recovered.filter((s) => s === 'broken').length).toBe(runs.broken - 3);
  });

  it('returns at once when the signal aborts, without running a step', async () => {
    const stop = new AbortController();
    stop.abort();
    let ran = false;
    await runHousekeeping(
      [{ step: 'x', every: 0, run: () => Promise.resolve(void (ran = true)) }],
      1_000,
      stop.signal,
      {
        failed: () => undefined,
        succeeded: () => undefined,
      },
    );
    expect(ran).toBe(false);
  });
});
