import { describe, expect, it } from 'vitest';
import { TallyConfigError } from '../../../src/errors/index.js';
import { compileJsonPath } from '../../../src/meters/json-path.js';

const data = {
  tokens: 42,
  model: { name: 'gpt', 'context size': 8192, 'a.b': 1, "it's": 2, 'say "hi"': 3 },
  list: [10, 20, { deep: [1, 2, 3] }],
  nothing: null,
  zero: 0,
  empty: '',
  'x-request-id': 'abc',
};

describe('compileJsonPath', () => {
  it.each([
    ['$', data],
    ['$.tokens', 42],
    ['$.model.name', 'gpt'],
    ["$['tokens']", 42],
    ['$["tokens"]', 42],
    ["$.model['context size']", 8192],
    ["$['model']['a.b']", 1],
    ["$.model['it\\'s']", 2],
    ['$.model["say \\"hi\\""]', 3],
    ['$.list[0]', 10],
    ['$.list[1]', 20],
    ['$.list[-1].deep[-1]', 3],
    ['$.list[-3]', 10],
    ['$.list[2].deep[0]', 1],
    ['$.nothing', null],
    ['$.zero', 0],
    ['$.empty', ''],
    ['$.x-request-id', 'abc'],
  ])('%s', (path, expected) => {
    expect(compileJsonPath(path)(data)).toEqual(expected);
  });

  it.each([
    '$.missing',
    '$.tokens.value',
    '$.model.name.length',
    '$.nothing.x',
    '$.list[3]',
    '$.list[-4]',
    '$.list.length',
    "$.list['0']",
    '$.model[0]',
    '$.missing[0].x',
    '$.empty[0]',
  ])('%s -> undefined', (path) => {
    expect(compileJsonPath(path)(data)).toBeUndefined();
  });

  it('never reads inherited properties', () => {
    for (const path of [
      '$.constructor',
      '$.__proto__',
      '$.toString',
      '$.hasOwnProperty',
      "$['__proto__']",
      '$.a.constructor',
    ]) {
      expect(compileJsonPath(path)({ a: {} })).toBeUndefined();
    }
    const parsed = JSON.parse('{"__proto__": 5, "constructor": 6}') as unknown;
    expect(compileJsonPath('$.__proto__')(parsed)).toBe(5);
    expect(compileJsonPath('$.constructor')(parsed)).toBe(6);
    const inherited = Object.create({ tokens: 1 }) as object;
    expect(compileJsonPath('$.tokens')(inherited)).toBeUndefined();
    // eslint-disable-next-line no-sparse-arrays
    const holes = [, 2];
    expect(compileJsonPath('$[0]')(holes)).toBeUndefined();
    expect(compileJsonPath('$[1]')(holes)).toBe(2);
  });

  it('returns undefined for a non-object root', () => {
    for (const root of [undefined, null, 5, 'str', true]) {
      expect(compileJsonPath('$.a')(root)).toBeUndefined();
      expect(compileJsonPath('$[0]')(root)).toBeUndefined();
      expect(compileJsonPath('$.a.b')(root)).toBeUndefined();
    }
    expect(compileJsonPath('$[0]')(['x'])).toBe('x');
  });

  it.each([
    ['', 'start with "$"'],
    ['tokens', 'start with "$"'],
    ['.tokens', 'start with "$"'],
    ['$tokens', 'unexpected'],
    ['$.', 'empty member name'],
    ['$.a.', 'empty member name'],
    ['$.a.[0]', 'empty member name'],
    ['$..a', 'recursive descent'],
    ['$.a..b', 'recursive descent'],
    ['$.*', 'wildcards'],
    ['$.a.*', 'wildcards'],
    ['$[*]', 'wildcards'],
    ['$.a*', 'wildcards'],
    ['$.a[?(@.b > 1)]', 'filters'],
    ['$[?@.b]', 'filters'],
    ['$.a[0:2]', 'slices'],
    ['$.a[:2]', 'slices'],
    ['$.a[0,1]', 'unions'],
    ["$['a','b']", 'unions'],
    ['$[]', 'empty brackets'],
    ["$['']", 'empty member name'],
    ["$['a'", 'expected "]"'],
    ["$['a", 'unterminated'],
    ['$[0', 'expected "]"'],
    ['$[01]', 'leading zero'],
    ['$[-0]', 'leading zero'],
    ['$[a]', 'in brackets'],
    ['$[99999999999999999999]', 'out of range'],
    ['$ .a', 'unexpected'],
    ['$.a b', 'unexpected'],
    ["$['a\\n']", 'escape'],
    ['$.a]', 'unexpected'],
    ['$.a(b)', 'unexpected'],
  ])('rejects %j (%s)', (path, reason) => {
    let err: unknown;
    try {
      compileJsonPath(path, 'meters[2].valueProperty');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TallyConfigError);
    expect(err).toMatchObject({ field: 'meters[2].valueProperty' });
    expect((err as Error).message).toContain(reason);
    expect((err as Error).message).toContain(JSON.stringify(path));
  });

  it('defaults the field to valueProperty and rejects a non-string path', () => {
    expect(() => compileJsonPath('x')).toThrow(/^valueProperty: /);
    expect(() => compileJsonPath(5 as unknown as string)).toThrow(TallyConfigError);
  });
});
