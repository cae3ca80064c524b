/**
 * Receive rollups: one job per closed window, meter, subject and group, from the tally-billing queue.
 *
 *   npx tsx examples/subscribe.ts                             # until Ctrl-C
 *   npx tsx examples/subscribe.ts --count 1 --timeout 120     # stop after one rollup; exit 1 if none within 120 s
 *
 * Every rollup is added to each queue in `rollups.queues`. tally-entitlements belongs to the entitlement
 * evaluator (a role of `tally worker`): a subscriber taking jobs from it would take them from the
 * evaluator. Give each consumer of your own a queue of its own in `rollups.queues`.
 *
 * The first rollup arrives when a window closes: its end + `windows.grace` (5 s) once later events
 * arrive, or once the partition has been quiet for `windows.idleTimeout` (10 s). With config/tally.yaml
 * that is about a minute after examples/produce.ts for api_calls (MINUTE windows).
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { createRollupSubscriber, loadConfigFile } from 'tally-metering';

const { values } = parseArgs({ options: { count: { type: 'string' }, timeout: { type: 'string' } } });
const count = values.count === undefined ? Infinity : Number(values.count);
const timeoutS = values.timeout === undefined ? Infinity : Number(values.timeout);

const config = await loadConfigFile(process.env.TALLY_CONFIG ?? 'config/tally.yaml');
const queue = config.rollups.queues[0] as string; // tally-billing
// BullMQ workers need maxRetriesPerRequest: null on their connection.
const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });

let received = 0;
let finish: (code: number) => void = () => undefined;
const done = new Promise<number>((resolve) => (finish = resolve));
const subscriber = createRollupSubscriber(
  queue,
  async (rollup) => {
    // At-least-once delivery: store it idempotently, e.g. upsert by (meter, subject, groupBy,
    // windowStart) keeping the highest revision.
    received++;
    const groups = Object.entries(rollup.groupBy)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    console.log(
      `${rollup.meter} ${rollup.subject} ${groups} ${rollup.windowStart}..${rollup.windowEnd}: ${rollup.aggregation} ${rollup.valueDecimal} (revision ${rollup.revision})`,
    );
    if (received >= count) finish(0);
    return Promise.resolve();
  },
  { connection, prefix: config.rollups.queuePrefix },
);
subscriber.on('error', (err) => console.error(`subscriber: ${err.message}`));
process.once('SIGINT', () => finish(0));
process.once('SIGTERM', () => finish(0));
const timer = Number.isFinite(timeoutS)
  ? setTimeout(() => {
      console.error(
        `no${received > 0 ? ` more than ${received}` : ''} rollup within ${timeoutS} s (is a worker running? windows close at their end + grace)`,
      );
      finish(1);
    }, timeoutS * 1000)
  : undefined;
console.error(
  `Redis ${new URL(config.redisUrl).host}, waiting for rollups on ${queue}${Number.isFinite(count) ? ` (${count})` : ''}…`,
);

process.exitCode = await done;
clearTimeout(timer);
await subscriber.close();
connection.disconnect();
