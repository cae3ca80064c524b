export { fingerprint, epochOf } from './fingerprint.js';
