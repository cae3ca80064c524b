import { metrics, type BatchObservableCallback, type Meter, type Observable } from '@opentelemetry/api';

/**
 * Every metric Tally records, defined once, through @opentelemetry/api only: an application (or the
 * `tally` CLI, see prometheus.ts) wires an SDK; the library never does. Attribute names are `tally.*`.
 *
 * The API has no proxy for metrics: an instrument created before a global MeterProvider is
 * registered stays a no-op forever. So the instruments live in one mutable object, built from the
 * provider in force, and `bindInstruments()` rebuilds them after an SDK is installed. Callers always
 * go through `instruments.x` (never keep a reference), so they record into the current provider.
 */
const MS = { unit: 'ms' } as const;
/** Bucket bounds for the latency histograms (ms): 1 ms to 10 min. */
const LATENCY_BUCKETS = [
  1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000, 600_000,
];

function build(meter: Meter) {
  const counter = (name: string, description: string) => meter.createCounter(name, { description });
  const histogram = (name: string, description: string, buckets: number[] = LATENCY_BUCKETS) =>
    meter.createHistogram(name, { description, ...MS, advice: { explicitBucketBoundaries: buckets } });
  const gauge = (name: string, description: string, unit?: string) =>
    meter.createObservableGauge(name, { description, ...(unit ? { unit } : {}) });
  return {
    // Webhook notifications (src/notifications): events created, attempts by outcome, deliveries
    // failed for good, attempt latency, and the delivery queue (observed by the delivery role).
    notificationEventsCreated: counter(
      'tally.notification.events',
      'Notification events created from matching rules',
    ),
    notificationAttempts: counter(
      'tally.notification.attempts',
      'Webhook delivery attempts, by tally.outcome (success, failure)',
    ),
    notificationFailures: counter(
      'tally.notification.failures',
      'Webhook deliveries marked failed after their last attempt',
    ),
    notificationLatency: histogram('tally.notification.latency', 'Duration of one webhook delivery attempt'),
    notificationQueueDue: gauge('tally.notification.queue.due', 'Webhook deliveries due now (not in flight)'),
    notificationQueueDepth: gauge(
      'tally.notification.queue.depth',
      'Webhook deliveries waiting: due, scheduled for a retry, or in flight',
    ),
    // Worker counters (attribute tally.partition).
    eventsApplied: counter('tally.events.applied', 'Events applied to windows'),
    eventsDuplicate: counter('tally.events.duplicate', 'Events dropped as duplicates'),
    eventsDeadLettered: counter('tally.events.dead_lettered', 'Events sent to the dead-letter stream'),
    eventsCorrected: counter('tally.events.corrected', 'Late events applied as corrections'),
    eventsUnmetered: counter('tally.events.unmetered', 'Valid events that match no meter'),
    eventsForwarded: counter('tally.events.forwarded', 'Misrouted events forwarded to their partition'),
    entriesLost: counter(
      'tally.entries.lost',
      'Entries deleted from the stream (XTRIM, XDEL) while pending, before they were applied',
    ),
    windowsClosed: counter('tally.windows.closed', 'Windows closed'),
    rollupsEmitted: counter('tally.rollups.emitted', 'Rollup jobs added to BullMQ queues'),
    // Worker histograms.
    batchDuration: histogram('tally.batch.duration', 'Time to apply one batch'),
    rollupLatency: histogram(
      'tally.rollup.latency',
      'Wall-clock time from a window close point (end + grace) to its first rollup job being added',
    ),
    // Worker gauges, observed per owned partition on each collection (worker/gauges.ts).
    partitionLag: gauge(
      'tally.partition.lag',
      'Entries in the partition stream not yet delivered to the consumer group',
    ),
    partitionPending: gauge(
      'tally.partition.pending',
      'Entries delivered and not yet applied (acknowledged)',
    ),
    partitionOldestPendingAge: gauge(
      'tally.partition.oldest_pending_age',
      'Age of the oldest pending entry, from its id',
      'ms',
    ),
    partitionOpenWindows: gauge(
      'tally.partition.open_windows',
      'Windows open (not yet closed) in the partition',
    ),
    partitionEventTimeLag: gauge(
      'tally.partition.event_time_lag',
      'Wall clock minus stream time (largest event time applied)',
      'ms',
    ),
    partitionOutbox: gauge('tally.partition.outbox', 'Rollups in the outbox not yet relayed to BullMQ'),
    partitionDeadLetters: gauge('tally.partition.dead_letters', 'Length of the dead-letter stream'),
    partitionsOwned: gauge('tally.worker.partitions_owned', 'Partitions this worker consumes'),
    // Entitlements.
    entitlementRollupsApplied: counter(
      'tally.entitlements.rollups',
      'Rollup applications to entitlement usage, by status',
    ),
    entitlementNotificationsRelayed: counter(
      'tally.entitlements.notifications',
      'Entitlement notifications added to the queue',
    ),
    entitlementChecks: counter('tally.entitlements.checks', 'Entitlement checks answered'),
    entitlementCheckDuration: histogram('tally.entitlements.check.duration', 'Time to answer a check'),
    // HTTP API (`tally serve`): attributes tally.route, tally.method, tally.status.
    httpRequests: counter('tally.http.requests', 'HTTP requests answered, by route and status'),
    httpEventsIngested: counter(
      'tally.http.events.ingested',
      'Events accepted by POST /api/v1/events (acknowledged by Redis)',
    ),
    httpRequestDuration: histogram('tally.http.request.duration', 'Time to answer an HTTP request'),
  };
}

export type TallyInstruments = ReturnType<typeof build>;

let meter = metrics.getMeter('tally');

export const instruments: TallyInstruments = build(meter);

/** Rebuilds every instrument from the global MeterProvider now in force (call after registering one). */
export function bindInstruments(): void {
  meter = metrics.getMeter('tally');
  Object.assign(instruments, build(meter));
}

/**
 * Registers a callback that observes several gauges at each collection; returns its removal. It binds
 * to the provider in force when called.
 */
export function observeBatch(callback: BatchObservableCallback, observables: Observable[]): () => void {
  const bound = meter;
  bound.addBatchObservableCallback(callback, observables);
  return () => bound.removeBatchObservableCallback(callback, observables);
}
