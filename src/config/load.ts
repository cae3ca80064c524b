import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse as parseYaml } from 'yaml';
import { TallyConfigError } from '../errors/index.js';
import { compileMeters, type Meter } from '../meters/index.js';
// The module itself, not entitlements/index.js: that index reaches back into config/ (a cycle).
import { resolveEntitlementsConfig, type EntitlementsConfig } from '../entitlements/config.js';
import type { RedisTarget } from '../redis/index.js';
import { parseDuration } from './duration.js';
import { resolveNotificationsConfig, type NotificationsConfig } from '../notifications/config.js';
import { ConfigSchema } from './schema.js';
import { resolveTls } from './tls.js';

/** The configuration as validated, with every default filled in. */
export type TallyConfigData = Static<typeof ConfigSchema>;

/** Config input: any part may be left out and takes its default (meters excepted: they are a list). */
export type TallyConfigInput = {
  [K in keyof TallyConfigData]?: TallyConfigData[K] extends readonly unknown[]
    ? TallyConfigData[K]
    : Partial<TallyConfigData[K]>;
};

/** Number of dedup epochs per horizon: an epoch lasts horizon / DEDUP_GENERATIONS. */
export const DEDUP_GENERATIONS = 2;

/** The resolved configuration every component receives: durations in ms, meters compiled. */
export interface TallyConfig {
  readonly data: TallyConfigData;
  readonly redisUrl: string;
  /** Where to connect: one Redis, or a Cluster through startup nodes (see redis/connection.ts). */
  readonly redis: RedisTarget;
  readonly prefix: string;
  readonly partitions: number;
  readonly consumerGroup: string;
  readonly maxEntryBytes: number;
  readonly maxEventsPerEntry: number;
  readonly trim: { readonly retainAckedMs: number; readonly maxLength: number };
  readonly dedup: {
    readonly horizonMs: number;
    readonly epochMs: number;
    readonly generations: number;
    readonly bucketBits: number;
  };
  readonly windows: {
    readonly graceMs: number;
    readonly idleTimeoutMs: number;
    readonly maxFutureSkewMs: number;
    readonly latePolicy: TallyConfigData['windows']['latePolicy'];
    readonly retentionMs: number;
    /** Most meter windows one usage query may span (a cost limit; 400 beyond). */
    readonly maxQueryWindows: number;
  };
  readonly worker: {
    readonly batchSize: number;
    readonly blockMs: number;
    readonly closeIntervalMs: number;
    readonly claimIdleMs: number;
    readonly maxDeliveries: number;
    readonly leases: boolean;
    readonly leaseTtlMs: number;
    readonly shutdownTimeoutMs: number;
    /** How long `tally worker` tries to reach Redis a first time before it gives up. */
    readonly connectTimeoutMs: number;
  };
  readonly rollups: {
    readonly queues: readonly string[];
    readonly queuePrefix: string;
    readonly keepCompletedMs: number;
    readonly attempts: number;
    /** One job per outbox entry (a page of one window's rollups) instead of one per rollup. */
    readonly batchJobs: boolean;
  };
  /** `tally serve`: listening address, API keys (config and TALLY_API_KEYS), limits. */
  readonly http: {
    readonly port: number;
    readonly host: string | undefined;
    readonly apiKeys: readonly string[];
    readonly auth: 'bearer' | 'none';
    readonly bodyLimit: number;
    readonly maxEventsPerRequest: number;
    /** A whole request must arrive within it (408 and close beyond). */
    readonly requestTimeoutMs: number;
    /** The request line and headers must arrive within it. */
    readonly headersTimeoutMs: number;
    /** An idle keep-alive connection is closed after it. */
    readonly keepAliveTimeoutMs: number;
  };
  /** `tally worker`'s metrics endpoint (undefined port: off). */
  readonly metrics: { readonly port: number | undefined; readonly host: string };
  readonly meters: readonly Meter[];
  /** The optional `entitlements:` section (features, defaults, evaluator settings). */
  readonly entitlements: EntitlementsConfig;
  /** The optional `notifications:` section (webhook delivery settings). */
  readonly notifications: NotificationsConfig;
}

/**
 * Lower bounds of the worker's timings: below them a replica does nothing useful, only load (a 0 ms
 * closeInterval sent about 10,000 idle commands a second per partition; a 0 ms claimIdle steals
 * entries other replicas are applying).
 */
const MIN_CLOSE_INTERVAL = { ms: 10, text: '10ms' };
const MIN_CLAIM_IDLE = { ms: 100, text: '100ms' };
const MIN_LEASE_TTL = { ms: 300, text: '300ms' };
const MIN_SHUTDOWN_TIMEOUT = { ms: 100, text: '100ms' };
const MIN_CONNECT_TIMEOUT = { ms: 100, text: '100ms' };
/** 0 would mean "no timeout" to Node: the very thing these settings exist to prevent. */
const MIN_HTTP_TIMEOUT = { ms: 100, text: '100ms' };

function durationAtLeast(value: string | number, field: string, min: { ms: number; text: string }): number {
  const ms = parseDuration(value, field);
  if (ms < min.ms)
    throw new TallyConfigError(field, `must be at least ${min.text}, got ${JSON.stringify(value)}`);
  return ms;
}

/** `/meters/0/aggregation` → `meters[0].aggregation` */
function fieldOf(path: string): string {
  return (
    path
      .split('/')
      .filter(Boolean)
      .map((part, i) => (/^\d+$/.test(part) ? `[${part}]` : i === 0 ? part : `.${part}`))
      .join('') || '(root)'
  );
}

function valueAt(root: unknown, path: string): unknown {
  let node = root;
  for (const part of path.split('/').filter(Boolean)) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** The allowed values of a schema that is a union of string literals (an enum such as `aggregation`). */
function literalsOf(schema: unknown): string[] | undefined {
  const anyOf = (schema as { anyOf?: unknown }).anyOf;
  if (!Array.isArray(anyOf) || anyOf.length === 0) return undefined;
  const values = anyOf.map((s) => (s as { const?: unknown }).const);
  return values.every((v): v is string => typeof v === 'string') ? values : undefined;
}

/**
 * A YAML syntax error in one line: the parser's reason, where, and the offending line as written (the
 * parser's own message spans several lines, and only its first would be shown).
 */
function yamlProblem(path: string, text: string, err: unknown): string {
  const { message, linePos } = err as { message: string; linePos?: { line: number; col: number }[] };
  const reason = message.replace(/\s+at line \d+, column \d+:?[\s\S]*$/, '').replace(/\s+/g, ' ');
  const at = linePos?.[0];
  if (!at) return `${path} is not valid YAML: ${reason}`;
  const line = (text.split(/\r?\n/)[at.line - 1] ?? '').trimEnd();
  const shown = line.length > 100 ? `${line.slice(0, 97)}...` : line;
  const where = `line ${at.line}, column ${at.col}`;
  return `${path} is not valid YAML: ${where}: ${reason}${shown.trim() ? `, in ${JSON.stringify(shown)}` : ''}`;
}

/**
 * Validates a configuration object, fills defaults, applies `REDIS_URL` from the environment, and
 * resolves it. Throws TallyConfigError naming the first bad field and its value.
 */
export function resolveConfig(
  input: unknown,
  env: NodeJS.ProcessEnv = process.env,
  baseDir = process.cwd(),
): TallyConfig {
  if (input === null || input === undefined) input = {};
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new TallyConfigError('(root)', 'the configuration must be a mapping');
  }
  const data = Value.Default(ConfigSchema, structuredClone(input)) as TallyConfigData;
  if (env.REDIS_URL) data.redis.url = env.REDIS_URL;
  const error = Value.Errors(ConfigSchema, data).First();
  if (error) {
    const value = valueAt(data, error.path);
    const shown = value === undefined ? 'missing' : `got ${JSON.stringify(value)}`;
    const allowed = literalsOf(error.schema);
    if (allowed && value !== undefined) {
      const near = allowed.find((a) => typeof value === 'string' && a.toLowerCase() === value.toLowerCase());
      throw new TallyConfigError(
        fieldOf(error.path),
        `expected one of ${allowed.join(', ')} (${shown}${near ? `; did you mean ${near}?` : ''})`,
      );
    }
    throw new TallyConfigError(fieldOf(error.path), `${error.message} (${shown})`);
  }
  if (!/^rediss?:\/\//.test(data.redis.url)) {
    throw new TallyConfigError(
      'redis.url',
      `expected a redis:// or rediss:// URL, got ${JSON.stringify(data.redis.url)}`,
    );
  }
  if (data.redis.cluster && !/\{[^}]+\}/.test(data.rollups.queuePrefix)) {
    throw new TallyConfigError(
      'rollups.queuePrefix',
      `must contain a hash tag such as {tally} on Redis Cluster (BullMQ keeps each queue in one slot), got ${JSON.stringify(data.rollups.queuePrefix)}`,
    );
  }
  const horizonMs = parseDuration(data.dedup.horizon, 'dedup.horizon');
  if (horizonMs < 60_000)
    throw new TallyConfigError(
      'dedup.horizon',
      `must be at least 1m, got ${JSON.stringify(data.dedup.horizon)}`,
    );
  const graceMs = parseDuration(data.windows.grace, 'windows.grace');
  const retentionMs = parseDuration(data.windows.retention, 'windows.retention');
  if (retentionMs <= graceMs) {
    throw new TallyConfigError(
      'windows.retention',
      `must be longer than windows.grace, got ${JSON.stringify(data.windows.retention)}`,
    );
  }
  const meters = compileMeters(data.meters);
  const envKeys = (env.TALLY_API_KEYS ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean);
  for (const key of envKeys) {
    if (key.length < 16)
      throw new TallyConfigError(
        'TALLY_API_KEYS',
        `API keys must be at least 16 characters, got one of ${key.length}`,
      );
  }
  const apiKeys = [...new Set([...data.http.apiKeys, ...envKeys])];
  if (data.http.auth === 'none' && apiKeys.length > 0) {
    throw new TallyConfigError(
      'http.auth',
      '"none" contradicts the API keys configured (http.apiKeys or TALLY_API_KEYS)',
    );
  }
  return {
    data,
    redisUrl: data.redis.url,
    redis: {
      url: data.redis.url,
      cluster: data.redis.cluster,
      nodes: data.redis.nodes,
      tls: resolveTls(data.redis.tls, data.redis.url, baseDir),
    },
    prefix: data.streams.prefix,
    partitions: data.streams.partitions,
    consumerGroup: data.streams.consumerGroup,
    maxEntryBytes: data.streams.maxEntryBytes,
    maxEventsPerEntry: data.streams.maxEventsPerEntry,
    trim: {
      retainAckedMs: parseDuration(data.streams.retainAcked, 'streams.retainAcked'),
      maxLength: data.streams.maxLength,
    },
    dedup: {
      horizonMs,
      epochMs: Math.ceil(horizonMs / DEDUP_GENERATIONS),
      generations: DEDUP_GENERATIONS,
      bucketBits: data.dedup.bucketBits,
    },
    windows: {
      graceMs,
      idleTimeoutMs: parseDuration(data.windows.idleTimeout, 'windows.idleTimeout'),
      maxFutureSkewMs: parseDuration(data.windows.maxFutureSkew, 'windows.maxFutureSkew'),
      latePolicy: data.windows.latePolicy,
      retentionMs,
      maxQueryWindows: data.windows.maxQueryWindows,
    },
    worker: {
      batchSize: data.worker.batchSize,
      blockMs: data.worker.blockMs,
      closeIntervalMs: durationAtLeast(data.worker.closeInterval, 'worker.closeInterval', MIN_CLOSE_INTERVAL),
      claimIdleMs: durationAtLeast(data.worker.claimIdle, 'worker.claimIdle', MIN_CLAIM_IDLE),
      maxDeliveries: data.worker.maxDeliveries,
      leases: data.worker.leases,
      leaseTtlMs: durationAtLeast(data.worker.leaseTtl, 'worker.leaseTtl', MIN_LEASE_TTL),
      shutdownTimeoutMs: durationAtLeast(
        data.worker.shutdownTimeout,
        'worker.shutdownTimeout',
        MIN_SHUTDOWN_TIMEOUT,
      ),
      connectTimeoutMs: durationAtLeast(
        data.worker.connectTimeout,
        'worker.connectTimeout',
        MIN_CONNECT_TIMEOUT,
      ),
    },
    rollups: {
      queues: data.rollups.queues,
      queuePrefix: data.rollups.queuePrefix,
      keepCompletedMs: parseDuration(data.rollups.keepCompleted, 'rollups.keepCompleted'),
      attempts: data.rollups.attempts,
      batchJobs: data.rollups.batchJobs,
    },
    http: {
      port: data.http.port,
      host: data.http.host,
      apiKeys,
      auth: data.http.auth,
      bodyLimit: data.http.bodyLimit,
      maxEventsPerRequest: data.http.maxEventsPerRequest,
      requestTimeoutMs: durationAtLeast(data.http.requestTimeout, 'http.requestTimeout', MIN_HTTP_TIMEOUT),
      headersTimeoutMs: durationAtLeast(data.http.headersTimeout, 'http.headersTimeout', MIN_HTTP_TIMEOUT),
      keepAliveTimeoutMs: durationAtLeast(
        data.http.keepAliveTimeout,
        'http.keepAliveTimeout',
        MIN_HTTP_TIMEOUT,
      ),
    },
    metrics: { port: data.metrics.port, host: data.metrics.host },
    meters,
    entitlements: resolveEntitlementsConfig(data.entitlements, { meters, queues: data.rollups.queues }),
    notifications: resolveNotificationsConfig(data.notifications),
  };
}

/** Reads a YAML (or JSON) config file and resolves it. */
export async function loadConfigFile(
  path: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<TallyConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new TallyConfigError('config', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (err) {
    throw new TallyConfigError('config', yamlProblem(path, text, err), { cause: err });
  }
  return resolveConfig(parsed, env, dirname(resolve(path)));
}
