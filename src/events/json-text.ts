/**
 * Working on JSON text without parsing and re-serializing it: the exact text of each element of a
 * batch entry's array, and an event with a `time` added. Dead letters and forwarded copies of one
 * event of a batch entry are built this way, so they keep the producer's exact bytes and work at any
 * nesting depth (JSON.stringify throws a RangeError on a value nested about 10,000 levels deep; these
 * scanners are loops, not recursion).
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** Index of the quote that closes the string opening at `open`, or -1. */
function endOfString(text: string, open: number): number {
  for (let i = open + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === BACKSLASH) i++;
    else if (c === QUOTE) return i;
  }
  return -1;
}

/**
 * Where each element of the JSON array `text` is: `[start, end)` character offsets, whitespace
 * around elements excluded; undefined when `text` is not a well-formed JSON array. Meant for text
 * that JSON.parse accepted.
 */
export function jsonArrayRanges(text: string): [start: number, end: number][] | undefined {
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== OPEN_BRACKET) return undefined;
  const out: [number, number][] = [];
  let depth = 0;
  let start = -1;
  let last = -1;
  for (i++; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (isSpace(c)) continue;
    if (depth === 0 && (c === COMMA || c === CLOSE_BRACKET)) {
      if (start >= 0) out.push([start, last + 1]);
      else if (c === COMMA || out.length > 0) return undefined; // `[,` or `[1,]`
      start = -1;
      if (c === CLOSE_BRACKET) return skipSpace(text, i + 1) === text.length ? out : undefined;
      continue;
    }
    if (start < 0) start = i;
    if (c === QUOTE) {
      i = endOfString(text, i);
      if (i < 0) return undefined;
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      depth++;
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) {
      if (--depth < 0) return undefined;
    }
    last = i;
  }
  return undefined;
}

/** The exact text of each element of the JSON array `text` (see jsonArrayRanges). */
export function jsonArrayElements(text: string): string[] | undefined {
  return jsonArrayRanges(text)?.map(([start, end]) => text.slice(start, end));
}

/**
 * Character ranges of `text` as 1-based, inclusive UTF-8 byte ranges (what Lua's string.sub takes),
 * in one pass over the text. Ranges must be in order and not overlap.
 */
export function utf8ByteRanges(
  text: string,
  ranges: readonly (readonly [number, number])[],
): [from: number, to: number][] {
  if (Buffer.byteLength(text) === text.length) return ranges.map(([start, end]) => [start + 1, end]);
  let bytes = 0;
  let at = 0;
  return ranges.map(([start, end]) => {
    bytes += Buffer.byteLength(text.slice(at, start));
    const from = bytes + 1;
    bytes += Buffer.byteLength(text.slice(start, end));
    at = end;
    return [from, bytes];
  });
}

/**
 * The JSON object text `text` with a `time` attribute added in front, everything else byte for byte
 * as it was. The caller makes sure the object has no `time` yet (else the copy would hold two).
 * Returns `text` unchanged when it is not an object.
 */
export function withTime(text: string, time: string): string {
  const open = skipSpace(text, 0);
  if (text.charCodeAt(open) !== OPEN_BRACE) return text;
  const empty = text.charCodeAt(skipSpace(text, open + 1)) === CLOSE_BRACE;
  return `${text.slice(0, open + 1)}"time":${JSON.stringify(time)}${empty ? '' : ','}${text.slice(open + 1)}`;
}
