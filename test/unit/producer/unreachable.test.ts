/**
 * A producer pointed at a Redis that does not answer (a wrong port) rejects its sends after
 * `sendTimeout` with one clear error, and closes at once, instead of hanging forever without a word.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, TallyConfigError, TallyError, UsageProducer } from '../../../src/index.js';
import { findFreePort } from '../../support/redis-server.js';

const event = { id: 'e-1', source: 'test', type: 'llm.completion', subject: 'acme', data: { tokens: 1 } };

async function rejection(p: Promise<unknown>): Promise<TallyError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(TallyError);
    return err as TallyError;
  }
  throw new Error('expected a rejection');
}

describe('UsageProducer with an unreachable Redis', () => {
  it('rejects send and sendBatch after sendTimeout, naming the Redis (password masked) and the connection error', async () => {
    const port = await findFreePort();
    const producer = new UsageProducer({ redis: `redis://app:s3cret@127.0.0.1:${port}`, sendTimeout: 400 });
    try {
      const started = performance.now();
      const err = await rejection(producer.send(event));
      const took = performance.now() - started;
      expect(took).toBeGreaterThanOrEqual(390);
      expect(took).toBeLessThan(3_000);
      expect(err.code).toBe(ErrorCode.Unavailable);
      expect(err.message).toMatch(
        new RegExp(
          `^Redis at redis://app:\\*\\*\\*@127\\.0\\.0\\.1:${port} did not answer within 400 ms: connect ECONNREFUSED`,
        ),
      );
      expect(err.message).toContain('sending again is safe');
      expect(err.message).not.toContain('s3cret');
      const batch = await rejection(producer.sendBatch([event, { ...event, id: 'e-2', subject: 'other' }]));
      expect(batch.code).toBe(ErrorCode.Unavailable);
    } finally {
      const closing = performance.now();
      await producer.close();
      expect(performance.now() - closing).toBeLessThan(500);
    }
  });

  it('refuses a negative sendTimeout', () => {
    expect(() => new UsageProducer({ redis: 'redis://127.0.0.1:1', sendTimeout: -1 })).toThrow(
      TallyConfigError,
    );
  });
});
