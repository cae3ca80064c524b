import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { parseEventTime } from './time.js';

export { parseEventTime };

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

/**
 * Why an event is invalid, as a short machine-readable reason plus a detail naming the field, or
 * undefined when it is valid. Shared by the producer (which throws) and the worker (which dead-letters).
 */
export function explainInvalidEvent(value: unknown): { reason: string; detail: string } | undefined {
  if (usageEventChecker.Check(value)) {
    const time = value.time;
    if (time !== undefined && parseEventTime(time) === undefined) {
      return { reason: 'invalid-field', detail: `time: not an RFC 3339 timestamp of a real instant: ${JSON.stringify(time.slice(0, 64))}` };
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
