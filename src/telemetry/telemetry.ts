import { trace, SpanStatusCode, type Attributes } from '@opentelemetry/api';

/** Tally's spans, through @opentelemetry/api only. Attribute names are `tally.*`. */
const tracer = trace.getTracer('tally');

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
