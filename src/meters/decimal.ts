import { TallyConfigError, TallyValidationError } from '../errors/index.js';

/**
 * Exact decimal arithmetic for SUM/AVG/MIN/MAX values: a value is stored as a signed int64 count of
 * 10^-VALUE_SCALE units (micro-units), so Redis can add them with HINCRBY and a million additions of
 * 0.1 give exactly 100000. A JS number is taken as its shortest round-trip decimal form (String(n)),
 * the value the producer meant; the arithmetic shortcut for common numbers is proven to agree (see
 * `scale`).
 *
 * Rounding: a value with more than VALUE_SCALE fractional digits is rounded half to even at the last
 * kept digit (banker's rounding: 0.0000005 -> 0, 0.0000015 -> 0.000002, 0.0000025 -> 0.000002), so
 * rounding errors do not drift one way over many events.
 */
export const VALUE_SCALE = 6;

/** The largest scaled value (int64 max); results beyond +-SCALED_MAX are rejected. */
export const SCALED_MAX = 9223372036854775807n;

const INT64_MAX_DIGITS = '9223372036854775807';
/** Below this (2^31), the arithmetic fast path for JS numbers is exact (see `scale`). */
const FAST_NUMBER_LIMIT = 2_147_483_648;
/** Largest |integer| n for which n * 1e6 is still a safe integer (floor(2^53 / 1e6)). */
const MAX_FAST_INTEGER = 9_007_199_254;
const POW10 = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000] as const;
const ZEROS = ['', '0', '00', '000', '0000', '00000', '000000'] as const;
/** Exponents beyond this are clamped: the value is then certainly out of range or rounds to zero. */
const MAX_EXPONENT = 1_000_000_000;

/**
 * The value in micro-units as a bigint, or undefined if it is not a number we accept: a finite JS
 * number, a bigint, or a numeric string (`12.5`, `-3`, `1e3`, `.5`; no whitespace, hex, `Infinity`,
 * underscores or empty string). Out of int64 range -> undefined.
 */
export function toScaled(value: unknown): bigint | undefined {
  const scaled = scale(value);
  if (scaled === undefined) return undefined;
  return BigInt(scaled);
}

/**
 * Same as {@link toScaled} but returns the canonical decimal integer string (optional `-`, no leading
 * zeros), which is what goes to Redis (HINCRBY, Lua ARGV). About as fast as `toScaled(v)?.toString()`
 * for numbers and ~2x faster for numeric strings, which are rewritten from their own digits.
 */
export function toScaledString(value: unknown): string | undefined {
  // A numeric string can usually be rewritten in place ("12.5" -> "12" + "5" + "00000").
  const scaled = typeof value === 'string' ? parseDecimal(value, true) : scale(value);
  return typeof scaled === 'number' ? safeIntegerToString(scaled) : scaled;
}

/**
 * String(n) of a safe integer, fast: V8 converts a non-Smi number with its general double-to-string
 * algorithm (~250 ns on Node 20); going through BigInt is ~4x cheaper.
 */
function safeIntegerToString(n: number): string {
  return n <= 1_073_741_823 && n >= -1_073_741_824 ? String(n) : BigInt(n).toString();
}

/** Scaled value as a safe integer when that is exact, else a canonical integer string. */
function scale(value: unknown): number | string | undefined {
  if (typeof value === 'number') {
    if (value < FAST_NUMBER_LIMIT && value > -FAST_NUMBER_LIMIT) {
      // String(n) costs ~250 ns for a fractional double, so try the arithmetic first. If r / 1e6
      // (correctly rounded) gives back n, the decimal r * 10^-6 round-trips to n; below 2^31 two
      // decimals with <= 6 fractional digits are >= 1e-6 apart, more than an ulp of n, so r * 10^-6 is
      // the only such decimal and thus n's shortest representation: r is exact. Otherwise n's
      // shortest form has more than 6 fractional digits and needs rounding: take the string path.
      const r = Math.round(value * 1_000_000);
      if (r / 1_000_000 === value) return r === 0 ? 0 : r;
    } else if (Number.isInteger(value) && value <= MAX_FAST_INTEGER && value >= -MAX_FAST_INTEGER) {
      return value * 1_000_000;
    }
    if (!Number.isFinite(value)) return undefined;
    return parseDecimal(String(value), false);
  }
  if (typeof value === 'string') return parseDecimal(value, false);
  if (typeof value === 'bigint')
    return fromDigits(value < 0n, (value < 0n ? -value : value).toString(), VALUE_SCALE);
  return undefined;
}

/**
 * Parses `[+-]digits[.digits][e[+-]digits]` in a single charCodeAt pass (no regex). With `asString`,
 * a short plain decimal comes back as the canonical string built from the input's own digits.
 */
function parseDecimal(s: string, asString: boolean): number | string | undefined {
  const len = s.length;
  let i = 0;
  let negative = false;
  let c = s.charCodeAt(0);
  if (c === 45 /* - */) {
    negative = true;
    i = 1;
  } else if (c === 43 /* + */) {
    i = 1;
  }
  const intStart = i;
  let intValue = 0;
  while (i < len) {
    c = s.charCodeAt(i);
    if (c < 48 || c > 57) break;
    intValue = intValue * 10 + (c - 48);
    i++;
  }
  const intDigits = i - intStart;
  let fracStart = i;
  let fracDigits = 0;
  let fracValue = 0;
  if (i < len && s.charCodeAt(i) === 46 /* . */) {
    fracStart = ++i;
    while (i < len) {
      c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      if (fracDigits < VALUE_SCALE) fracValue = fracValue * 10 + (c - 48);
      fracDigits++;
      i++;
    }
  }
  if (intDigits + fracDigits === 0) return undefined;

  let exponent = 0;
  if (i < len) {
    c = s.charCodeAt(i);
    if (c !== 101 /* e */ && c !== 69 /* E */) return undefined;
    i++;
    let expNegative = false;
    c = s.charCodeAt(i);
    if (c === 45 || c === 43) {
      expNegative = c === 45;
      i++;
    }
    const expStart = i;
    while (i < len) {
      c = s.charCodeAt(i);
      if (c < 48 || c > 57) return undefined;
      if (exponent < MAX_EXPONENT) exponent = exponent * 10 + (c - 48);
      i++;
    }
    if (i === expStart) return undefined;
    if (expNegative) exponent = -exponent;
  } else if (intDigits <= 9 && fracDigits <= VALUE_SCALE) {
    // Common case: at most 9 integer digits, so the result stays below 2^53 and is exact.
    if (asString && intValue !== 0 && s.charCodeAt(intStart) !== 48 /* no leading zero */) {
      const head =
        negative || intStart === 0
          ? s.slice(0, intStart + intDigits)
          : s.slice(intStart, intStart + intDigits);
      return fracDigits === 0
        ? head + ZEROS[VALUE_SCALE]
        : head + s.slice(fracStart, fracStart + fracDigits) + ZEROS[VALUE_SCALE - fracDigits]!;
    }
    const v = intValue * 1_000_000 + fracValue * POW10[VALUE_SCALE - fracDigits]!;
    return negative && v !== 0 ? -v : v;
  }

  const mantissa = s.slice(intStart, intStart + intDigits) + s.slice(fracStart, fracStart + fracDigits);
  return fromDigits(negative, mantissa, exponent - fracDigits + VALUE_SCALE);
}

/** Scales `negative? digits * 10^shift` to an integer (half-even), checking the int64 range. */
function fromDigits(negative: boolean, digits: string, shift: number): number | string | undefined {
  let first = 0;
  while (first < digits.length && digits.charCodeAt(first) === 48) first++;
  if (first === digits.length) return 0;
  const m = first === 0 ? digits : digits.slice(first);
  const len = m.length;

  let result: string;
  if (shift >= 0) {
    if (len + shift > INT64_MAX_DIGITS.length) return undefined;
    result = m + '0'.repeat(shift);
  } else {
    const drop = -shift;
    // More dropped digits than m has: the dropped part is < 0.1 of a unit, rounds to zero.
    if (drop > len) return 0;
    const kept = m.slice(0, len - drop);
    const firstDropped = m.charCodeAt(len - drop);
    let roundUp: boolean;
    if (firstDropped !== 53 /* 5 */) {
      roundUp = firstDropped > 53;
    } else {
      let restNonZero = false;
      for (let j = len - drop + 1; j < len; j++) {
        if (m.charCodeAt(j) !== 48) {
          restNonZero = true;
          break;
        }
      }
      // Exactly half: round to the even neighbour.
      roundUp = restNonZero || (kept.length > 0 && (kept.charCodeAt(kept.length - 1) - 48) % 2 === 1);
    }
    if (roundUp) result = (BigInt(kept === '' ? '0' : kept) + 1n).toString();
    else if (kept === '') return 0;
    else result = kept;
  }

  if (result.length > INT64_MAX_DIGITS.length) return undefined;
  if (result.length === INT64_MAX_DIGITS.length && result > INT64_MAX_DIGITS) return undefined;
  if (result.length <= 15) {
    const v = Number(result);
    return negative ? -v : v;
  }
  return negative ? `-${result}` : result;
}

/**
 * A scaled integer (bigint or canonical decimal string, as HGET returns it) as a canonical decimal:
 * `100000`, `0.1`, `-2.5`; no trailing zeros, no exponent, `0` for zero.
 */
export function formatScaled(v: bigint | string, scale: number = VALUE_SCALE): string {
  checkScale(scale);
  const text = typeof v === 'bigint' ? v.toString() : v;
  const negative = text.charCodeAt(0) === 45;
  let i = negative ? 1 : 0;
  if (i === text.length) throw invalidScaled(v);
  for (let j = i; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c < 48 || c > 57) throw invalidScaled(v);
  }
  while (i < text.length - 1 && text.charCodeAt(i) === 48) i++;
  let digits = text.slice(i);
  if (digits === '0') return '0';
  if (digits.length <= scale) digits = digits.padStart(scale + 1, '0');
  const intPart = digits.slice(0, digits.length - scale);
  let end = digits.length;
  while (end > intPart.length && digits.charCodeAt(end - 1) === 48) end--;
  const fraction = digits.slice(intPart.length, end);
  const sign = negative ? '-' : '';
  return fraction === '' ? sign + intPart : `${sign}${intPart}.${fraction}`;
}

/**
 * `sum / count` as a canonical decimal, for AVG: `sum` is a scaled integer with `scale` fractional
 * digits, and the quotient is rounded half to even to the same `scale` digits. `count` must be a
 * positive integer.
 */
export function divideScaled(
  sum: bigint | string,
  count: bigint | number,
  scale: number = VALUE_SCALE,
): string {
  checkScale(scale);
  let divisor: bigint;
  if (typeof count === 'bigint') divisor = count;
  else if (Number.isSafeInteger(count)) divisor = BigInt(count);
  else
    throw new TallyValidationError('invalid-count', `count must be a positive integer, got ${String(count)}`);
  if (divisor <= 0n)
    throw new TallyValidationError('invalid-count', `count must be a positive integer, got ${String(count)}`);
  // Parse through formatScaled's validation rules: a canonical-ish integer string.
  if (typeof sum === 'string') formatScaled(sum, 0);
  const dividend = typeof sum === 'bigint' ? sum : BigInt(sum);
  const negative = dividend < 0n;
  const abs = negative ? -dividend : dividend;
  let quotient = abs / divisor;
  const twiceRemainder = (abs % divisor) * 2n;
  if (twiceRemainder > divisor || (twiceRemainder === divisor && quotient % 2n === 1n)) quotient += 1n;
  return formatScaled(negative ? -quotient : quotient, scale);
}

function checkScale(scale: number): void {
  if (!Number.isSafeInteger(scale) || scale < 0 || scale > 100) {
    throw new TallyConfigError('scale', `must be an integer in 0..100, got ${scale}`);
  }
}

function invalidScaled(v: bigint | string): TallyValidationError {
  return new TallyValidationError(
    'invalid-scaled-value',
    `not a scaled integer: ${JSON.stringify(String(v))}`,
  );
}
