import type { DeadLetterReason } from './reasons.js';
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

const LONE_SURROGATE = /\p{Cs}/u;

/**
 * True when `text` holds an unpaired UTF-16 surrogate (JSON allows `"\ud800"`). Such text is not
 * Unicode: UTF-8 (Redis, MD5 input) turns every unpaired surrogate into the same U+FFFD, so
 * `"ls-\ud800"` and `"ls-\udbff"` would become one id, one subject or one group value.
 */
export function hasLoneSurrogate(text: string): boolean {
  return LONE_SURROGATE.test(text);
}

/** Attributes that identify an event or decide where it counts: they must survive UTF-8 intact. */
const IDENTITY_FIELDS = ['id', 'source', 'subject', 'type'] as const;

/**
 * Why an event is invalid, as a short machine-readable reason plus a detail naming the field, or
 * undefined when it is valid. Shared by the producer (which throws) and the worker (which dead-letters).
 */
export function explainInvalidEvent(
  value: unknown,
): { reason: DeadLetterReason; detail: string } | undefined {
  if (usageEventChecker.Check(value)) {
    for (const field of IDENTITY_FIELDS) {
      if (hasLoneSurrogate(value[field])) {
        return {
          reason: 'invalid-field',
          detail: `${field}: contains an unpaired UTF-16 surrogate (not valid Unicode text)`,
        };
      }
    }
    const time = value.time;
    if (time !== undefined && parseEventTime(time) === undefined) {
      return {
        reason: 'invalid-field',
        detail: `time: not an RFC 3339 timestamp of a real instant: ${JSON.stringify(time.slice(0, 64))}`,
      };
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
