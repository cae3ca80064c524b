import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

const NonEmpty = Type.String({ minLength: 1 });

/**
 * A usage event: a CloudEvents 1.0 JSON object. This schema is the one definition of the wire format
 * (docs/contract.md); the `UsageEvent` type is derived from it. Extension attributes are allowed.
 */
export const UsageEventSchema = Type.Object(
  {
    specversion: Type.Optional(Type.Literal('1.0')),
    id: NonEmpty,
    source: NonEmpty,
    type: NonEmpty,
    subject: NonEmpty,
    time: Type.Optional(Type.String({ description: 'RFC 3339 timestamp; kept to the millisecond' })),
    datacontenttype: Type.Optional(Type.String()),
    data: Type.Optional(Type.Object({}, { additionalProperties: true })),
  },
  { additionalProperties: true },
);

export type UsageEvent = Static<typeof UsageEventSchema>;

export const usageEventChecker = TypeCompiler.Compile(UsageEventSchema);

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

/** Epoch milliseconds of an RFC 3339 timestamp, or undefined when it is not one. */
export function parseEventTime(time: string): number | undefined {
  if (!RFC3339.test(time)) return undefined;
  const ms = Date.parse(time);
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * Why an event is invalid, as a short machine-readable reason plus a detail naming the field, or
 * undefined when it is valid. Shared by the producer (which throws) and the worker (which dead-letters).
 */
export function explainInvalidEvent(value: unknown): { reason: string; detail: string } | undefined {
  if (usageEventChecker.Check(value)) {
    const time = value.time;
    if (time !== undefined && parseEventTime(time) === undefined) {
      return { reason: 'invalid-field', detail: `time: not an RFC 3339 timestamp: ${JSON.stringify(time)}` };
    }
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { reason: 'not-an-object', detail: 'the event is not a JSON object' };
  }
  const first = usageEventChecker.Errors(value).First();
  const field = first?.path.replace(/^\//, '').replace(/\//g, '.') || '(root)';
  const missing = first !== undefined && (value as Record<string, unknown>)[field] === undefined;
  return {
    reason: missing ? 'missing-field' : 'invalid-field',
    detail: `${field}: ${missing ? 'required' : (first?.message ?? 'invalid')}`,
  };
}
