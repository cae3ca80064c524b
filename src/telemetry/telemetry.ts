import { metrics, trace, SpanStatusCode, type Attributes, type Counter, type Histogram } from '@opentelemetry/api';

/**
 * Tally's spans and metrics, through @opentelemetry/api only: the application wires an SDK (or not),
 * the library never does. Attribute names are `tally.*`.
 */
const tracer = trace.getTracer('tally');
const meter = metrics.getMeter('tally');

export interface TallyInstruments {
  readonly eventsApplied: Counter;
  readonly eventsDuplicate: Counter;
  readonly eventsDeadLettered: Counter;
  readonly eventsCorrected: Counter;
  readonly eventsUnmetered: Counter;
  readonly eventsForwarded: Counter;
  readonly windowsClosed: Counter;
  readonly rollupsEmitted: Counter;
  readonly batchDuration: Histogram;
}

export const instruments: TallyInstruments = {
  eventsApplied: meter.createCounter('tally.events.applied', { description: 'Events applied to windows' }),
  eventsDuplicate: meter.createCounter('tally.events.duplicate', { description: 'Events dropped as duplicates' }),
  eventsDeadLettered: meter.createCounter('tally.events.dead_lettered', { description: 'Events sent to the dead-letter stream' }),
  eventsCorrected: meter.createCounter('tally.events.corrected', { description: 'Late events applied as corrections' }),
  eventsUnmetered: meter.createCounter('tally.events.unmetered', { description: 'Valid events that match no meter' }),
  eventsForwarded: meter.createCounter('tally.events.forwarded', { description: 'Misrouted events forwarded to their partition' }),
  windowsClosed: meter.createCounter('tally.windows.closed', { description: 'Windows closed' }),
  rollupsEmitted: meter.createCounter('tally.rollups.emitted', { description: 'Rollup jobs added to BullMQ queues' }),
  batchDuration: meter.createHistogram('tally.batch.duration', { description: 'Time to apply one batch', unit: 'ms' }),
};

/** Runs `fn` in a span named `tally.<name>`, recording an exception and error status if it throws. */
export async function withSpan<T>(name: string, attributes: Attributes, fn: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(`tally.${name}`, { attributes }, async (span) => {
    try {
      return await fn();
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}
