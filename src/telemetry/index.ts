export { withSpan } from './telemetry.js';
export { instruments, bindInstruments, observeBatch, type TallyInstruments } from './instruments.js';
export { installPrometheus, PROMETHEUS_CONTENT_TYPE, type PrometheusMetrics } from './prometheus.js';
