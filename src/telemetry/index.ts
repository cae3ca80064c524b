export { instruments, withSpan, type TallyInstruments } from './telemetry.js';
