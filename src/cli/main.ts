#!/usr/bin/env node
/**
 * The `tally` command. Each command lives in ./commands; a user's mistake (a bad option, a bad config,
 * an unreachable Redis) ends in one line on stderr and a non-zero exit code, never a stack trace
 * (set LOG_LEVEL=debug to see one).
 */
import { Command, CommanderError } from 'commander';
import { registerAdmin } from './commands/admin.js';
import { registerDemo } from './commands/demo.js';
import { registerMeters } from './commands/meters.js';
import { registerProduce } from './commands/produce.js';
import { registerQueries } from './commands/query.js';
import { registerServe } from './commands/serve.js';
import { registerWorker } from './commands/worker.js';

export function buildProgram(): Command {
  const program = new Command('tally')
    .description('Usage metering on Redis Streams: exactly-once dedup, tumbling windows, BullMQ rollups.')
    .addHelpText(
      'after',
      "\nEnvironment: REDIS_URL overrides the config's redis.url; LOG_LEVEL sets the log level (default info).\nRun `tally <command> --help` for a command's options.",
    )
    .showSuggestionAfterError()
    .configureOutput({ outputError: (text, write) => write(`tally: ${text.replace(/^error: /, '')}`) })
    .exitOverride();
  registerDemo(program);
  registerWorker(program);
  registerProduce(program);
  registerQueries(program);
  registerServe(program);
  registerAdmin(program);
  registerMeters(program);
  return program;
}

function explain(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  // Socket errors from ioredis (ECONNREFUSED, ENOTFOUND, certificate errors) carry a code and say enough.
  const message = err.message.split('\n')[0] ?? err.message;
  return typeof code === 'string' && !code.startsWith('ERR_TALLY') && !message.includes(code)
    ? `${message} (${code})`
    : message;
}

async function main(argv: readonly string[]): Promise<void> {
  // `tally ... | head` closes stdout early: that ends the command quietly.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
  });
  const program = buildProgram();
  if (argv.length <= 2) {
    program.outputHelp();
    return;
  }
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed the help or the one-line error already.
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`tally: ${explain(err)}\n`);
    if (process.env.LOG_LEVEL === 'debug' || process.env.LOG_LEVEL === 'trace') console.error(err);
    process.exit(1);
  }
}

void main(process.argv);
