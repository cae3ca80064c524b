import { Type } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import type { RegisteredMeter } from '../../registry/index.js';
import { defaultRange, rowWindows, type UsageRow } from '../../usage/index.js';
import { formatIsoUtc } from '../../windows/index.js';
import type { ApiContext, App } from '../context.js';
import { HttpProblem } from '../problems.js';
import {
  MeterQueryBodySchema,
  MeterQueryResultSchema,
  MeterQueryStringSchema,
  MeterSchema,
  withProblems,
  type MeterBody,
  type MeterQueryResult,
} from '../schemas.js';

const FILTER_KEY = /^filterGroupBy\[(.+)\]$/;

interface MeterQuery {
  from?: string | undefined;
  to?: string | undefined;
  windowSize?: 'MINUTE' | 'HOUR' | 'DAY' | 'MONTH' | undefined;
  windowTimeZone?: string | undefined;
  subject?: string[] | undefined;
  groupBy?: string[] | undefined;
  filterGroupBy?: Record<string, string[]>;
}

function meterBody(m: RegisteredMeter): MeterBody {
  const d = m.definition;
  const time = (ms: number | undefined) => (ms ? formatIsoUtc(ms) : undefined);
  const createdAt = time(m.createdAt);
  const deletedAt = time(m.deletedAt);
  return {
    id: m.info.id,
    slug: d.slug,
    name: m.info.name ?? d.slug,
    ...(m.info.description ? { description: m.info.description } : {}),
    aggregation: d.aggregation,
    eventType: d.eventType,
    ...(d.valueProperty !== null ? { valueProperty: d.valueProperty } : {}),
    groupBy: { ...d.groupBy },
    windowSize: d.windowSize,
    windowTimeZone: d.timeZone,
    ...(createdAt ? { createdAt, updatedAt: createdAt } : {}),
    ...(deletedAt ? { deletedAt } : {}),
  };
}

function instant(value: string | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (!Number.isFinite(ms))
    throw new HttpProblem(400, `${field}: expected an RFC 3339 date-time, got ${JSON.stringify(value)}`, {
      errors: [{ field, detail: 'not an RFC 3339 date-time' }],
    });
  return ms;
}

/** Cells a spreadsheet would read as a formula (OWASP CSV injection): =, +, -, @, TAB, CR first. */
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * One CSV cell (RFC 4180 quoting). Text from clients (subjects, group-by values, keys) that starts
 * like a formula gets a leading `'`, as OWASP advises, so a spreadsheet shows it instead of running it.
 */
export function csvCell(value: string, text = true): string {
  const safe = text && FORMULA_START.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** The rows as CSV; only the value column (an exact decimal Tally wrote, maybe negative) is not text. */
export function toCsv(rows: readonly UsageRow[], keys: readonly string[]): string {
  const header = ['windowStart', 'windowEnd', 'subject', ...keys, 'value'].map((h) => csvCell(h));
  const lines = [header.join(',')];
  for (const r of rows) {
    const text = [r.windowStart, r.windowEnd, r.subject ?? '', ...keys.map((k) => r.groupBy[k] ?? '')];
    lines.push([...text.map((c) => csvCell(c)), csvCell(r.valueDecimal, false)].join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

/**
 * A signal that aborts when the connection closes before the reply is sent: the query stops at its
 * next chunk instead of reading windows for nobody.
 */
function whileConnected(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  const res = reply.raw;
  const onClose = () => {
    if (!res.writableFinished) controller.abort(new Error('the client closed the connection'));
  };
  res.once('close', onClose);
  return controller.signal;
}

/** GET /api/v1/meters, GET /api/v1/meters/{slug}, GET and POST /api/v1/meters/{slug}/query. */
export function registerMeterRoutes(app: App, ctx: ApiContext): void {
  const Slug = Type.Object({ meterIdOrSlug: Type.String() });

  app.get(
    '/api/v1/meters',
    {
      schema: {
        operationId: 'listMeters',
        summary: 'List meters',
        tags: ['Meters'],
        response: withProblems({ 200: Type.Array(Type.Ref(MeterSchema)) }),
      },
    },
    () => Promise.resolve(ctx.registry.registered().map(meterBody)),
  );

  app.get(
    '/api/v1/meters/:meterIdOrSlug',
    {
      schema: {
        operationId: 'getMeter',
        summary: 'Get meter',
        tags: ['Meters'],
        params: Slug,
        response: withProblems({ 200: Type.Ref(MeterSchema) }, 404),
      },
    },
    (request) => {
      const idOrSlug = request.params.meterIdOrSlug;
      const meter = ctx.registry
        .registered(true)
        .find((m) => m.definition.slug === idOrSlug || m.info.id === idOrSlug);
      if (!meter)
        return Promise.reject(
          new HttpProblem(404, `no meter ${JSON.stringify(request.params.meterIdOrSlug)}`),
        );
      return Promise.resolve(meterBody(meter));
    },
  );

  const query = async (idOrSlug: string, q: MeterQuery, csv: boolean, signal: AbortSignal) => {
    const slug =
      ctx.registry.registered(true).find((m) => m.info.id === idOrSlug)?.definition.slug ?? idOrSlug;
    const meter = ctx.meters.bySlug(slug);
    if (!meter) throw new HttpProblem(404, `no meter ${JSON.stringify(idOrSlug)}`);
    const groupBy = q.groupBy ?? [];
    const bySubject = groupBy.includes('subject') || (q.subject?.length ?? 0) > 0;
    const keys = [...new Set(groupBy.filter((k) => k !== 'subject'))];
    const rows = rowWindows(meter, q.windowSize, q.windowTimeZone);
    const range = defaultRange(meter, rows, ctx.config.windows.retentionMs);
    const from = instant(q.from, 'from') ?? range.from;
    const to = instant(q.to, 'to') ?? range.to;
    const data = await ctx.usage
      .query({
        meter: slug,
        from,
        to,
        bySubject,
        groupBy: keys,
        ...(q.subject?.length ? { subject: q.subject } : {}),
        ...(q.windowSize ? { windowSize: q.windowSize } : {}),
        ...(q.windowTimeZone ? { timeZone: q.windowTimeZone } : {}),
        ...(q.filterGroupBy ? { filter: q.filterGroupBy } : {}),
        signal,
      })
      .catch((err: unknown) => {
        // Nobody is waiting for the answer; 499 (nginx's "client closed request") in the request metrics.
        if (signal.aborted) throw new HttpProblem(499, 'the client closed the connection; query abandoned');
        throw err;
      });
    if (csv) return toCsv(data, keys);
    // As OpenMeter: `from` and `to` echo the request, and are absent when it did not give them.
    const result: MeterQueryResult = {
      ...(q.from !== undefined ? { from: formatIsoUtc(from) } : {}),
      ...(q.to !== undefined ? { to: formatIsoUtc(to) } : {}),
      ...(q.windowSize ? { windowSize: q.windowSize } : {}),
      data: data.map((r) => ({
        value: r.value,
        windowStart: r.windowStart,
        windowEnd: r.windowEnd,
        subject: r.subject,
        groupBy: r.groupBy,
      })),
    };
    return result;
  };

  const responses = withProblems({ 200: Type.Ref(MeterQueryResultSchema) }, 404);
  const wantsCsv = (accept: string | undefined) =>
    /\btext\/csv\b/i.test(accept ?? '') && !/application\/json/i.test(accept ?? '');

  app.get(
    '/api/v1/meters/:meterIdOrSlug/query',
    {
      schema: {
        operationId: 'queryMeter',
        summary: 'Query meter (Accept: text/csv for CSV)',
        tags: ['Meters'],
        params: Slug,
        querystring: MeterQueryStringSchema,
        response: responses,
      },
    },
    async (request, reply) => {
      // No prototype: `filterGroupBy[__proto__]=x` is a key like any other (on a plain object the
      // assignment below set the prototype instead, and the filter was silently dropped).
      const filter = Object.create(null) as Record<string, string[]>;
      if ('filterGroupBy' in request.query)
        throw new HttpProblem(
          400,
          'filterGroupBy: expected filterGroupBy[<group-by key>]=<value> (deepObject), e.g. filterGroupBy[model]=gpt-4',
          {
            errors: [{ field: 'querystring.filterGroupBy', detail: 'expected filterGroupBy[<key>]=<value>' }],
          },
        );
      for (const [k, v] of Object.entries(request.query)) {
        const m = FILTER_KEY.exec(k);
        if (m?.[1] && v !== undefined) filter[m[1]] = (Array.isArray(v) ? v : [v]).map(String);
      }
      const q = request.query as MeterQuery;
      const csv = wantsCsv(request.headers.accept);
      const out = await query(
        request.params.meterIdOrSlug,
        { ...q, ...(Object.keys(filter).length ? { filterGroupBy: filter } : {}) },
        csv,
        whileConnected(reply),
      );
      if (typeof out === 'string') return reply.type('text/csv; charset=utf-8').send(out);
      return out;
    },
  );

  app.post(
    '/api/v1/meters/:meterIdOrSlug/query',
    {
      schema: {
        operationId: 'queryMeterPost',
        summary: 'Query meter with a JSON body',
        tags: ['Meters'],
        params: Slug,
        body: MeterQueryBodySchema,
        response: responses,
      },
    },
    async (request, reply) => {
      const out = await query(
        request.params.meterIdOrSlug,
        request.body,
        wantsCsv(request.headers.accept),
        whileConnected(reply),
      );
      if (typeof out === 'string') return reply.type('text/csv; charset=utf-8').send(out);
      return out;
    },
  );
}
