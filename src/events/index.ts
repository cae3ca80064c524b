export { UsageEventSchema, usageEventChecker, parseEventTime, explainInvalidEvent, type UsageEvent } from './schema.js';
export {
  decodeEntry,
  describeError,
  UNPROCESSABLE,
  EVENT_FIELD,
  EVENTS_FIELD,
  type DecodedEvent,
  type DecodedEntry,
  type RejectedEvent,
  type DecodeOptions,
} from './entry.js';
export { jsonArrayElements, withTime } from './json-text.js';
