import { describe, expect, it } from 'vitest';
import { partitionOf } from '../../../src/index.js';

describe('partitionOf', () => {
  it('is CRC-32 (as in zlib, of the UTF-8 bytes) modulo the partition count', () => {
    // CRC-32 check value: crc32("123456789") = 0xCBF43926 = 3421780262.
    expect(partitionOf('123456789', 1000)).toBe(3421780262 % 1000);
    expect(partitionOf('123456789', 7)).toBe(3421780262 % 7);
    expect(partitionOf('customer-42', 1)).toBe(0);
  });

  it('spreads subjects over all partitions', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) seen.add(partitionOf(`customer-${i}`, 8));
    expect([...seen].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('matches zlib for UTF-8 subjects', async () => {
    const zlib = (await import('node:zlib')) as { crc32?: (s: string) => number };
    // Node 22.2+ has zlib.crc32; on Node 20 compare with a bitwise reference instead.
    const reference = (s: string) => {
      let crc = 0xffffffff;
      for (const byte of Buffer.from(s, 'utf8')) {
        crc ^= byte;
        for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
      }
      return (crc ^ 0xffffffff) >>> 0;
    };
    for (const s of ['é', 'kunde-ü-7', '顧客-1', 'customer-42']) {
      const expected = (zlib.crc32 ? zlib.crc32(s) : reference(s)) % 97;
      expect(partitionOf(s, 97)).toBe(expected);
    }
  });
});
