import { Type, type Static } from '@sinclair/typebox';

/** One meter of the config's `meters:` list (as in OpenMeter's config). */
export const Aggregations = ['SUM', 'COUNT', 'MIN', 'MAX', 'AVG', 'UNIQUE_COUNT', 'LATEST'] as const;
export type Aggregation = (typeof Aggregations)[number];

export const MeterSchema = Type.Object(
  {
    slug: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$', description: 'Unique meter id' }),
    description: Type.Optional(Type.String()),
    eventType: Type.String({ minLength: 1, description: 'CloudEvents `type` this meter counts' }),
    aggregation: Type.Union(
      Aggregations.map((a) => Type.Literal(a)),
      { description: Aggregations.join(', ') },
    ),
    valueProperty: Type.Optional(
      Type.String({ minLength: 1, description: 'JSONPath into `data`, e.g. $.tokens' }),
    ),
    groupBy: Type.Optional(
      Type.Record(
        Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$' }),
        Type.String({ minLength: 1 }),
        {
          description: 'Group-by name → JSONPath into `data`',
        },
      ),
    ),
    windowSize: Type.String({
      default: 'HOUR',
      description: 'MINUTE, HOUR, DAY or a duration dividing a day (5m)',
    }),
    timeZone: Type.String({ default: 'UTC', description: 'IANA time zone the windows are aligned to' }),
  },
  { additionalProperties: false },
);

export type MeterInput = Static<typeof MeterSchema>;
