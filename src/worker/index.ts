export { TallyWorker } from './worker.js';
export { prepareBatch, type StreamEntry, type PreparedBatch, type Forward } from './batch.js';
export type { WorkerOptions, WorkerStats } from './options.js';
