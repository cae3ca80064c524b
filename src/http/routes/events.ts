import { Type } from '@sinclair/typebox';
import { explainInvalidEvent, type UsageEvent } from '../../events/index.js';
import { TallyValidationError } from '../../errors/index.js';
import { instruments } from '../../telemetry/index.js';
import type { ApiContext, App } from '../context.js';
import { HttpProblem, isUnavailable, unavailable } from '../problems.js';
import { IngestBodySchema, withProblems } from '../schemas.js';

export const CLOUDEVENT = 'application/cloudevents+json';
export const CLOUDEVENT_BATCH = 'application/cloudevents-batch+json';

/** Attributes OpenMeter accepts as null; they are dropped (null time: the ingestion time, as when absent). */
const NULLABLE = ['time', 'data', 'datacontenttype', 'dataschema'] as const;
/** Invalid events listed in one 400. */
const MAX_ERRORS = 20;

function dropNulls(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const event = value as Record<string, unknown>;
  if (!NULLABLE.some((k) => event[k] === null)) return value;
  const copy = { ...event };
  for (const k of NULLABLE) if (copy[k] === null) delete copy[k];
  return copy;
}

function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** The events of a request body, as its media type says: one, an array, or either. */
function eventsOf(body: unknown, type: string): unknown[] {
  if (type === CLOUDEVENT) {
    if (Array.isArray(body))
      throw new HttpProblem(
        400,
        `${CLOUDEVENT} carries one event object; send an array as ${CLOUDEVENT_BATCH}`,
      );
    return [body];
  }
  if (type === CLOUDEVENT_BATCH) {
    if (!Array.isArray(body))
      throw new HttpProblem(400, `${CLOUDEVENT_BATCH} carries a JSON array of events`);
    return body;
  }
  return Array.isArray(body) ? body : [body];
}

/**
 * POST /api/v1/events: validates every event, then writes them exactly as UsageProducer.sendBatch
 * does (same partitions, same batch entries); 204 only once Redis acknowledged every entry.
 */
export function registerEventRoutes(app: App, ctx: ApiContext): void {
  const { maxEventsPerRequest } = ctx.config.http;
  app.post(
    '/api/v1/events',
    {
      schema: {
        operationId: 'ingestEvents',
        summary: 'Ingest events',
        tags: ['Events'],
        body: IngestBodySchema,
        response: withProblems(
          { 204: Type.Null({ description: 'Every event was acknowledged by Redis' }) },
          413,
          415,
        ),
      },
      // The events are validated below, one by one, so that a 400 names the event's index and field.
      validatorCompiler: () => () => true,
    },
    async (request, reply) => {
      const list = eventsOf(request.body, mediaType(request.headers['content-type']));
      if (list.length > maxEventsPerRequest) {
        throw new HttpProblem(
          413,
          `${list.length} events in one request; at most ${maxEventsPerRequest} (http.maxEventsPerRequest)`,
        );
      }
      const events: UsageEvent[] = [];
      const errors: { index: number; field: string; detail: string }[] = [];
      list.forEach((raw, index) => {
        const event = dropNulls(raw);
        const invalid = explainInvalidEvent(event);
        if (!invalid) events.push(event as UsageEvent);
        else if (errors.length < MAX_ERRORS) {
          const colon = invalid.detail.indexOf(': ');
          const field = colon > 0 ? invalid.detail.slice(0, colon) : '(event)';
          errors.push({ index, field, detail: colon > 0 ? invalid.detail.slice(colon + 2) : invalid.detail });
        }
      });
      if (events.length < list.length) {
        const more = list.length - events.length - errors.length;
        const detail =
          errors.map((e) => `event ${e.index}: ${e.field}: ${e.detail}`).join('; ') +
          (more > 0 ? `; and ${more} more` : '');
        throw new HttpProblem(400, `nothing was written: ${detail}`, { errors });
      }
      let outcome;
      try {
        outcome = await ctx.producer.sendBatchSettled(events, { validated: true });
      } catch (err) {
        if (err instanceof TallyValidationError)
          throw new HttpProblem(400, `nothing was written: ${err.message}`);
        throw err;
      }
      if (outcome.error) {
        // Some entries may have landed: the problem lists the events Redis acknowledged. Retrying the
        // whole request is safe (workers drop duplicates by source and id).
        instruments.httpEventsIngested.add(outcome.acknowledged.length);
        const { acknowledged } = outcome;
        if (isUnavailable(outcome.error)) throw unavailable(outcome.error, { acknowledged });
        request.log.error({ err: outcome.error }, 'writing events failed');
        throw new HttpProblem(
          500,
          `writing events failed (${outcome.error.message}); ${acknowledged.length} of ${events.length} acknowledged`,
          { acknowledged },
        );
      }
      instruments.httpEventsIngested.add(events.length);
      return reply.code(204).send(null);
    },
  );
}
