export {
  status,
  statusWarnings,
  type TallyStatus,
  type PartitionStatus,
  type PendingStatus,
  type ReplicaStatus,
  type OpenWindow,
} from './status.js';
export {
  listDeadLetters,
  replayDeadLetters,
  type ReplayResult,
  type ReplayedDeadLetter,
} from './dead-letters.js';
export {
  parseDeadLetter,
  parseDeadLetterRef,
  planReplay,
  pinEventTime,
  type DeadLetter,
  type DeadEventSummary,
  type EventField,
  type ReplayPlan,
} from './dead-letter-entry.js';
export {
  defaultListDeadLettersOptions,
  defaultReplayDeadLettersOptions,
  type ListDeadLettersOptions,
  type ReplayDeadLettersOptions,
} from './options.js';
export {
  formatStatus,
  formatDeadLetters,
  formatReplay,
  formatDuration,
  formatTime,
  renderTable,
} from './format.js';
export {
  parseGroupInfo,
  parsePendingSummary,
  parseTime,
  streamIdMs,
  type ConsumerInfo,
  type GroupInfo,
} from './replies.js';
