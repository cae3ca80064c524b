export {
  UsageEventSchema,
  usageEventChecker,
  parseEventTime,
  explainInvalidEvent,
  hasLoneSurrogate,
  type UsageEvent,
} from './schema.js';
export {
  decodeEntry,
  describeError,
  UNPROCESSABLE,
  TOO_MANY_EVENTS,
  EVENT_FIELD,
  EVENTS_FIELD,
  METER_FIELD,
  FORWARDED_FIELD,
  type DecodedEvent,
  type DecodedEntry,
  type RejectedEvent,
  type DecodeOptions,
} from './entry.js';
export { jsonArrayElements, jsonArrayRanges, utf8ByteRanges, withTime } from './json-text.js';
export { DeadLetterReasons, type DeadLetterReason } from './reasons.js';
