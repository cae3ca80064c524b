/** `tally serve`: the OpenMeter-compatible HTTP API (docs/http-api.md). */
import type { Command } from 'commander';
import { pino } from 'pino';
import { serve } from '../serve.js';
import { integer, loadCommandConfig, withConfigOption } from '../options.js';

interface ServeFlags {
  config: string;
  port?: number;
  host?: string;
}

export function registerServe(program: Command): void {
  withConfigOption(
    program
      .command('serve')
      .description(
        'run the HTTP API (OpenMeter-compatible events, meter queries, entitlement values; /metrics, /healthz, /readyz)',
      ),
  )
    .option('--port <n>', "port (default: the config's http.port, 8888)", integer(0, 65535))
    .option('--host <address>', 'address to bind (default 0.0.0.0 with API keys, else 127.0.0.1)')
    .action(async (flags: ServeFlags) => {
      const config = await loadCommandConfig(flags.config);
      const logger = pino({ level: process.env.LOG_LEVEL ?? 'info' });
      const running = await serve({
        config,
        logger,
        ...(flags.port !== undefined ? { port: flags.port } : {}),
        ...(flags.host !== undefined ? { host: flags.host } : {}),
      });
      let stopping = false;
      const shutdown = (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'shutting down');
        void running.close().then(() => process.exit(0));
      };
      process.on('SIGINT', () => shutdown('SIGINT'));
      process.on('SIGTERM', () => shutdown('SIGTERM'));
    });
}
