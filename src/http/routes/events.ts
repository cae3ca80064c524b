import { Type } from '@sinclair/typebox';
import { explainInvalidEvent, parseEventTime, type UsageEvent } from '../../events/index.js';
import { TallyValidationError } from '../../errors/index.js';
import { instruments } from '../../telemetry/index.js';
import { windowOf } from '../../windows/index.js';
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

/** JSON media types (`application/json`, `application/<anything>+json`), parameters allowed. */
const JSON_MEDIA_TYPE = /^application\/(?:[\w.-]+\+)?json\s*(?:;.*)?$/i;

/**
 * Why a valid event is certain to be dead-lettered by the worker, if it is: data that is not JSON
 * (`data_base64`, or a `datacontenttype` other than JSON, refused as OpenMeter refuses them), a
 * number JSON could not represent (`1e400` parses as Infinity and would be stored as null), a `time` more than
 * windows.maxFutureSkew ahead of now, or one whose windows, in every meter of its type, are already
 * beyond windows.retention (the worker's clock can only be later). Checks of values against meters
 * stay with the worker.
 */
function certainRejection(
  event: UsageEvent,
  now: number,
  ctx: ApiContext,
): { field: string; detail: string } | undefined {
  if ('data_base64' in event)
    return { field: 'data_base64', detail: 'binary data is not supported: meters read JSON `data`' };
  const contentType = event.datacontenttype;
  if (typeof contentType === 'string' && !JSON_MEDIA_TYPE.test(contentType))
    return {
      field: 'datacontenttype',
      detail: `${JSON.stringify(contentType)}: only JSON data is supported (application/json)`,
    };
  const path = nonFinitePath(event);
  if (path !== undefined)
    return { field: path, detail: 'a number beyond the range of a double (not finite)' };
  if (event.time === undefined) return undefined;
  const t = parseEventTime(event.time);
  if (t === undefined) return undefined;
  const { maxFutureSkewMs, retentionMs } = ctx.config.windows;
  if (t > now + maxFutureSkewMs)
    return {
      field: 'time',
      detail: `${event.time} is more than ${maxFutureSkewMs} ms (windows.maxFutureSkew) ahead of now (${new Date(now).toISOString()})`,
    };
  const meters = ctx.meters.forType(event.type) ?? [];
  if (meters.length > 0 && meters.every((m) => windowOf(m.window, t).end + retentionMs <= now))
    return {
      field: 'time',
      detail: `${event.time} is in windows already beyond windows.retention (${retentionMs} ms before now, ${new Date(now).toISOString()})`,
    };
  return undefined;
}

/** The path of the first non-finite number in a parsed value (nesting is bounded by the body parser). */
function nonFinitePath(value: unknown): string | undefined {
  const stack: [unknown, string][] = [[value, '']];
  while (stack.length > 0) {
    const [v, path] = stack.pop() as [unknown, string];
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return path || '(event)';
    } else if (typeof v === 'object' && v !== null) {
      const entries = Array.isArray(v) ? v.map((x, i) => [String(i), x] as const) : Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, x] = entries[i] as readonly [string, unknown];
        stack.push([x, path ? `${path}.${k}` : k]);
      }
    }
  }
  return undefined;
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
      const now = Date.now();
      list.forEach((raw, index) => {
        const event = dropNulls(raw);
        const invalid = explainInvalidEvent(event);
        const doomed = invalid ? undefined : certainRejection(event as UsageEvent, now, ctx);
        if (!invalid && !doomed) events.push(event as UsageEvent);
        else if (errors.length < MAX_ERRORS) {
          if (doomed) errors.push({ index, ...doomed });
          else if (invalid) {
            const colon = invalid.detail.indexOf(': ');
            const field = colon > 0 ? invalid.detail.slice(0, colon) : '(event)';
            errors.push({
              index,
              field,
              detail: colon > 0 ? invalid.detail.slice(colon + 2) : invalid.detail,
            });
          }
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
