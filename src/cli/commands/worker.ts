/** `tally worker`: one replica of the metering worker and, by default, the entitlement evaluator. */
import { Option, type Command } from 'commander';
import { pino } from 'pino';
import { TallyConfigError } from '../../errors/index.js';
import { TallyWorker } from '../../worker/index.js';
import { parseRoles, startEvaluatorRole, startNotificationsRole } from '../roles.js';
import { prepareWorkerMetrics, startWorkerMetrics } from '../serve.js';
import { SignalShutdown } from '../shutdown.js';
import { reachRedis } from '../first-contact.js';
import { duration, integer, loadCommandConfig, partitionList, withConfigOption } from '../options.js';
import { checkEvictionPolicy } from '../../redis/index.js';

interface WorkerFlags {
  config: string;
  partitions?: number[];
  roles?: string;
  metricsPort?: number;
  allowEviction?: boolean;
  connectTimeout?: number;
}

export function registerWorker(program: Command): void {
  withConfigOption(
    program.command('worker').description('run one worker replica (start several to scale out)'),
  )
    .addOption(
      new Option(
        '--partitions <list>',
        'consume only these partitions, e.g. 0,1 (default: share all through leases)',
      ).argParser(partitionList),
    )
    .option(
      '--roles <list>',
      'roles to run: metering, entitlements, notifications (default: metering,entitlements)',
    )
    .option(
      '--metrics-port <n>',
      "serve /metrics, /healthz, /readyz on this port (default: the config's metrics.port; off unless set)",
      integer(0, 65535),
    )
    .option(
      '--connect-timeout <duration>',
      "give up if Redis cannot be reached a first time within this, e.g. 30s (default: the config's worker.connectTimeout, 10s)",
      duration('--connect-timeout'),
    )
    .option(
      '--allow-eviction',
      "run even if Redis's maxmemory-policy is not noeviction (evicted keys mean double counts and lost totals)",
    )
    .action(async (flags: WorkerFlags) => {
      const config = await loadCommandConfig(flags.config);
      const { roles, explicit } = parseRoles(flags.roles);
      for (const p of flags.partitions ?? []) {
        if (p >= config.partitions)
          throw new TallyConfigError(
            '--partitions',
            `partition ${p} does not exist (the config has ${config.partitions})`,
          );
      }
      // Before any long-lived connection exists: a denied command ends here in one line (and no
      // connection's ready check prints its own warning about a denied INFO). A Redis never reached
      // within worker.connectTimeout ends here too; once reached, outages are waited out.
      const facts = await reachRedis(config, flags.connectTimeout ?? config.worker.connectTimeoutMs);
      const allowEviction = flags.allowEviction ?? false;
      checkEvictionPolicy(facts, allowEviction); // refuses here in one line; the components warn when allowed
      const logger = pino({ level: process.env.LOG_LEVEL ?? 'info' });
      const metricsPort = flags.metricsPort ?? config.metrics.port;
      // Before the worker exists, so its instruments record into the SDK.
      if (metricsPort !== undefined) prepareWorkerMetrics();
      const worker = roles.has('metering')
        ? new TallyWorker({
            config,
            logger,
            allowEviction,
            ...(flags.partitions ? { partitions: flags.partitions } : {}),
          })
        : undefined;
      const shutdown = new SignalShutdown(logger, config.worker.shutdownTimeoutMs);
      shutdown.add(worker);
      if (metricsPort !== undefined)
        shutdown.add(
          await startWorkerMetrics({ config, logger, worker, port: metricsPort, host: config.metrics.host }),
        );
      await worker?.start();
      if (roles.has('entitlements') && !shutdown.stopping)
        shutdown.add(await startEvaluatorRole(config, logger, explicit, allowEviction));
      if (roles.has('notifications') && !shutdown.stopping)
        shutdown.add(await startNotificationsRole(config, logger));
    });
}
