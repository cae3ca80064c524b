import { TallyConfigError } from '../errors/index.js';

/**
 * The subset of JSONPath (RFC 9535) that meters use to pick a value or group-by key out of an event's
 * `data` (OpenMeter style, `$.tokens`): the root `$`, member names (`.a`, `['a b']`, `["x"]`) and
 * array indexes (`[0]`, `[-1]` = last). Anything that could select more than one node (wildcards,
 * `..`, filters, slices, unions) is rejected when the meter is compiled, so evaluation is a plain walk.
 *
 * As in RFC 9535, a member name selects only from a non-array object and an index only from an
 * array, and only own properties are read: `$.constructor`, `$.__proto__` or `$.a.length` give
 * undefined.
 */

/** Reads one value out of an event's data; undefined when the path does not exist. */
export type JsonPathAccessor = (root: unknown) => unknown;

/** A member name (string) or an array index (number, negative counts from the end). */
type Segment = string | number;

/** Compiles `path` once; the returned accessor walks pre-split segments and never parses. */
export function compileJsonPath(path: string, field = 'valueProperty'): JsonPathAccessor {
  const segments = parseJsonPath(path, field);
  if (segments.length === 0) return (root) => root;
  if (segments.length === 1) {
    const only = segments[0]!;
    return typeof only === 'string' ? (root) => member(root, only) : (root) => element(root, only);
  }
  return (root) => {
    let node = root;
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i]!;
      node = typeof seg === 'string' ? member(node, seg) : element(node, seg);
      if (node === undefined) return undefined;
    }
    return node;
  };
}

function member(node: unknown, name: string): unknown {
  if (typeof node !== 'object' || node === null || Array.isArray(node)) return undefined;
  return Object.hasOwn(node, name) ? (node as Record<string, unknown>)[name] : undefined;
}

function element(node: unknown, index: number): unknown {
  if (!Array.isArray(node)) return undefined;
  const i = index < 0 ? node.length + index : index;
  // hasOwn also skips holes, which would otherwise read Array.prototype.
  return i >= 0 && Object.hasOwn(node, i) ? (node[i] as unknown) : undefined;
}

/** Characters that end a dot-notation member name or may not appear in one. */
const NAME_STOP = new Set(['.', '[', ']', '*', '?', '(', ')', '@', ',', ':', "'", '"', '\\', '$', ' ']);

function parseJsonPath(path: string, field: string): Segment[] {
  const fail = (reason: string, at: number): never => {
    throw new TallyConfigError(
      field,
      `invalid JSONPath ${JSON.stringify(path)}: ${reason} at position ${at}`,
    );
  };
  if (typeof path !== 'string') {
    throw new TallyConfigError(field, `expected a JSONPath string such as "$.tokens", got ${typeof path}`);
  }
  if (path[0] !== '$') fail('must start with "$"', 0);
  const segments: Segment[] = [];
  let i = 1;
  while (i < path.length) {
    const c = path[i];
    if (c === '.') {
      if (path[i + 1] === '.') fail('recursive descent ".." is not supported', i);
      const start = ++i;
      while (i < path.length && !isNameStop(path[i]!)) i++;
      if (i === start) {
        if (path[i] === '*') fail('wildcards are not supported', i);
        fail('empty member name', i);
      }
      if (i < path.length && path[i] !== '.' && path[i] !== '[') {
        fail(path[i] === '*' ? 'wildcards are not supported' : `unexpected ${JSON.stringify(path[i])}`, i);
      }
      segments.push(path.slice(start, i));
    } else if (c === '[') {
      i = parseBracket(path, i + 1, segments, fail);
    } else {
      fail(`unexpected ${JSON.stringify(c)}, expected "." or "["`, i);
    }
  }
  return segments;
}

function isNameStop(ch: string): boolean {
  return NAME_STOP.has(ch) || ch.charCodeAt(0) <= 0x20;
}

/** Parses the inside of `[...]` starting at `i` (just after `[`); returns the index after `]`. */
function parseBracket(
  path: string,
  i: number,
  segments: Segment[],
  fail: (reason: string, at: number) => never,
): number {
  const c = path[i];
  if (c === "'" || c === '"') {
    let name = '';
    let j = i + 1;
    for (;;) {
      const ch = path[j];
      if (ch === undefined) fail('unterminated string', i);
      if (ch === c) break;
      if (ch === '\\') {
        const escaped = path[j + 1];
        if (escaped !== '\\' && escaped !== "'" && escaped !== '"') fail('unsupported escape in string', j);
        name += escaped;
        j += 2;
      } else {
        name += ch;
        j += 1;
      }
    }
    if (name === '') fail('empty member name', i);
    j += 1;
    if (path[j] === ',') fail('unions are not supported', j);
    if (path[j] !== ']') fail('expected "]"', j);
    segments.push(name);
    return j + 1;
  }
  if (c === '*') fail('wildcards are not supported', i);
  if (c === '?') fail('filters are not supported', i);
  if (c === ']') fail('empty brackets', i);
  if (c === ':') fail('slices are not supported', i);
  let j = i;
  if (path[j] === '-') j++;
  const digitsStart = j;
  while (j < path.length && path.charCodeAt(j) >= 48 && path.charCodeAt(j) <= 57) j++;
  if (j === digitsStart) fail(`unexpected ${JSON.stringify(path[j] ?? 'end of path')} in brackets`, j);
  const text = path.slice(i, j);
  if (path[j] === ':') fail('slices are not supported', j);
  if (path[j] === ',') fail('unions are not supported', j);
  if (path[j] !== ']') fail('expected "]"', j);
  if ((path[digitsStart] === '0' && j - digitsStart > 1) || text === '-0')
    fail('index has a leading zero', i);
  const index = Number(text);
  if (!Number.isSafeInteger(index)) fail('index out of range', i);
  segments.push(index);
  return j + 1;
}
