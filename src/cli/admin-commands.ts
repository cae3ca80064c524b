/**
 * Operator commands of the CLI: `tally status` and `tally dead-letter list|replay` (see src/admin/).
 */
import { parseArgs } from 'node:util';
import {
  formatDeadLetters,
  formatReplay,
  formatStatus,
  listDeadLetters,
  replayDeadLetters,
  status as readStatus,
  type ReplayDeadLettersOptions,
} from '../admin/index.js';
import { loadConfigFile, type TallyConfig } from '../config/index.js';
import { TallyConfigError } from '../errors/index.js';
import { connect, type RedisClient } from '../redis/index.js';

export const ADMIN_USAGE = `  status --config FILE [--json]            per partition: stream length, lag, pending, consumers, leases,
                                           open windows, closed-through point, dead letters, outbox
  dead-letter list --config FILE [--partition N] [--reason R] [--limit 50] [--after P/ID] [--json]
  dead-letter replay --config FILE (--id P/ID ... | --reason R | --all) [--partition N] [--limit N]
                     [--dry-run] [--keep] [--json]
                                           re-inject dead-lettered events (they still dedup by source and id)`;

async function loadConfig(file: string | undefined): Promise<TallyConfig> {
  if (!file) throw new TallyConfigError('--config', 'FILE is required');
  return loadConfigFile(file);
}

/**
 * A connection for a one-shot command: unlike a worker's, it gives up (and the command fails with the
 * error) when Redis cannot be reached, instead of waiting for it forever.
 */
async function withClient<T>(config: TallyConfig, fn: (client: RedisClient) => Promise<T>): Promise<T> {
  const client = connect(config.redis, {
    maxRetriesPerRequest: 2,
    connectTimeout: 5_000,
    retryStrategy: (times) => (times > 3 ? null : 200 * times),
  });
  try {
    return await fn(client);
  } finally {
    await client.quit().catch(() => client.disconnect());
  }
}

function intOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n))
    throw new TallyConfigError(name, `expected an integer, got ${JSON.stringify(value)}`);
  return n;
}

function print(json: boolean | undefined, value: unknown, text: () => string): void {
  console.log(json ? JSON.stringify(value, null, 2) : text());
}

/** `tally status --config FILE [--json]` */
export async function statusCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } },
  });
  const config = await loadConfig(values.config);
  const s = await withClient(config, (client) => readStatus(client, config));
  print(values.json, s, () => formatStatus(s));
}

async function listCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c' },
      partition: { type: 'string', short: 'p' },
      reason: { type: 'string' },
      limit: { type: 'string' },
      after: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const config = await loadConfig(values.config);
  const partition = intOption(values.partition, '--partition');
  const limit = intOption(values.limit, '--limit') ?? 50;
  const list = await withClient(config, (client) =>
    listDeadLetters(client, config, {
      limit,
      ...(partition !== undefined ? { partition } : {}),
      ...(values.reason !== undefined ? { reason: values.reason } : {}),
      ...(values.after !== undefined ? { after: values.after } : {}),
    }),
  );
  print(values.json, list, () => formatDeadLetters(list, Date.now(), limit));
}

async function replayCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c' },
      id: { type: 'string', multiple: true },
      partition: { type: 'string', short: 'p' },
      reason: { type: 'string' },
      all: { type: 'boolean' },
      limit: { type: 'string' },
      'dry-run': { type: 'boolean' },
      keep: { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  const config = await loadConfig(values.config);
  const partition = intOption(values.partition, '--partition');
  const limit = intOption(values.limit, '--limit');
  const options: ReplayDeadLettersOptions = {
    dryRun: values['dry-run'] ?? false,
    delete: !(values.keep ?? false),
    ...(values.id !== undefined ? { ids: values.id } : {}),
    ...(values.reason !== undefined ? { reason: values.reason } : {}),
    ...(values.all ? { all: true } : {}),
    ...(partition !== undefined ? { partition } : {}),
    ...(limit !== undefined ? { limit } : {}),
  };
  if ([options.ids, options.reason, options.all].filter((x) => x !== undefined).length !== 1) {
    throw new TallyConfigError(
      'dead-letter replay',
      'choose what to replay with exactly one of --id P/ID (repeatable), --reason R, --all',
    );
  }
  const result = await withClient(config, (client) => replayDeadLetters(client, config, options));
  print(values.json, result, () => formatReplay(result));
  if (result.failed.length > 0) process.exitCode = 1;
}

/** `tally dead-letter list|replay ...` */
export async function deadLetterCommand(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub === 'list') return listCommand(rest);
  if (sub === 'replay') return replayCommand(rest);
  throw new TallyConfigError(
    'dead-letter',
    `expected list or replay, got ${JSON.stringify(sub ?? '')}\n${ADMIN_USAGE}`,
  );
}
