import { sleep } from '../time/index.js';

/** One periodic step of a partition's housekeeping loop. */
export interface HousekeepingStep {
  /** Name, for logs (`<step> failed; retrying`). */
  readonly step: string;
  /** Least time between two runs, in ms; 0 runs it every round. */
  readonly every: number;
  readonly run: (now: number) => Promise<void>;
}

export interface HousekeepingHooks {
  /** Called with each failure; the step runs again on its next turn. */
  readonly failed: (step: string, err: unknown) => void;
  readonly succeeded: (step: string) => void;
}

/**
 * Runs a table of steps every `intervalMs` until `signal` aborts, each step on its own cadence. Steps
 * succeed or fail on their own: one that keeps failing (window closing on a damaged key, a relay that
 * cannot reach its queue) never stops the others, least of all the reclaim.
 */
export async function runHousekeeping(
  steps: readonly HousekeepingStep[],
  intervalMs: number,
  signal: AbortSignal,
  hooks: HousekeepingHooks,
): Promise<void> {
  const lastRun = new Map<string, number>();
  while (!signal.aborted) {
    await sleep(intervalMs, signal);
    if (signal.aborted) break;
    const now = Date.now();
    for (const { step, every, run } of steps) {
      if (signal.aborted) break;
      const last = lastRun.get(step);
      if (last !== undefined && now - last < every) continue;
      lastRun.set(step, now);
      try {
        await run(now);
        hooks.succeeded(step);
      } catch (err) {
        hooks.failed(step, err);
      }
    }
  }
}
