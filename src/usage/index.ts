export { UsageQuery } from './query.js';
export type { UsageQueryOptions, UsageQueryParams, UsageRow } from './options.js';
