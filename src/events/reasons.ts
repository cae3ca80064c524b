/**
 * Every reason a dead letter can carry: a public contract (docs/contract.md, section 5, "Reason
 * codes"), held equal to that table by test/unit/events/reasons.test.ts. Written by the worker
 * (events/entry.ts, events/schema.ts, meters/meter.ts, worker/batch.ts), by applyBatch.lua (`late`,
 * `beyond-retention`, `sum-overflow`), deadLetterEntries.lua (`poison`) and the partition consumer
 * (`trimmed`).
 */
export const DeadLetterReasons = [
  'no-event-field',
  'oversized',
  'invalid-json',
  'invalid-batch',
  'too-many-events',
  'not-an-object',
  'missing-field',
  'invalid-field',
  'future-time',
  'invalid-value',
  'late',
  'beyond-retention',
  'misrouted',
  'meter-not-active',
  'sum-overflow',
  'unprocessable',
  'poison',
  'trimmed',
] as const;

export type DeadLetterReason = (typeof DeadLetterReasons)[number];
