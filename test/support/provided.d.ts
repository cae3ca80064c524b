// Values that test/global-setup.ts hands to every test file through vitest's provide/inject.
import 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the Redis all tests share, e.g. `redis://127.0.0.1:41234`. */
    redisUrl: string;
    /** Where it comes from: REDIS_URL, a local redis-server started for the run, or a testcontainers container. */
    redisMode: 'external' | 'local' | 'container';
  }
}
