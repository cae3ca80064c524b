export { fingerprint, epochOf } from './fingerprint.js';
export { sweepDedup } from './sweeper.js';
