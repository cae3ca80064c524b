export { TallyWorker } from './worker.js';
export {
  MAX_CALL_COST_US,
  prepareBatch,
  type StreamEntry,
  type PreparedBatch,
  type Forward,
} from './batch.js';
export type { WorkerOptions, WorkerStats } from './options.js';
