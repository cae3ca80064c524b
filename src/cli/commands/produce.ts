/** `tally produce` and `tally demo-producer`: send events from stdin, or synthetic ones. */
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import type { TallyConfig } from '../../config/index.js';
import { explainInvalidEvent, type UsageEvent } from '../../events/index.js';
import { UsageProducer } from '../../producer/index.js';
import { produceSynthetic } from '../synthetic.js';
import { integer, loadCommandConfig, withConfigOption } from '../options.js';

function producerFor(config: TallyConfig): UsageProducer {
  return new UsageProducer({
    redis: config.redis,
    prefix: config.prefix,
    partitions: config.partitions,
    maxEntryBytes: config.maxEntryBytes,
  });
}

async function produce(flags: { config: string; batch: number }): Promise<void> {
  const producer = producerFor(await loadCommandConfig(flags.config));
  let batch: UsageEvent[] = [];
  let sent = 0;
  let line = 0;
  const bad: string[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    // Each line was checked with explainInvalidEvent as it was read: the producer need not check it again.
    const outcome = await producer.sendBatchSettled(batch, { validated: true });
    if (outcome.error) throw outcome.error;
    sent += batch.length;
    batch = [];
  };
  try {
    for await (const text of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
      line++;
      if (text.trim() === '') continue;
      let event: unknown;
      try {
        event = JSON.parse(text);
      } catch (err) {
        bad.push(`line ${line}: not JSON: ${(err as Error).message}`);
        continue;
      }
      const invalid = explainInvalidEvent(event);
      if (invalid) bad.push(`line ${line}: ${invalid.detail}`);
      else batch.push(event as UsageEvent);
      if (batch.length >= flags.batch) await flush();
    }
    await flush();
  } finally {
    await producer.close();
  }
  console.log(`sent ${sent} events${bad.length ? `, rejected ${bad.length}:` : ''}`);
  for (const b of bad.slice(0, 20)) console.log(`  ${b}`);
  if (bad.length > 0) process.exitCode = 1;
}

async function demoProducer(flags: { config: string; rate: number }): Promise<void> {
  const config = await loadCommandConfig(flags.config);
  const producer = producerFor(config);
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  console.log(
    `producing ~${flags.rate} synthetic events/s to ${config.prefix} (${config.partitions} partitions); Ctrl-C stops`,
  );
  const { sent } = await produceSynthetic({
    send: (b) => producer.sendBatch(b),
    rate: flags.rate,
    signal: stop.signal,
    subjects: 50,
  });
  await producer.close();
  console.log(`sent ${sent} events`);
}

export function registerProduce(program: Command): void {
  withConfigOption(
    program
      .command('produce')
      .description(
        'send CloudEvents from stdin, one JSON object per line (exit code 1 if a line was rejected)',
      ),
  )
    .option('--batch <n>', 'events per pipelined send', integer(1, 100_000), 500)
    .action(produce);
  withConfigOption(
    program
      .command('demo-producer')
      .description('send synthetic events for the meters of config/tally.yaml until Ctrl-C'),
  )
    .option('--rate <n>', 'events per second', integer(1, 10_000_000), 1000)
    .action(demoProducer);
}
