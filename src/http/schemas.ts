import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { UsageEventSchema } from '../events/index.js';

/**
 * The HTTP API's schemas (OpenMeter's `api/openapi.yaml` where they overlap). They feed both request
 * validation and the OpenAPI document at /openapi.json; the event schema is the one of `src/events`.
 */

/** A CloudEvent as OpenMeter accepts it: the usage event, with `null` allowed where OpenMeter allows it. */
export const IngestEventSchema = Type.Object(
  {
    ...UsageEventSchema.properties,
    time: Type.Optional(Type.Union([UsageEventSchema.properties.time, Type.Null()])),
    data: Type.Optional(Type.Union([UsageEventSchema.properties.data, Type.Null()])),
    datacontenttype: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    dataschema: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  },
  {
    additionalProperties: true,
    $id: 'Event',
    description: 'A usage event: a CloudEvents 1.0 JSON object (docs/contract.md)',
  },
);

export const IngestBodySchema = Type.Union([IngestEventSchema, Type.Array(IngestEventSchema)], {
  description:
    'application/cloudevents+json: one event; application/cloudevents-batch+json: an array; application/json: either',
});

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    instance: Type.Optional(Type.String()),
    errors: Type.Optional(
      Type.Array(
        Type.Object({ index: Type.Optional(Type.Integer()), field: Type.String(), detail: Type.String() }),
        { description: 'Each invalid event or parameter: its index in the batch, the field, why' },
      ),
    ),
    acknowledged: Type.Optional(
      Type.Array(Type.Integer(), { description: '503 on ingest: indices of the events Redis acknowledged' }),
    ),
  },
  { $id: 'Problem', description: 'RFC 7807 problem details (application/problem+json)' },
);
export type Problem = Static<typeof ProblemSchema>;

export const Aggregations = ['SUM', 'COUNT', 'UNIQUE_COUNT', 'AVG', 'MIN', 'MAX', 'LATEST'] as const;

export const MeterSchema = Type.Object(
  {
    id: Type.String({ description: 'A ULID given to the slug when it was first registered, stable' }),
    slug: Type.String(),
    name: Type.String({ description: 'The name given at registration, else the slug' }),
    description: Type.Optional(Type.String()),
    createdAt: Type.Optional(
      Type.String({ format: 'date-time', description: 'When the slug was first registered' }),
    ),
    updatedAt: Type.Optional(
      Type.String({ format: 'date-time', description: 'When it was last (re)activated' }),
    ),
    deletedAt: Type.Optional(Type.String({ format: 'date-time', description: 'When it was deleted' })),
    aggregation: Type.Union(Aggregations.map((a) => Type.Literal(a))),
    eventType: Type.String(),
    valueProperty: Type.Optional(Type.String()),
    groupBy: Type.Record(Type.String(), Type.String()),
    windowSize: Type.String({ description: 'Tally: the size of the stored windows' }),
    windowTimeZone: Type.String({ description: 'Tally: the zone the stored windows are aligned in' }),
  },
  { $id: 'Meter' },
);
export type MeterBody = Static<typeof MeterSchema>;

export const WindowSizes = ['MINUTE', 'HOUR', 'DAY', 'MONTH'] as const;
// An enum (not a union of literals), so a bad value gets one clear validation message.
const WindowSize = Type.Unsafe<(typeof WindowSizes)[number]>({ type: 'string', enum: [...WindowSizes] });
const Strings = (description: string) => Type.Array(Type.String(), { description });

const queryFields = {
  from: Type.Optional(
    Type.String({
      format: 'date-time',
      description: 'Start, inclusive; aligned to the windows (default: the retention horizon)',
    }),
  ),
  to: Type.Optional(
    Type.String({
      format: 'date-time',
      description: 'End, exclusive for Tally (see docs/http-api.md); default: the end of the current window',
    }),
  ),
  windowSize: Type.Optional(WindowSize),
  windowTimeZone: Type.Optional(
    Type.String({ description: "IANA zone (default: the meter's, UTC unless configured)" }),
  ),
  subject: Type.Optional(Strings('Only these subjects; rows are then split by subject')),
  groupBy: Type.Optional(Strings('Group-by keys to split rows by; `subject` splits by subject')),
  clientId: Type.Optional(Type.String({ description: 'Accepted and ignored' })),
};

/** GET query string. `filterGroupBy[key]=value` arrives as extra keys (deepObject). */
export const MeterQueryStringSchema = Type.Object(queryFields, {
  additionalProperties: Type.Union([Type.String(), Type.Array(Type.String())]),
});

export const MeterQueryBodySchema = Type.Object(
  { ...queryFields, filterGroupBy: Type.Optional(Type.Record(Type.String(), Type.Array(Type.String()))) },
  { additionalProperties: false },
);

export const MeterQueryRowSchema = Type.Object({
  value: Type.Number(),
  windowStart: Type.String({ format: 'date-time' }),
  windowEnd: Type.String({ format: 'date-time' }),
  subject: Type.Union([Type.String(), Type.Null()]),
  groupBy: Type.Record(Type.String(), Type.Union([Type.String(), Type.Null()])),
});

export const MeterQueryResultSchema = Type.Object(
  {
    from: Type.Optional(Type.String({ format: 'date-time', description: 'The `from` asked for, if any' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'The `to` asked for, if any' })),
    windowSize: Type.Optional(WindowSize),
    data: Type.Array(MeterQueryRowSchema),
  },
  { $id: 'MeterQueryResult' },
);
export type MeterQueryResult = Static<typeof MeterQueryResultSchema>;

export const EntitlementValueSchema = Type.Object(
  {
    hasAccess: Type.Boolean(),
    balance: Type.Optional(Type.Number()),
    usage: Type.Optional(Type.Number()),
    overage: Type.Optional(Type.Number()),
    config: Type.Optional(Type.String({ description: 'static entitlements: their configuration as JSON' })),
  },
  { $id: 'EntitlementValue' },
);

/** Error responses every API route may give. */
export function withProblems<T extends Record<number, TSchema>>(
  ok: T,
  ...codes: number[]
): T & Record<number, TSchema> {
  const out: Record<number, TSchema> = { ...ok };
  for (const code of [400, 401, 503, ...codes]) out[code] = Type.Ref(ProblemSchema);
  return out as T & Record<number, TSchema>;
}
