import bearerAuth from '@fastify/bearer-auth';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController } from 'fastify';
import { STATUS_CODES } from 'node:http';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { EntitlementChecker } from '../entitlements/index.js';
import { TallyConfigError } from '../errors/index.js';
import { UsageProducer } from '../producer/index.js';
import { connect, processConsumerName, type RedisClient } from '../redis/index.js';
import { RegistryFollower } from '../registry/index.js';
import { instruments } from '../telemetry/index.js';
import { sleep } from '../time/index.js';
import { UsageQuery } from '../usage/index.js';
import { jsonBodyParser } from './body.js';
import type { ApiContext, App } from './context.js';
import { redisCheck, registerObservability } from './observability.js';
import { defaultHttpServerOptions, type HttpServerOptions, type ListenOptions } from './options.js';
import { HttpProblem, PROBLEM_CONTENT_TYPE, sendProblem, toProblem } from './problems.js';
import { registerEntitlementRoutes } from './routes/entitlements.js';
import { CLOUDEVENT, CLOUDEVENT_BATCH, registerEventRoutes } from './routes/events.js';
import { registerMeterRoutes } from './routes/meters.js';
import { registerNotificationRoutes } from './routes/notifications.js';
import { NotificationStore } from '../notifications/index.js';
import { EntitlementValueSchema, MeterQueryResultSchema, MeterSchema, ProblemSchema } from './schemas.js';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
/** Node's default header limit (request line included): no path parameter can be longer. */
const MAX_URL_BYTES = 16_384;

/**
 * Errors Node raises before a request exists (header overflow, header or request timeout, a
 * malformed request): answered as problems on the raw socket, which is then closed.
 */
function clientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, detail] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'the request line and headers are larger than 16 KiB']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'the request was not received in time (http.requestTimeout / http.headersTimeout)']
        : [400, `malformed HTTP request (${err.code ?? err.message})`];
  const body = JSON.stringify({ type: 'about:blank', title: STATUS_CODES[status], status, detail });
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  socket.destroy();
}

/** `http://host:port` of a bound socket address (IPv6 in brackets). */
function boundUrl(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * Where to listen, and whether requests need an API key: with keys, bearer auth on every /api route;
 * with none, only a loopback address unless the config says `http.auth: none` explicitly.
 */
export function listenAddress(
  http: TallyConfig['http'],
  requested: ListenOptions = {},
): { host: string; port: number } {
  const port = requested.port ?? http.port;
  const open = http.apiKeys.length > 0 || http.auth === 'none';
  const host = requested.host ?? http.host ?? (open ? '0.0.0.0' : '127.0.0.1');
  if (!open && !LOOPBACK.has(host) && !(isIP(host) === 4 && host.startsWith('127.'))) {
    throw new TallyConfigError(
      '--host',
      `${host} is not a loopback address and no API key is configured: set http.apiKeys or TALLY_API_KEYS, or http.auth: none if something in front authenticates`,
    );
  }
  return { host, port };
}

/**
 * `tally serve`: an HTTP API compatible with OpenMeter's where they overlap (docs/http-api.md).
 * Stateless: every request goes to Redis over one connection that fails fast (503) rather than wait
 * while Redis is unreachable, so run as many as you like behind a load balancer.
 */
export class TallyHttpServer {
  readonly app: App;
  private readonly client: RedisClient;
  private readonly ctx: ApiContext;
  private readonly logger: Logger;
  private readonly commandTimeoutMs: number;
  private closing: Promise<void> | undefined;

  constructor(options: HttpServerOptions) {
    const opts = { ...defaultHttpServerOptions, ...options };
    const { config } = opts;
    this.commandTimeoutMs = opts.commandTimeoutMs;
    // The components below name themselves (`component`): they get the base logger, not this child,
    // or their lines would carry the key twice.
    const baseLogger = opts.logger ?? pino({ level: process.env.LOG_LEVEL ?? 'info' });
    this.logger = baseLogger.child({ component: 'http' });
    // No offline queue and no retries: while Redis is unreachable a request fails at once with 503
    // instead of waiting; the connection itself keeps reconnecting in the background.
    this.client = connect(config.redis, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: opts.commandTimeoutMs,
    });
    let down = false;
    this.client.on('error', (err: Error) => {
      if (!down) this.logger.warn({ err }, 'Redis unreachable; answering 503 until it is back');
      down = true;
    });
    this.client.on('ready', () => {
      if (down) this.logger.info('Redis reachable again');
      down = false;
    });
    const registry = new RegistryFollower(this.client, config, this.logger, {
      role: 'serve',
      name: `${processConsumerName()}:serve`,
    });
    const meters = registry.index;
    this.ctx = {
      config,
      meters,
      registry,
      producer: new UsageProducer({
        redis: this.client,
        prefix: config.prefix,
        partitions: config.partitions,
        maxEntryBytes: config.maxEntryBytes,
      }),
      usage: new UsageQuery({ config, connection: this.client, logger: baseLogger, meters }),
      checker: new EntitlementChecker({ config, connection: this.client, logger: baseLogger, meters }),
      notifications: new NotificationStore(this.client, config),
    };
    const { http } = config;
    this.app = Fastify({
      loggerInstance: this.logger,
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: http.bodyLimit,
      // A slow client holds a connection at most this long (408), however slowly it sends.
      requestTimeout: http.requestTimeoutMs,
      keepAliveTimeout: http.keepAliveTimeoutMs,
      http: {
        headersTimeout: Math.min(http.headersTimeoutMs, http.requestTimeoutMs),
        // How often Node looks for requests past their timeouts (its default, 30 s, would let a
        // slowloris hold a connection up to that much longer).
        connectionsCheckingInterval: Math.min(1_000, http.headersTimeoutMs),
      },
      // Path parameters as long as a URL can carry (the header limit, 431, is the bound): a subject
      // that ingest accepts must work in /api/v1/subjects/{subject}/... too.
      routerOptions: { maxParamLength: MAX_URL_BYTES },
      // URL and router errors (bad percent-encoding, ...) as problems too.
      frameworkErrors: (err, request, reply) => {
        void sendProblem(reply, request, toProblem(err));
      },
      clientErrorHandler: clientError,
      ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false } },
    }).withTypeProvider<TypeBoxTypeProvider>() as unknown as App;
    this.build(opts);
  }

  private build(opts: HttpServerOptions): void {
    const { app, ctx } = this;
    const { http } = ctx.config;
    for (const schema of [ProblemSchema, MeterSchema, MeterQueryResultSchema, EntitlementValueSchema])
      app.addSchema(schema);
    // JSON media types only (no text/plain): anything else is a 415. Strict UTF-8, bounded depth, no
    // __proto__ keys, gzip (body.ts).
    app.removeAllContentTypeParsers();
    app.addContentTypeParser(
      ['application/json', CLOUDEVENT, CLOUDEVENT_BATCH],
      { parseAs: 'buffer' },
      jsonBodyParser(http.bodyLimit),
    );
    app.setErrorHandler((err, request, reply) => {
      const problem = toProblem(err);
      if (problem.status >= 500 && problem.status !== 503) request.log.error({ err }, 'request failed');
      return sendProblem(reply, request, problem);
    });
    app.setNotFoundHandler((request, reply) =>
      sendProblem(
        reply,
        request,
        new HttpProblem(404, `no route ${request.method} ${request.url.split('?')[0]}`),
      ),
    );
    // Problems go out as exactly `application/problem+json` (fastify appends a charset to JSON types):
    // OpenMeter's clients compare the header verbatim before they read a problem's detail.
    app.addHook('onSend', async (_request, reply, payload) => {
      const type = reply.getHeader('content-type');
      if (typeof type === 'string' && type !== PROBLEM_CONTENT_TYPE && type.startsWith(PROBLEM_CONTENT_TYPE))
        reply.header('content-type', PROBLEM_CONTENT_TYPE);
      return payload;
    });
    app.addHook('onSend', async (request, reply, payload) => {
      if (reply.statusCode === 401) {
        reply.header('www-authenticate', 'Bearer realm="tally"');
        // The body was not read (auth runs first): close rather than read it, however slowly it comes.
        const { 'content-length': length, 'transfer-encoding': chunked } = request.headers;
        const hasBody = (length !== undefined && length !== '0') || chunked !== undefined;
        if (hasBody && !request.raw.readableEnded) reply.header('connection', 'close');
      }
      return payload;
    });
    app.addHook('onResponse', async (request, reply) => {
      const attrs = {
        'tally.route': request.routeOptions.url ?? 'unmatched',
        'tally.method': request.method,
        'tally.status': reply.statusCode,
      };
      instruments.httpRequests.add(1, attrs);
      instruments.httpRequestDuration.record(reply.elapsedTime, attrs);
    });
    void app.register(swagger, {
      refResolver: {
        buildLocalReference: (json, _base, _fragment, i) =>
          typeof json.$id === 'string' ? json.$id : `def-${i}`,
      },
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Tally HTTP API',
          version: '1',
          description: 'OpenMeter-compatible where they overlap; see docs/http-api.md',
        },
        components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } },
        ...(http.apiKeys.length > 0 ? { security: [{ bearerAuth: [] }] } : {}),
      },
    });
    app.get('/openapi.json', { schema: { hide: true } }, () => Promise.resolve(app.swagger()));
    registerObservability(app, {
      metrics: opts.metrics,
      readiness: async () => ({ redis: await redisCheck(this.client) }),
    });
    void app.register(async (api) => {
      if (http.apiKeys.length > 0) {
        await api.register(bearerAuth, {
          keys: new Set(http.apiKeys),
          verifyErrorLogLevel: 'debug',
          // RFC 7235: the scheme is case-insensitive (`bearer` works too).
          specCompliance: 'rfc6749',
          contentType: PROBLEM_CONTENT_TYPE,
          // The plugin's types want { error }; any object is sent.
          errorResponse: ((err: Error) => ({
            type: 'about:blank',
            title: 'Unauthorized',
            status: 401,
            detail: err.message,
          })) as unknown as (err: Error) => {
            error: string;
          },
        });
      }
      registerEventRoutes(api, ctx);
      registerMeterRoutes(api, ctx);
      registerEntitlementRoutes(api, ctx);
      registerNotificationRoutes(api, ctx);
    });
  }

  /**
   * Starts listening, once connected to Redis or after `commandTimeoutMs` without it (then requests
   * get 503 and /readyz says unready until Redis is reachable); resolves to the address.
   */
  async listen(options: ListenOptions = {}): Promise<string> {
    const { host, port } = listenAddress(this.ctx.config.http, options);
    if (this.client.status !== 'ready') {
      let timer: NodeJS.Timeout | undefined;
      const ready = await Promise.race([
        new Promise<boolean>((resolve) => this.client.once('ready', () => resolve(true))),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), this.commandTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (!ready) this.logger.warn('Redis not reachable yet: listening anyway, answering 503 until it is');
    }
    // Declares the config's meters (refusing to start when they contradict the registry) and follows
    // the registry; without Redis yet, it starts once Redis is reachable.
    if (this.client.status === 'ready') await this.ctx.registry.start();
    else this.registryStart = this.startRegistryLater();
    const address = await this.app.listen({ host, port });
    // What it is bound to (0.0.0.0: every interface), not the first address fastify resolved.
    const bound = this.app.server.address();
    this.logger.info(
      {
        address: typeof bound === 'object' && bound ? boundUrl(bound.address, bound.port) : address,
        auth: this.ctx.config.http.apiKeys.length > 0 ? 'bearer' : 'none',
      },
      'HTTP API listening',
    );
    return address;
  }

  private registryStart: Promise<void> | undefined;
  private readonly stopRegistryStart = new AbortController();

  /** Starts following the registry once Redis is reachable (the server listened without it). */
  private async startRegistryLater(): Promise<void> {
    const signal = this.stopRegistryStart.signal;
    while (!signal.aborted) {
      try {
        await this.ctx.registry.start();
        return;
      } catch (err) {
        if (err instanceof TallyConfigError) {
          this.logger.error(
            { err },
            'the config contradicts the meter registry: serving the registry as it is',
          );
          return;
        }
        await sleep(1000, signal);
      }
    }
  }

  /** Stops accepting requests, finishes those in flight, closes the Redis connection. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.stopRegistryStart.abort();
      await this.registryStart;
      await this.app.close();
      await this.ctx.registry.close();
      await this.ctx.checker.close();
      await this.ctx.usage.close();
      await this.ctx.producer.close();
      await this.client.quit().catch(() => this.client.disconnect());
    })();
    return this.closing;
  }
}
