import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Decides the Redis all tests share (REDIS_URL, a local redis-server, or testcontainers).
    globalSetup: ['./test/global-setup.ts'],
    include: ['test/**/*.test.ts'],
    // Child processes, not worker threads: tests spawn and kill redis-server processes and must not share
    // a process-wide exit hook with other files.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    // Sized for the 2-core CI box: more workers only make Redis and the tests fight for CPU.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
