import type { FastifyRequest } from 'fastify';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { HttpProblem } from './problems.js';

const gunzipAsync = promisify(gunzip);

/** Deepest nesting of arrays and objects a JSON body may have (an event's `data` included). */
export const MAX_JSON_DEPTH = 128;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** `"__proto__"` as a key, also spelled with \u escapes (JSON.parse unescapes them). */
const PROTO_KEY =
  /"(?:_|\\u005[fF])(?:_|\\u005[fF])(?:p|\\u0070)(?:r|\\u0072)(?:o|\\u006[fF])(?:t|\\u0074)(?:o|\\u006[fF])(?:_|\\u005[fF])(?:_|\\u005[fF])"\s*:/;

/**
 * The JSON bodies of the API, strictly: the raw bytes (gunzipped with `Content-Encoding: gzip`, to at
 * most `bodyLimit` bytes) must be valid UTF-8 (a replacement character would merge two distinct ids),
 * nest at most {@link MAX_JSON_DEPTH} levels, and hold no `__proto__` key. Each refusal is a 400 (413,
 * 415) that says which rule.
 */
export function jsonBodyParser(bodyLimit: number) {
  return async (request: FastifyRequest, raw: Buffer): Promise<unknown> => {
    const bytes = await decoded(request, raw, bodyLimit);
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      throw new HttpProblem(400, `the body is not valid UTF-8 (at byte ${firstInvalidUtf8(bytes)})`);
    }
    if (text.trim() === '') throw new HttpProblem(400, 'the request body is empty');
    const depth = nestingDepth(text, MAX_JSON_DEPTH);
    if (depth > MAX_JSON_DEPTH)
      throw new HttpProblem(400, `the JSON body nests deeper than ${MAX_JSON_DEPTH} levels`);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new HttpProblem(400, `invalid JSON: ${(err as Error).message}`);
    }
    // Only a body that may hold one pays for the walk that confirms it.
    if (PROTO_KEY.test(text) && hasProtoKey(value))
      throw new HttpProblem(
        400,
        'the key "__proto__" is not accepted (it would be an object\'s prototype in JavaScript); rename it',
      );
    return value;
  };
}

async function decoded(request: FastifyRequest, raw: Buffer, bodyLimit: number): Promise<Buffer> {
  const encoding = (request.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (encoding === 'identity' || encoding === '') return raw;
  if (encoding !== 'gzip' && encoding !== 'x-gzip')
    throw new HttpProblem(415, `unsupported Content-Encoding ${JSON.stringify(encoding)}: send gzip or none`);
  try {
    // A bomb stops at bodyLimit bytes of output instead of filling memory.
    return await gunzipAsync(raw, { maxOutputLength: bodyLimit });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE')
      throw new HttpProblem(
        413,
        `the gunzipped body is larger than the limit (http.bodyLimit, ${bodyLimit} bytes)`,
      );
    throw new HttpProblem(400, `the body is not valid gzip (${(err as Error).message})`);
  }
}

/**
 * Byte offset of the first byte that is not valid UTF-8, in one pass: the lenient decoding's first
 * U+FFFD that the body did not spell as the bytes EF BF BD itself.
 */
function firstInvalidUtf8(bytes: Buffer): number {
  const text = bytes.toString('utf8');
  let offset = 0;
  let from = 0;
  for (;;) {
    const i = text.indexOf('\uFFFD', from);
    if (i < 0) return bytes.length;
    offset += Buffer.byteLength(text.slice(from, i));
    if (!(bytes[offset] === 0xef && bytes[offset + 1] === 0xbf && bytes[offset + 2] === 0xbd)) return offset;
    offset += 3;
    from = i + 1;
  }
}

/** The deepest nesting of `[`/`{` outside strings, counting stops just past `limit`. A loop, not recursion. */
export function nestingDepth(text: string, limit: number): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // Skip the string, escapes included.
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** Whether a parsed value has an own `__proto__` key anywhere (depth is bounded before this runs). */
function hasProtoKey(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null) continue;
    if (Array.isArray(v)) {
      for (const x of v) stack.push(x);
      continue;
    }
    if (Object.prototype.hasOwnProperty.call(v, '__proto__')) return true;
    for (const x of Object.values(v)) stack.push(x);
  }
  return false;
}
