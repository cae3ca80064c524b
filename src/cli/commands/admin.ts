/** Operator commands: `tally status` and `tally dead-letter list|replay` (see src/admin/). */
import { Option, type Command } from 'commander';
import {
  formatDeadLetters,
  formatReplay,
  formatStatus,
  listDeadLetters,
  replayDeadLetters,
  status as readStatus,
  type ReplayDeadLettersOptions,
} from '../../admin/index.js';
import { TallyConfigError } from '../../errors/index.js';
import { integer, loadCommandConfig, print, repeatable, withClient, withConfigOption } from '../options.js';

interface ListFlags {
  config: string;
  partition?: number;
  reason?: string;
  limit: number;
  after?: string;
  json?: boolean;
}

interface ReplayFlags {
  config: string;
  id?: string[];
  partition?: number;
  reason?: string;
  all?: boolean;
  limit?: number;
  dryRun?: boolean;
  keep?: boolean;
  json?: boolean;
  payload?: string;
}

const partitionOption = () => new Option('-p, --partition <n>', 'only this partition').argParser(integer(0));

async function list(flags: ListFlags): Promise<void> {
  const config = await loadCommandConfig(flags.config);
  const result = await withClient(config, (client) =>
    listDeadLetters(client, config, {
      limit: flags.limit,
      ...(flags.partition !== undefined ? { partition: flags.partition } : {}),
      ...(flags.reason !== undefined ? { reason: flags.reason } : {}),
      ...(flags.after !== undefined ? { after: flags.after } : {}),
    }),
  );
  print(flags.json, result, () => formatDeadLetters(result, Date.now(), flags.limit));
}

async function replay(flags: ReplayFlags): Promise<void> {
  const options: ReplayDeadLettersOptions = {
    dryRun: flags.dryRun ?? false,
    delete: !(flags.keep ?? false),
    ...(flags.id !== undefined ? { ids: flags.id } : {}),
    ...(flags.reason !== undefined ? { reason: flags.reason } : {}),
    ...(flags.all ? { all: true } : {}),
    ...(flags.partition !== undefined ? { partition: flags.partition } : {}),
    ...(flags.limit !== undefined ? { limit: flags.limit } : {}),
    ...(flags.payload !== undefined ? { payload: flags.payload } : {}),
  };
  if ([options.ids, options.reason, options.all].filter((x) => x !== undefined).length !== 1) {
    throw new TallyConfigError(
      'dead-letter replay',
      'choose what to replay with exactly one of --id P/ID (repeatable), --reason R, --all',
    );
  }
  const config = await loadCommandConfig(flags.config);
  const result = await withClient(config, (client) => replayDeadLetters(client, config, options));
  print(flags.json, result, () => formatReplay(result));
  if (result.failed.length > 0) process.exitCode = 1;
}

export function registerAdmin(program: Command): void {
  withConfigOption(
    program
      .command('status')
      .description(
        'per partition: stream length, lag, pending, consumers, leases, open windows, stream time, dead letters, outbox',
      ),
  )
    .option('--json', 'print JSON')
    .action(async (flags: { config: string; json?: boolean }) => {
      const config = await loadCommandConfig(flags.config);
      const s = await withClient(config, (client) => readStatus(client, config));
      print(flags.json, s, () => formatStatus(s));
    });

  const deadLetter = program.command('dead-letter').description('list and replay dead-lettered events');
  withConfigOption(deadLetter.command('list').description('list dead letters, oldest first'))
    .addOption(partitionOption())
    .option('--reason <reason>', 'only dead letters with this reason (see docs/contract.md)')
    .option('--limit <n>', 'at most this many', integer(1), 50)
    .option('--after <P/ID>', 'start after this dead letter (to page)')
    .option('--json', 'print JSON')
    .action(list);
  withConfigOption(
    deadLetter
      .command('replay')
      .description('re-inject dead-lettered events (they still dedup by source and id)'),
  )
    .option('--id <P/ID>', 'replay this dead letter (repeatable)', repeatable)
    .option('--reason <reason>', 'replay every dead letter with this reason')
    .option('--all', 'replay every dead letter')
    .addOption(partitionOption())
    .option('--limit <n>', 'at most this many', integer(1))
    .option('--dry-run', 'say what would be replayed, change nothing')
    .option('--keep', 'keep the replayed dead letters (default: delete them)')
    .option(
      '--payload <json>',
      'with one --id: replay this fixed event instead of the stored one (a dead letter of one meter stays scoped to it)',
    )
    .option('--json', 'print JSON')
    .action(replay);
}
