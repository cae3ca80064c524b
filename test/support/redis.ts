/**
 * Helpers for tests that use the shared Redis from test/global-setup.ts: its URL, unique key prefixes,
 * self-closing clients and polling with a deadline.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import { afterAll, inject, onTestFinished } from 'vitest';

/** URL of the Redis shared by all tests (provided by test/global-setup.ts). */
export function testRedisUrl(): string {
  return inject('redisUrl');
}

/** `t-<label>-<8 hex>` (or `t-<8 hex>`): a prefix no other test (or run against the same REDIS_URL) uses. */
export function uniquePrefix(label?: string): string {
  const id = randomUUID().replaceAll('-', '').slice(0, 8);
  return label ? `t-${label}-${id}` : `t-${id}`;
}

// Clients created outside a running test (describe body, beforeAll): closed after the file's suite.
const fileClients = new Set<Redis>();

async function closeClient(client: Redis): Promise<void> {
  fileClients.delete(client);
  if (client.status === 'end') return;
  // QUIT waits for pending replies; with maxRetriesPerRequest null it could wait forever on a dead server.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    client.quit().catch(() => undefined),
    new Promise((resolve) => {
      timer = setTimeout(resolve, 1_000);
    }),
  ]);
  clearTimeout(timer);
  client.disconnect();
}

/** Closes clients created outside a test. Runs by itself in an afterAll hook of every file importing this module. */
export async function closeTestRedisClients(): Promise<void> {
  await Promise.all([...fileClients].map(closeClient));
}

// Registered when a test file imports this module, so it hooks that file's root suite. (vitest isolates
// modules per test file by default; with `isolate: false` only the first file would get this hook.)
afterAll(closeTestRedisClients);

export interface TestRedisOptions extends RedisOptions {
  /** Server to connect to. @defaultValue testRedisUrl() */
  url?: string;
}

/**
 * An ioredis client (`maxRetriesPerRequest: null`, as BullMQ workers need) to the shared Redis, closed by
 * itself: after the current test when created inside one, else after the file's tests.
 */
export function createTestRedis(options: TestRedisOptions = {}): Redis {
  const { url = testRedisUrl(), ...redisOptions } = options;
  const client = new Redis(url, { maxRetriesPerRequest: null, ...redisOptions });
  try {
    onTestFinished(() => closeClient(client));
  } catch {
    // Not inside a running test: close it with the file.
    fileClients.add(client);
  }
  return client;
}

export interface WaitForOptions {
  /** @defaultValue 10000 */
  timeoutMs?: number;
  /** @defaultValue 50 */
  intervalMs?: number;
  /** Says what was awaited, in the timeout error. @defaultValue 'condition' */
  message?: string;
}

/**
 * Polls `fn` until it returns something other than `undefined` or `false`, and returns that. A throw counts as
 * "not yet" (so `expect(...)` works inside); the last one becomes the timeout error's cause. Each call is also
 * bounded by the deadline, so a hanging `fn` cannot hang the test past it.
 */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  opts: WaitForOptions = {},
): Promise<T> {
  const { timeoutMs = 10_000, intervalMs = 50, message = 'condition' } = opts;
  const started = Date.now();
  const deadline = started + timeoutMs;
  const timedOut = Symbol('timedOut');
  let lastError: unknown;
  let attempts = 0;
  for (;;) {
    attempts++;
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        Promise.resolve().then(fn),
        new Promise<typeof timedOut>((resolve) => {
          timer = setTimeout(() => resolve(timedOut), Math.max(0, deadline - Date.now()));
        }),
      ]);
      if (result !== timedOut && result !== undefined && result !== false) return result;
      if (result !== timedOut) lastError = undefined;
    } catch (err) {
      lastError = err;
    } finally {
      clearTimeout(timer);
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      const why =
        lastError === undefined
          ? ''
          : `; last error: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)}`;
      throw new Error(
        `waitFor timed out after ${Date.now() - started} ms (${attempts} attempts): ${message}${why}`,
        {
          cause: lastError,
        },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, remaining)));
  }
}
