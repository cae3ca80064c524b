import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Aggregations } from '../meters/index.js';

/** BullMQ job name of every rollup. */
export const ROLLUP_JOB_NAME = 'rollup';

/**
 * The data of a rollup job: one aggregate of one window, meter, subject and group (docs/contract.md).
 * The identity is (meter, subject, groupBy, windowStart, revision); a correction has the same identity
 * with the next revision and carries the new total, not a delta.
 */
export const RollupJobSchema = Type.Object(
  {
    version: Type.Literal(1),
    meter: Type.String(),
    aggregation: Type.Union(Aggregations.map((a) => Type.Literal(a))),
    subject: Type.String(),
    groupBy: Type.Record(Type.String(), Type.Union([Type.String(), Type.Null()])),
    windowStart: Type.String({ description: 'ISO 8601 UTC, inclusive' }),
    windowEnd: Type.String({ description: 'ISO 8601 UTC, exclusive' }),
    value: Type.Number({ description: 'The aggregate as a JS number' }),
    valueDecimal: Type.String({
      description: 'The exact aggregate as a decimal string (6 fractional digits at most)',
    }),
    eventCount: Type.Integer({ minimum: 0 }),
    revision: Type.Integer({ minimum: 1, description: '1 for the first emission, +1 per correction' }),
    partition: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);

export type RollupJob = Static<typeof RollupJobSchema>;

export const rollupJobChecker = TypeCompiler.Compile(RollupJobSchema);

/** BullMQ job name of a rollup batch (`rollups.batchJobs`). */
export const ROLLUP_BATCH_JOB_NAME = 'rollups';

/**
 * The data of a rollup batch job (`rollups.batchJobs: true`): a page of rollups, each as a rollup job's
 * data, usually of one window (a window's close, cut in pages) or a single correction. Each rollup
 * keeps its own identity and revision; a batch is delivered at least once like any job.
 */
export const RollupBatchJobSchema = Type.Object(
  {
    version: Type.Literal(1),
    rollups: Type.Array(RollupJobSchema, { minItems: 1 }),
  },
  { additionalProperties: false },
);

export type RollupBatchJob = Static<typeof RollupBatchJobSchema>;

export const rollupBatchJobChecker = TypeCompiler.Compile(RollupBatchJobSchema);
