import type { Worker } from 'bullmq';
import type { Logger } from 'pino';

/** Errors within WINDOW_MS that make a BullMQ worker count as spinning. */
const TRIP_ERRORS = 50;
const WINDOW_MS = 1_000;
const FIRST_PAUSE_MS = 1_000;
const MAX_PAUSE_MS = 30_000;

/**
 * Keeps a BullMQ Worker from spinning the process.
 *
 * BullMQ 6.7's fetch loop retries a failed fetch at once when the error is a Redis reply rather than
 * a lost connection, and every retry resolves without waiting on I/O: a reply that keeps coming back
 * (NOPERM for INFO, which its connection set-up needs; a script denied by the ACL) makes it loop on
 * microtasks, and the event loop starves: no timer, no other Redis command, no signal handler runs.
 *
 * The guard listens to the worker's 'error' events, which that loop emits on every turn. When they
 * come faster than TRIP_ERRORS per second it pauses the worker (which ends the loop) and resumes it
 * later, with backoff from 1 s to 30 s; one warning per pause, the error included. A healthy worker
 * emits few errors and is never paused. Returns a function that removes the guard (call it before
 * closing the worker).
 *
 * Without a logger, and when nobody else listens to 'error', each error is printed to stderr as
 * BullMQ itself does then (the guard's listener must not make them disappear).
 */
export function guardWorker(worker: Worker, name: string, logger?: Logger): () => void {
  let windowStart = Date.now();
  let errors = 0;
  let pauseMs = FIRST_PAUSE_MS;
  let timer: NodeJS.Timeout | undefined;
  let lastTrip = 0;
  const onError = (err: Error) => {
    if (!logger && worker.listenerCount('error') === 1) console.error(err);
    if (timer) return;
    const now = Date.now();
    if (now - windowStart > WINDOW_MS) {
      windowStart = now;
      errors = 0;
    }
    if (++errors < TRIP_ERRORS) return;
    // A trip long after the last one starts the backoff afresh.
    if (now - lastTrip > 2 * MAX_PAUSE_MS) pauseMs = FIRST_PAUSE_MS;
    lastTrip = now;
    logger?.warn(
      { err, queue: name, pauseMs },
      'the BullMQ worker keeps failing at once, without waiting: pausing it so it cannot spin the process',
    );
    // pause() sets the flag that ends BullMQ's fetch loop before its first await.
    void worker.pause(true).catch(() => undefined);
    timer = setTimeout(() => {
      timer = undefined;
      windowStart = Date.now();
      errors = 0;
      if (!worker.closing) void worker.resume().catch(() => undefined);
    }, pauseMs);
    timer.unref();
    pauseMs = Math.min(pauseMs * 2, MAX_PAUSE_MS);
  };
  worker.on('error', onError);
  return () => {
    worker.off('error', onError);
    clearTimeout(timer);
    timer = undefined;
  };
}
