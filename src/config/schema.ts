import { Type, type Static } from '@sinclair/typebox';
import { MeterSchema } from '../meters/schema.js';
import { EntitlementsConfigSchema } from '../entitlements/schema.js';
import { NotificationsConfigSchema } from '../notifications/schema.js';

/**
 * The one schema of Tally's configuration (config/tally.yaml). The TypeScript type is derived from
 * it; `load.ts` fills the defaults declared here, validates, and resolves durations and meters.
 */
const duration = (defaultValue: string, description?: string) =>
  Type.Union([Type.String(), Type.Number({ minimum: 0 })], {
    default: defaultValue,
    description: `${description ?? 'A duration'} (500ms, 10s, 5m, 1h, 32d, or milliseconds)`,
  });

export const LatePolicies = ['correct', 'dead-letter'] as const;

export const ConfigSchema = Type.Object(
  {
    redis: Type.Object(
      {
        url: Type.String({
          default: 'redis://127.0.0.1:6379',
          description: 'redis:// or rediss:// URL; REDIS_URL overrides',
        }),
        cluster: Type.Boolean({
          default: false,
          description: 'Connect to a Redis Cluster: url is one startup node',
        }),
        nodes: Type.Array(Type.String(), {
          default: [],
          description: 'More Cluster startup nodes, host:port',
        }),
        tls: Type.Optional(
          Type.Object(
            {
              ca: Type.Optional(
                Type.String({
                  minLength: 1,
                  description: 'PEM file of the CA(s) to trust instead of the system ones',
                }),
              ),
              cert: Type.Optional(
                Type.String({ minLength: 1, description: 'PEM file of the client certificate (mutual TLS)' }),
              ),
              key: Type.Optional(
                Type.String({ minLength: 1, description: 'PEM file of the client private key (mutual TLS)' }),
              ),
              servername: Type.Optional(
                Type.String({
                  minLength: 1,
                  description: 'Name to expect in the server certificate (SNI), if not the URL host',
                }),
              ),
            },
            {
              additionalProperties: false,
              description: 'TLS settings for a rediss:// URL; file paths are relative to the config file',
            },
          ),
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    streams: Type.Object(
      {
        prefix: Type.String({ default: 'tally', pattern: '^[A-Za-z0-9_.-]+$' }),
        partitions: Type.Integer({ default: 1, minimum: 1, maximum: 1024 }),
        consumerGroup: Type.String({ default: 'tally', minLength: 1 }),
        maxEntryBytes: Type.Integer({ default: 1_048_576, minimum: 256 }),
        maxEventsPerEntry: Type.Integer({
          default: 10_000,
          minimum: 1,
          maximum: 1_000_000,
          description:
            'Events a batch entry may hold; a longer entry is dead-lettered whole (too-many-events)',
        }),
        retainAcked: duration('1m', 'How long applied entries stay in the stream before trimming'),
        maxLength: Type.Integer({
          default: 0,
          minimum: 0,
          description:
            'Also trim applied entries beyond this many (0: no length cap); unapplied entries are never trimmed',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    dedup: Type.Object(
      {
        horizon: duration('32d', 'How long an event id is remembered for dedup'),
        bucketBits: Type.Integer({
          default: 16,
          minimum: 4,
          maximum: 24,
          description: 'log2 of the dedup hash buckets per partition and epoch; see docs/configuration.md',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    windows: Type.Object(
      {
        grace: duration('5s', 'How long after its end a window waits for stragglers'),
        idleTimeout: duration('10s', 'Quiet time after which wall-clock time closes windows'),
        maxFutureSkew: duration('5m', 'How far ahead of its ingestion an event time may be'),
        latePolicy: Type.Union(
          LatePolicies.map((p) => Type.Literal(p)),
          { default: 'correct' },
        ),
        retention: duration('35d', 'How long closed windows are kept for corrections and queries'),
        maxQueryWindows: Type.Integer({
          default: 100_000,
          minimum: 1,
          description:
            "Most windows of a meter one usage query may span (400 beyond): the query's cost is this times the partitions it reads",
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    worker: Type.Object(
      {
        batchSize: Type.Integer({ default: 1000, minimum: 1, maximum: 5000 }),
        blockMs: Type.Integer({ default: 1000, minimum: 10 }),
        closeInterval: duration('250ms'),
        claimIdle: duration('30s'),
        maxDeliveries: Type.Integer({ default: 5, minimum: 1 }),
        leases: Type.Boolean({
          default: true,
          description:
            'Spread partitions over replicas with leases; false: every replica reads every partition',
        }),
        leaseTtl: duration('10s', 'How long a dead replica keeps its partitions before others take them'),
        shutdownTimeout: duration(
          '10s',
          'How long `tally worker` may take to stop after SIGTERM/SIGINT before it exits anyway (non-zero)',
        ),
        connectTimeout: duration(
          '10s',
          'How long `tally worker` tries to reach Redis a first time before it exits (non-zero); later outages are waited out',
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    rollups: Type.Object(
      {
        queues: Type.Array(Type.String({ minLength: 1, pattern: '^[^:]+$' }), {
          default: ['tally-billing', 'tally-entitlements'],
          minItems: 1,
        }),
        queuePrefix: Type.String({ default: 'bull', minLength: 1 }),
        keepCompleted: duration('1d'),
        attempts: Type.Integer({ default: 5, minimum: 1 }),
        batchJobs: Type.Boolean({
          default: false,
          description:
            "One BullMQ job per page of a window's rollups (up to a few hundred, job name `rollups`) instead of one per rollup; consumers must accept it (docs/contract.md)",
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    http: Type.Object(
      {
        port: Type.Integer({
          default: 8888,
          minimum: 0,
          maximum: 65535,
          description: '`tally serve` port; --port overrides',
        }),
        host: Type.Optional(
          Type.String({
            minLength: 1,
            description:
              '`tally serve` address (default 0.0.0.0, or 127.0.0.1 without API keys); --host overrides',
          }),
        ),
        apiKeys: Type.Array(Type.String({ minLength: 16 }), {
          default: [],
          description: 'Bearer API keys (at least 16 characters); TALLY_API_KEYS (comma-separated) adds more',
        }),
        auth: Type.Union([Type.Literal('bearer'), Type.Literal('none')], {
          default: 'bearer',
          description: 'none: no authentication on any address (only behind something that authenticates)',
        }),
        bodyLimit: Type.Integer({
          default: 5_242_880,
          minimum: 1024,
          description: 'Largest request body in bytes (413 beyond)',
        }),
        maxEventsPerRequest: Type.Integer({
          default: 10_000,
          minimum: 1,
          description: 'Most events in one POST /api/v1/events (413 beyond)',
        }),
        requestTimeout: duration(
          '30s',
          'How long a client may take to send a whole request (408 and close beyond)',
        ),
        headersTimeout: duration('10s', 'How long a client may take to send the request line and headers'),
        keepAliveTimeout: duration(
          '72s',
          "How long an idle keep-alive connection stays open (longer than a load balancer's idle timeout, often 60 s, so it never reuses a connection the server is closing)",
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    metrics: Type.Object(
      {
        port: Type.Optional(
          Type.Integer({
            minimum: 0,
            maximum: 65535,
            description:
              '`tally worker` /metrics, /healthz, /readyz port (off unless set); --metrics-port overrides',
          }),
        ),
        host: Type.String({ default: '0.0.0.0', description: 'Address of the worker metrics endpoint' }),
      },
      { additionalProperties: false, default: {} },
    ),
    meters: Type.Array(MeterSchema, { default: [] }),
    entitlements: EntitlementsConfigSchema,
    notifications: NotificationsConfigSchema,
  },
  { additionalProperties: false },
);

/** The configuration as written (YAML or object), before defaults are applied. */
export type TallyConfigInput = Static<typeof ConfigSchema>;
