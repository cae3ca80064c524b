import { describe, expect, it } from 'vitest';
import { TallyConfigError, TallyValidationError } from '../../../src/errors/index.js';
import {
  SCALED_MAX,
  VALUE_SCALE,
  divideScaled,
  formatScaled,
  toScaled,
  toScaledString,
} from '../../../src/meters/decimal.js';

describe('toScaled', () => {
  it.each([
    [0, 0n],
    [-0, 0n],
    [1, 1_000_000n],
    [-3, -3_000_000n],
    [0.1, 100_000n],
    [0.2 + 0.1, 300_000n], // 0.30000000000000004: rounds at the 6th digit
    [12.5, 12_500_000n],
    [12345.678, 12_345_678_000n],
    [9_007_199_254, 9_007_199_254_000_000n],
    [9_007_199_255, 9_007_199_255_000_000n],
    [1e12, 1_000_000_000_000_000_000n],
    [1e-7, 0n],
    [1.5e-6, 2n],
    [-1.5e-6, -2n],
    [123.456789, 123_456_789n],
    ['123', 123_000_000n],
    ['-3', -3_000_000n],
    ['+4', 4_000_000n],
    ['12.5', 12_500_000n],
    ['0.000001', 1n],
    ['.5', 500_000n],
    ['5.', 5_000_000n],
    ['007', 7_000_000n],
    ['1e3', 1_000_000_000n],
    ['1E3', 1_000_000_000n],
    ['1.5e-3', 1_500n],
    ['-2.5e+2', -250_000_000n],
    ['0e999999999999', 0n],
    ['1e-999999999999', 0n],
    ['123456789012.345678', 123_456_789_012_345_678n],
    [5n, 5_000_000n],
  ])('%s -> %s', (input, expected) => {
    expect(toScaled(input)).toBe(expected);
    expect(toScaledString(input)).toBe(expected.toString());
  });

  it('rounds half to even at the 6th fractional digit', () => {
    expect(toScaled('0.0000005')).toBe(0n);
    expect(toScaled('0.0000015')).toBe(2n);
    expect(toScaled('0.0000025')).toBe(2n);
    expect(toScaled('0.0000035')).toBe(4n);
    expect(toScaled('0.00000250000001')).toBe(3n);
    expect(toScaled('0.0000024999999')).toBe(2n);
    expect(toScaled('-0.0000025')).toBe(-2n);
    expect(toScaled('-0.0000035')).toBe(-4n);
    expect(toScaled('-0.0000005')).toBe(0n);
    expect(toScaledString('-0.0000005')).toBe('0');
    expect(toScaled('1.9999995')).toBe(2_000_000n);
    expect(toScaled('9.9999999')).toBe(10_000_000n);
    expect(toScaled(5e-7)).toBe(0n);
    expect(toScaled(123.4567895)).toBe(123_456_790n);
  });

  it('accepts exactly int64 and rejects anything beyond', () => {
    expect(toScaled('9223372036854.775807')).toBe(SCALED_MAX);
    expect(toScaled('-9223372036854.775807')).toBe(-SCALED_MAX);
    expect(toScaled('9223372036854.775808')).toBeUndefined();
    expect(toScaled('-9223372036854.775808')).toBeUndefined();
    expect(toScaled('9223372036854.7758074')).toBe(SCALED_MAX);
    expect(toScaled('9223372036854.7758075')).toBeUndefined(); // rounds up past the max
    expect(toScaled('10000000000000')).toBeUndefined();
    expect(toScaled(1e13)).toBeUndefined();
    expect(toScaled(1.5e21)).toBeUndefined();
    expect(toScaled(Number.MAX_VALUE)).toBeUndefined();
    expect(toScaled('1e999999999999')).toBeUndefined();
    expect(toScaled(10_000_000_000_000n)).toBeUndefined();
  });

  it.each([
    '',
    ' 1',
    '1 ',
    '\t1',
    '0x10',
    '0b1',
    '1_000',
    'Infinity',
    '-Infinity',
    'NaN',
    '-',
    '+',
    '.',
    '1e',
    '1e+',
    'e5',
    '1.2.3',
    '--1',
    '+-1',
    '1,5',
    '１',
    NaN,
    Infinity,
    -Infinity,
    true,
    false,
    null,
    undefined,
    {},
    [],
    [1],
    { valueOf: () => 1 },
  ] as unknown[])('rejects %j', (input) => {
    expect(toScaled(input)).toBeUndefined();
    expect(toScaledString(input)).toBeUndefined();
  });

  it('round-trips random values with up to 6 decimals', () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed / 2_147_483_648;
    };
    const failures: unknown[] = [];
    for (let i = 0; i < 50_000; i++) {
      const decimals = Math.floor(random() * 7);
      const n = Number(((random() - 0.5) * 2e6).toFixed(decimals));
      const scaled = toScaled(n);
      const ok =
        scaled !== undefined &&
        Number(formatScaled(scaled)) === n &&
        toScaled(String(n)) === scaled &&
        toScaled(formatScaled(scaled)) === scaled &&
        toScaledString(n) === scaled.toString() &&
        toScaledString(String(n)) === scaled.toString() &&
        toScaledString(n.toFixed(decimals)) === scaled.toString();
      if (!ok) failures.push(n);
    }
    expect(failures).toEqual([]);
  });
});

describe('formatScaled', () => {
  it.each([
    [0n, '0'],
    ['0', '0'],
    ['-0', '0'],
    [1n, '0.000001'],
    [-1n, '-0.000001'],
    [100_000n, '0.1'],
    ['100000000000', '100000'],
    [-2_500_000n, '-2.5'],
    ['12345678000', '12345.678'],
    ['000123000000', '123'],
    [SCALED_MAX, '9223372036854.775807'],
    [-SCALED_MAX - 1n, '-9223372036854.775808'],
  ])('%s -> %s', (input, expected) => {
    expect(formatScaled(input)).toBe(expected);
  });

  it('honours another scale', () => {
    expect(formatScaled(12_345n, 2)).toBe('123.45');
    expect(formatScaled(12_300n, 2)).toBe('123');
    expect(formatScaled(5n, 3)).toBe('0.005');
    expect(formatScaled(5n, 0)).toBe('5');
  });

  it.each(['', '-', '1.5', '1e3', ' 1', '+1', 'abc', '0x1'])('rejects %j', (input) => {
    expect(() => formatScaled(input)).toThrow(TallyValidationError);
  });

  it('rejects a bad scale', () => {
    expect(() => formatScaled(1n, -1)).toThrow(TallyConfigError);
    expect(() => formatScaled(1n, 1.5)).toThrow(TallyConfigError);
  });
});

describe('exact sums', () => {
  it('adds 0.1 a million times to exactly 100000', () => {
    const step = toScaled(0.1)!;
    let sum = 0n;
    for (let i = 0; i < 1_000_000; i++) sum += step;
    expect(formatScaled(sum)).toBe('100000');
    let float = 0;
    for (let i = 0; i < 1_000_000; i++) float += 0.1;
    expect(float).not.toBe(100000); // what the scaled integers protect against
  });

  it('sums mixed inputs exactly', () => {
    const values = ['0.1', 0.2, '-0.3', 1e-6, '2.000001', 7];
    const sum = values.reduce<bigint>((acc, v) => acc + toScaled(v)!, 0n);
    expect(formatScaled(sum)).toBe('9.000002');
  });
});

describe('divideScaled', () => {
  it('divides and rounds half to even at the scale', () => {
    expect(divideScaled(toScaled('10')!, 4)).toBe('2.5');
    expect(divideScaled('10000000', 3)).toBe('3.333333');
    expect(divideScaled('20000000', 3)).toBe('6.666667');
    expect(divideScaled(5n, 2)).toBe('0.000002'); // 2.5 micro -> 2
    expect(divideScaled(7n, 2)).toBe('0.000004'); // 3.5 micro -> 4
    expect(divideScaled(-5n, 2)).toBe('-0.000002');
    expect(divideScaled(-7n, 2)).toBe('-0.000004');
    expect(divideScaled(-1n, 3)).toBe('0');
    expect(divideScaled(0n, 5n)).toBe('0');
    expect(divideScaled(SCALED_MAX, 1)).toBe('9223372036854.775807');
    expect(divideScaled(100_000_000_000n, 1_000_000)).toBe('0.1');
    expect(divideScaled(12_345n, 1, 2)).toBe('123.45');
  });

  it('rejects a non-positive or non-integer count and a bad sum', () => {
    expect(() => divideScaled(1n, 0)).toThrow(TallyValidationError);
    expect(() => divideScaled(1n, -1n)).toThrow(TallyValidationError);
    expect(() => divideScaled(1n, 1.5)).toThrow(TallyValidationError);
    expect(() => divideScaled('0x10', 1)).toThrow(TallyValidationError);
  });

  it('uses scale 6 by default', () => {
    expect(VALUE_SCALE).toBe(6);
  });
});
