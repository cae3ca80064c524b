/**
 * Query stored usage: customer-42's LLM tokens per hour and model over the last 24 hours (windows still
 * open included, with their value so far).
 *
 *   npx tsx examples/query.ts
 *
 * The same from a shell: npx tally usage --config config/tally.yaml --meter llm_tokens
 *   --subject customer-42 --from now-24h --to now --window-size HOUR --group-by model
 */
import { loadConfigFile, UsageQuery } from 'tally-metering';

const config = await loadConfigFile(process.env.TALLY_CONFIG ?? 'config/tally.yaml');
console.error(`Redis ${new URL(config.redisUrl).host}, prefix ${config.prefix}`);
const usage = new UsageQuery({ config });
try {
  const now = Date.now();
  const rows = await usage.query({
    meter: 'llm_tokens',
    subject: 'customer-42',
    from: now - 24 * 3_600_000,
    to: now + 1, // exclusive: include the window that started just now
    windowSize: 'HOUR',
    groupBy: ['model'],
  });
  if (rows.length === 0)
    console.log(
      'no llm_tokens usage for customer-42 in the last 24 hours (run examples/produce.ts and a worker)',
    );
  for (const r of rows)
    console.log(
      `${r.windowStart}  ${r.subject}  model=${r.groupBy.model}  ${r.valueDecimal} tokens in ${r.eventCount} events`,
    );
} finally {
  await usage.close();
}
