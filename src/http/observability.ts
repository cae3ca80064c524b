import { Type } from '@sinclair/typebox';
import Fastify, { LogController } from 'fastify';
import type { Logger } from 'pino';
import type { RedisClient } from '../redis/index.js';
import { PROMETHEUS_CONTENT_TYPE, type PrometheusMetrics } from '../telemetry/index.js';
import type { App } from './context.js';

/** One readiness condition and, when it fails, why. */
export interface ReadinessCheck {
  readonly ok: boolean;
  readonly detail?: string;
}

/** Readiness: every check must pass. */
export type Readiness = () => Promise<Record<string, ReadinessCheck>>;

export interface ObservabilityOptions {
  /** Served at /metrics when given. */
  readonly metrics?: PrometheusMetrics | undefined;
  readonly readiness: Readiness;
}

const PING_TIMEOUT_MS = 1_000;

/** Whether Redis answers PING within a second on this connection (never waits for a reconnect). */
export async function redisCheck(client: RedisClient): Promise<ReadinessCheck> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer to PING within ${PING_TIMEOUT_MS} ms`)),
        PING_TIMEOUT_MS,
      );
    });
    await Promise.race([client.ping(), timeout]);
    return { ok: true };
  } catch (err) {
    // A fixed text: the client's own message (ioredis internals, addresses) is for the logs.
    const timedOut = (err as Error).message.startsWith('no answer to PING');
    return {
      ok: false,
      detail: timedOut ? `no answer to PING within ${PING_TIMEOUT_MS} ms` : 'Redis is unreachable',
    };
  } finally {
    clearTimeout(timer);
  }
}

const CheckSchema = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) });
const ReadySchema = Type.Object({ ready: Type.Boolean(), checks: Type.Record(Type.String(), CheckSchema) });

/** GET /healthz (alive), GET /readyz (200 or 503 with each check), GET /metrics (Prometheus text). */
export function registerObservability(app: App, options: ObservabilityOptions): void {
  const hide = { hide: true, tags: ['Operations'] };
  app.get(
    '/healthz',
    { schema: { ...hide, summary: 'Alive', response: { 200: Type.Object({ status: Type.Literal('ok') }) } } },
    () => Promise.resolve({ status: 'ok' as const }),
  );
  app.get(
    '/readyz',
    { schema: { ...hide, summary: 'Ready', response: { 200: ReadySchema, 503: ReadySchema } } },
    async (_request, reply) => {
      const checks = await options.readiness();
      const ready = Object.values(checks).every((c) => c.ok);
      return reply.code(ready ? 200 : 503).send({ ready, checks });
    },
  );
  const { metrics } = options;
  if (metrics) {
    app.get('/metrics', { schema: hide }, async (_request, reply) =>
      reply.type(PROMETHEUS_CONTENT_TYPE).send(await metrics.scrape()),
    );
  }
}

/**
 * A small server with only /metrics, /healthz and /readyz (`tally worker --metrics-port`). Returns
 * its address once listening, and its close.
 */
export async function startObservabilityServer(
  options: ObservabilityOptions & { readonly port: number; readonly host: string; readonly logger: Logger },
): Promise<{ readonly address: string; close(): Promise<void> }> {
  const app = Fastify({
    loggerInstance: options.logger.child({ component: 'metrics-server' }),
    logController: new LogController({ disableRequestLogging: true }),
  });
  registerObservability(app as unknown as App, options);
  const address = await app.listen({ port: options.port, host: options.host });
  return { address, close: () => app.close() };
}
