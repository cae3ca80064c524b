import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import type { PrometheusMetrics } from '../telemetry/index.js';

export interface HttpServerOptions {
  /** The resolved configuration: Redis, streams, meters, entitlements and its `http` section. */
  config: TallyConfig;
  /**
   * Structured logger (requests are not logged one by one; errors are).
   * @defaultValue a pino logger at level `LOG_LEVEL` or `info`
   */
  logger?: Logger;
  /** Serves /metrics from it when given (see telemetry's `installPrometheus`). */
  metrics?: PrometheusMetrics;
  /**
   * How long a Redis command may take before the request fails with 503.
   * @defaultValue 5000
   */
  commandTimeoutMs?: number;
}

export const defaultHttpServerOptions = {
  commandTimeoutMs: 5_000,
} satisfies Partial<HttpServerOptions>;

/** Where `listen` binds. */
export interface ListenOptions {
  /** @defaultValue the config's `http.port` (8888) */
  port?: number;
  /** @defaultValue the config's `http.host`, else 0.0.0.0 with API keys or `auth: none`, else 127.0.0.1 */
  host?: string;
}
