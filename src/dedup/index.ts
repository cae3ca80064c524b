export { fingerprint, meterFingerprint, epochOf } from './fingerprint.js';
