export { UsageQuery } from './query.js';
export { rowWindows, defaultRange, type RowWindows } from './rows.js';
export type { UsageQueryOptions, UsageQueryParams, UsageRow } from './options.js';
export { emptyRangeNote, windowStartsIn } from './range.js';
