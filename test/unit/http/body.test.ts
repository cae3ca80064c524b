/** The strict JSON body parser of `tally serve`, without a server. */
import type { FastifyRequest } from 'fastify';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { jsonBodyParser, MAX_JSON_DEPTH, nestingDepth } from '../../../src/http/body.js';

const request = (headers: Record<string, string> = {}) => ({ headers }) as unknown as FastifyRequest;
const parse = jsonBodyParser(1_024);

describe('jsonBodyParser', () => {
  it('names the first invalid byte, past a U+FFFD the body really holds', async () => {
    const body = Buffer.concat([Buffer.from('["\uFFFD'), Buffer.from([0xff]), Buffer.from('"]')]);
    await expect(parse(request(), body)).rejects.toMatchObject({
      status: 400,
      message: 'the body is not valid UTF-8 (at byte 5)',
    });
    await expect(parse(request(), Buffer.from('["\uFFFD"]'))).resolves.toEqual(['\uFFFD']);
  });

  it('counts nesting outside strings only, and stops counting past the limit', () => {
    expect(nestingDepth('{"a":"[[[[{{{{","b":[1,[2]]}', 10)).toBe(3);
    expect(nestingDepth('{"a":"\\"[[["}', 10)).toBe(1);
    expect(nestingDepth('['.repeat(1_000_000), MAX_JSON_DEPTH)).toBe(MAX_JSON_DEPTH + 1);
  });

  it('gunzips within the limit and refuses more', async () => {
    await expect(parse(request({ 'content-encoding': 'gzip' }), gzipSync('{"a":1}'))).resolves.toEqual({
      a: 1,
    });
    await expect(
      parse(request({ 'content-encoding': 'GZIP' }), gzipSync(`[${' '.repeat(2_000)}]`)),
    ).rejects.toMatchObject({ status: 413 });
    await expect(parse(request({ 'content-encoding': 'deflate' }), Buffer.from('{}'))).rejects.toMatchObject({
      status: 415,
    });
  });

  it('refuses __proto__ as a key, not as a value', async () => {
    await expect(parse(request(), Buffer.from('{"a":[{"__proto__":1}]}'))).rejects.toMatchObject({
      status: 400,
    });
    await expect(parse(request(), Buffer.from('{"a":"\\"__proto__\\": 1"}'))).resolves.toEqual({
      a: '"__proto__": 1',
    });
  });
});
