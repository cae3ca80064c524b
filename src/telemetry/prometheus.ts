import { metrics } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { bindInstruments } from './instruments.js';

/** The Prometheus text exposition format's content type. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Tally's metrics in Prometheus text format, collected on demand (a scrape). */
export interface PrometheusMetrics {
  /** Collects every instrument (runs the gauges' callbacks) and serializes the result. */
  scrape(): Promise<string>;
}

let installed: PrometheusMetrics | undefined;

/**
 * Installs the OpenTelemetry metrics SDK as the process's global MeterProvider, read by a Prometheus
 * exporter that starts no server of its own (the caller serves `scrape()` on its `/metrics` route),
 * and rebinds Tally's instruments to it. For applications (the `tally` CLI): the library itself
 * never installs an SDK. Idempotent: later calls return the same instance.
 */
export function installPrometheus(): PrometheusMetrics {
  if (installed) return installed;
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({ readers: [exporter] });
  if (!metrics.setGlobalMeterProvider(provider)) {
    throw new Error('a global OpenTelemetry MeterProvider is already registered; serve its metrics instead');
  }
  bindInstruments();
  const serializer = new PrometheusSerializer('', false, undefined, true, true);
  installed = {
    async scrape() {
      const { resourceMetrics } = await exporter.collect({ timeoutMillis: 5_000 });
      return serializer.serialize(resourceMetrics);
    },
  };
  return installed;
}
