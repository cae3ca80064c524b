/**
 * `tally serve` and the metrics endpoint of `tally worker`, as functions taking typed options (the
 * commander wiring is in commands/serve.ts and commands/worker.ts).
 */
import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { redisCheck, startObservabilityServer, TallyHttpServer, type ReadinessCheck } from '../http/index.js';
import { connect } from '../redis/index.js';
import { installPrometheus } from '../telemetry/index.js';
import type { TallyWorker } from '../worker/index.js';

export interface ServeOptions {
  readonly config: TallyConfig;
  readonly logger: Logger;
  /** @defaultValue the config's http.port (8888) */
  readonly port?: number;
  /** @defaultValue the config's http.host, else 0.0.0.0 with API keys or `auth: none`, else 127.0.0.1 */
  readonly host?: string;
}

export interface Running {
  readonly address: string;
  close(): Promise<void>;
}

/** Starts the HTTP API with its /metrics (the OpenTelemetry SDK is installed for this process). */
export async function serve(options: ServeOptions): Promise<Running> {
  const metrics = installPrometheus();
  const server = new TallyHttpServer({ config: options.config, logger: options.logger, metrics });
  try {
    const address = await server.listen({
      ...(options.port !== undefined ? { port: options.port } : {}),
      ...(options.host !== undefined ? { host: options.host } : {}),
    });
    return { address, close: () => server.close() };
  } catch (err) {
    await server.close();
    throw err;
  }
}

export interface WorkerMetricsOptions {
  readonly config: TallyConfig;
  readonly logger: Logger;
  readonly port: number;
  readonly host: string;
  /** The metering worker, when this process runs one: readiness then also wants partitions consumed. */
  readonly worker?: TallyWorker | undefined;
}

/**
 * Installs the OpenTelemetry SDK for this process; call before the worker starts, so its gauges and
 * counters record into it. Then `startWorkerMetrics` serves them.
 */
export function prepareWorkerMetrics(): void {
  installPrometheus();
}

/**
 * /metrics, /healthz and /readyz of a worker process. Ready: Redis answers, and (with the metering
 * role) the worker runs, consumes at least one partition, and no partition's read loop is failing.
 */
export async function startWorkerMetrics(options: WorkerMetricsOptions): Promise<Running> {
  const metrics = installPrometheus();
  // Its own connection, without offline queue: a probe answers at once while Redis is down.
  const probe = connect(options.config.redis, { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  probe.on('error', () => undefined);
  const { worker } = options;
  const readiness = async (): Promise<Record<string, ReadinessCheck>> => {
    const checks: Record<string, ReadinessCheck> = { redis: await redisCheck(probe) };
    if (worker) {
      const { running, failing } = worker.health;
      const owned = worker.activePartitions;
      const stuck = failing.filter((op) => /^(consume|read|read-pending|takeover|apply):/.test(op));
      checks.worker = running ? { ok: true } : { ok: false, detail: 'not running' };
      checks.partitions =
        owned.length > 0
          ? { ok: true, detail: `consuming ${owned.join(',')}` }
          : {
              ok: false,
              detail: 'owns no partition (more replicas than partitions, or leases not acquired yet)',
            };
      checks.consuming =
        stuck.length === 0 ? { ok: true } : { ok: false, detail: `failing: ${stuck.join(', ')}` };
    }
    return checks;
  };
  const server = await startObservabilityServer({
    metrics,
    readiness,
    port: options.port,
    host: options.host,
    logger: options.logger,
  });
  options.logger.info(
    { address: server.address },
    'metrics endpoint listening (/metrics, /healthz, /readyz)',
  );
  return {
    address: server.address,
    close: async () => {
      await server.close();
      probe.disconnect();
    },
  };
}
