/**
 * Produce usage events: one LLM completion with `send`, then a batch of API calls with `sendBatch`.
 *
 *   npx tsx examples/produce.ts        # uses config/tally.yaml; REDIS_URL overrides its Redis
 *
 * With a worker running (`npx tally worker --config config/tally.yaml`), see the result at once with
 * examples/check.ts and examples/query.ts (they read windows still open), or `npx tally status`. The
 * first rollups (examples/subscribe.ts) come when the windows close: api_calls has MINUTE windows, so
 * about a minute after this; llm_tokens has HOUR windows, so after the hour ends.
 */
import { randomUUID } from 'node:crypto';
import { loadConfigFile, UsageProducer, type UsageEvent } from 'tally-metering';

const config = await loadConfigFile(process.env.TALLY_CONFIG ?? 'config/tally.yaml');
console.error(`Redis ${new URL(config.redisUrl).host}, prefix ${config.prefix}`);
// Same prefix and partitions as the workers: events are routed by crc32(subject) % partitions.
const producer = new UsageProducer({
  redis: config.redis,
  prefix: config.prefix,
  partitions: config.partitions,
});
try {
  // Fresh ids: an id (per source) is counted once, so a re-sent event is dropped as a duplicate.
  // Without `time` an event counts at the time it is written.
  await producer.send({
    id: randomUUID(),
    source: 'examples',
    type: 'llm.completion',
    subject: 'customer-42',
    time: new Date().toISOString(),
    data: { tokens: 1234, model: 'gpt-5', direction: 'output' },
  });
  const calls: UsageEvent[] = Array.from({ length: 10 }, (_, i) => ({
    id: randomUUID(),
    source: 'examples',
    type: 'api.request',
    subject: 'customer-42',
    data: { route: '/v1/chat', user: `user-${i % 3}` },
  }));
  await producer.sendBatch(calls); // batch entries, one pipeline
  console.log(
    `sent 1 llm.completion (1234 gpt-5 tokens) and ${calls.length} api.request events for customer-42`,
  );
} finally {
  // Without close() the open connection keeps the process alive.
  await producer.close();
}
