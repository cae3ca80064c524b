/** `tally demo`: a worker, a synthetic producer and a rollup subscriber on a Redis it finds or starts. */
import type { Command } from 'commander';
import { runDemo } from '../demo.js';
import { duration, integer } from '../options.js';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'run a worker, a synthetic producer and a rollup subscriber (on REDIS_URL, the local Redis, or an ephemeral one)',
    )
    .option(
      '--duration <duration>',
      'stop after this long, e.g. 30s (default: until Ctrl-C)',
      duration('--duration'),
    )
    .option('--rate <n>', 'synthetic events per second', integer(1, 10_000_000))
    .action(async (flags: { duration?: number; rate?: number }) => {
      await runDemo({
        ...(flags.duration !== undefined ? { durationMs: flags.duration } : {}),
        ...(flags.rate !== undefined ? { rate: flags.rate } : {}),
      });
    });
}
