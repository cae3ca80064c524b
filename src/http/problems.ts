import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCode, TallyError, TallyValidationError } from '../errors/index.js';
import type { Problem } from './schemas.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

const TITLES: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  431: 'Request Header Fields Too Large',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/**
 * The problem types other than about:blank: one per answer a client must tell apart from others of
 * the same status (docs/http-api.md lists them; a test holds the two equal).
 */
export const ProblemTypes = {
  unknownFeature: { type: 'urn:tally:problem:unknown-feature', title: 'Unknown Feature' },
  noEntitlement: { type: 'urn:tally:problem:no-entitlement', title: 'No Entitlement' },
} as const;
export type ProblemType = (typeof ProblemTypes)[keyof typeof ProblemTypes];

/** An error a route throws to answer with a problem (RFC 7807). */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    detail: string,
    readonly extra: Partial<Pick<Problem, 'errors' | 'acknowledged'>> = {},
    readonly headers: Readonly<Record<string, string>> = {},
    readonly problemType?: ProblemType,
  ) {
    super(detail);
  }
}

/** Sends an RFC 7807 problem: `type` about:blank (`title` the status phrase) unless a ProblemType. */
export function sendProblem(
  reply: FastifyReply,
  request: FastifyRequest,
  problem: HttpProblem,
): FastifyReply {
  const body: Problem = {
    type: problem.problemType?.type ?? 'about:blank',
    title: problem.problemType?.title ?? TITLES[problem.status] ?? 'Error',
    status: problem.status,
    detail: problem.message,
    instance: request.url,
    ...problem.extra,
  };
  for (const [name, value] of Object.entries(problem.headers)) reply.header(name, value);
  // A Buffer, so fastify sends the type as it is (it appends a charset to JSON types sent as text, and
  // OpenMeter's clients compare it verbatim), also where no onSend hook runs (router errors).
  return reply
    .code(problem.status)
    .header('content-type', PROBLEM_CONTENT_TYPE)
    .send(Buffer.from(JSON.stringify(body)));
}

/**
 * Messages of ioredis errors that mean Redis cannot be reached now (offline queue off, connection
 * closed, retries exhausted, command timed out, socket errors).
 */
const UNAVAILABLE =
  /enableOfflineQueue|Connection is closed|MaxRetriesPerRequest|max retries per request|Command timed out|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|LOADING|CLUSTERDOWN|TRYAGAIN/i;

/** Whether an error means Redis is unreachable (answer 503 and let the client retry). */
export function isUnavailable(err: unknown): boolean {
  // The producer's own deadline (sendTimeout) says so with its code.
  if (err instanceof TallyError) return err.code === ErrorCode.Unavailable;
  return (
    err instanceof Error &&
    UNAVAILABLE.test(`${err.name} ${err.message} ${(err as { code?: string }).code ?? ''}`)
  );
}

export function unavailable(err: unknown, extra: Partial<Pick<Problem, 'acknowledged'>> = {}): HttpProblem {
  return new HttpProblem(503, `Redis is unreachable (${(err as Error).message}); retry later`, extra, {
    'retry-after': '1',
  });
}

/** Maps any error a route or fastify raised to a problem. */
export function toProblem(err: unknown): HttpProblem {
  if (err instanceof HttpProblem) return err;
  if (err instanceof TallyValidationError) return new HttpProblem(400, err.message);
  if (isUnavailable(err)) return unavailable(err);
  const e = err as FastifyError;
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpProblem(413, 'the request body is larger than the limit (http.bodyLimit)');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpProblem(
        415,
        `unsupported Content-Type: send application/cloudevents+json, application/cloudevents-batch+json or application/json`,
      );
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new HttpProblem(400, `invalid JSON: ${e.message}`);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpProblem(400, 'the request body is empty');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new HttpProblem(400, 'Content-Length does not match the body');
  }
  if (e.validation) {
    const errors = e.validation
      .map((v) => {
        const missing = (v.params as { missingProperty?: string }).missingProperty;
        const path = (v.instancePath || '').replace(/^\//, '').replace(/\//g, '.');
        const field = [path, missing].filter(Boolean).join('.') || (e.validationContext ?? 'request');
        const allowed = (v.params as { allowedValues?: unknown[] }).allowedValues;
        return {
          field: `${e.validationContext ?? 'request'}${field ? `.${field}` : ''}`.replace(
            /^(\w+)\.\1$/,
            '$1',
          ),
          detail: `${v.message ?? 'invalid'}${allowed ? `: ${allowed.join(', ')}` : ''}`,
        };
      })
      .filter((x, i, all) => all.findIndex((y) => y.field === x.field && y.detail === x.detail) === i);
    return new HttpProblem(400, errors.map((x) => `${x.field}: ${x.detail}`).join('; '), { errors });
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new HttpProblem(
      e.statusCode,
      e.statusCode === 400 && e instanceof SyntaxError ? `invalid JSON: ${e.message}` : e.message,
    );
  }
  return new HttpProblem(500, 'internal error');
}
