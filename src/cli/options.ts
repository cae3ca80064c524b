/**
 * What every command of the CLI shares: the `--config` option loaded once, option parsers that
 * reject bad numbers with one line, a one-shot Redis connection, and a logger on stderr.
 */
import { InvalidArgumentError, type Command } from 'commander';
import type { RedisOptions } from 'ioredis';
import { pino, type Logger } from 'pino';
import { loadConfigFile, parseDuration, type TallyConfig } from '../config/index.js';
import { ErrorCode, TallyError } from '../errors/index.js';
import { connect, maskUrl, type AccessScope, type RedisClient } from '../redis/index.js';

/** Adds the `--config FILE` option every command but `demo` takes. */
export function withConfigOption(command: Command): Command {
  return command.requiredOption(
    '-c, --config <file>',
    'Tally config file (YAML or JSON); REDIS_URL overrides its redis.url',
  );
}

/** Loads the command's config once; says on stderr which Redis it will use (password masked). */
export async function loadCommandConfig(file: string): Promise<TallyConfig> {
  const config = await loadConfigFile(file);
  process.stderr.write(
    `tally: Redis ${maskUrl(config.redis.url)}${process.env.REDIS_URL ? ' (from REDIS_URL)' : ` (from ${file})`}\n`,
  );
  return config;
}

/** A commander argument parser for an integer within bounds. */
export function integer(
  min = Number.MIN_SAFE_INTEGER,
  max = Number.MAX_SAFE_INTEGER,
): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n))
      throw new InvalidArgumentError(`expected an integer, got ${JSON.stringify(value)}`);
    if (n < min || n > max)
      throw new InvalidArgumentError(`expected an integer from ${min} to ${max}, got ${n}`);
    return n;
  };
}

/** A commander argument parser for a duration such as `30s`, `5m` or a number of ms. */
export function duration(name: string): (value: string) => number {
  return (value) => {
    try {
      return parseDuration(value, name);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

/** A commander argument parser for a comma-separated list of partition numbers. */
export function partitionList(value: string): number[] {
  const parse = integer(0);
  return value.split(',').map((p) => parse(p.trim()));
}

/** Collects a repeatable option into an array. */
export function repeatable(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Logs of one-shot commands go to stderr: stdout carries their JSON or table. */
export function stderrLogger(level = process.env.LOG_LEVEL ?? 'warn'): Logger {
  return pino({ level }, pino.destination(2));
}

/**
 * A connection for a one-shot command: unlike a worker's, it gives up (and the command fails with the
 * error) when Redis cannot be reached, instead of waiting for it forever.
 */
export async function withClient<T>(
  config: TallyConfig,
  fn: (client: RedisClient) => Promise<T>,
  options: RedisOptions = {},
): Promise<T> {
  const client = connect(config.redis, {
    maxRetriesPerRequest: 2,
    connectTimeout: 5_000,
    retryStrategy: (times) => (times > 3 ? null : 200 * times),
    ...options,
  });
  // A failed connection attempt is reported once, as the command's error, not as 'error' events.
  let lastError: Error | undefined;
  client.on('error', (err: Error) => (lastError = err));
  try {
    return await fn(client);
  } catch (err) {
    if (lastError && client.status !== 'ready') {
      throw new TallyError(
        ErrorCode.Config,
        `cannot reach Redis at ${maskUrl(config.redis.url)}: ${lastError.message}`,
        { cause: err },
      );
    }
    throw err;
  } finally {
    await client.quit().catch(() => client.disconnect());
  }
}

/** Prints a result as pretty JSON or as text. */
export function print(json: boolean | undefined, value: unknown, text: () => string): void {
  console.log(json ? JSON.stringify(value, null, 2) : text());
}

/** Everything `tally worker` may touch: Tally's keys and every BullMQ queue of the config. */
export function accessScope(config: TallyConfig): AccessScope {
  return {
    prefix: config.prefix,
    queuePrefix: config.rollups.queuePrefix,
    queues: [...config.rollups.queues, config.entitlements.notificationsQueue],
  };
}
