import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { leaseShare, searchOffset } from '../../../src/worker/leases.js';

describe('lease shares', () => {
  it('add up to the partitions, differ by at most one, and the larger shares go to the first ranks', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1024 }),
        fc.integer({ min: 1, max: 300 }),
        (partitions, replicas) => {
          const shares = Array.from({ length: replicas }, (_, rank) =>
            leaseShare(partitions, replicas, rank),
          );
          expect(shares.reduce((a, b) => a + b, 0)).toBe(partitions);
          expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
          expect([...shares].sort((a, b) => b - a)).toEqual(shares);
        },
      ),
    );
  });

  it('start replicas searching at spread-out partitions', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1024 }),
        fc.integer({ min: 1, max: 64 }),
        (partitions, replicas) => {
          const offsets = Array.from({ length: replicas }, (_, rank) =>
            searchOffset(partitions, replicas, rank),
          );
          for (const o of offsets) expect(o >= 0 && o < partitions).toBe(true);
          // Ranks spread out by ⌈P/R⌉ until the offsets wrap around.
          const spread = offsets.filter((_, rank) => rank * Math.ceil(partitions / replicas) < partitions);
          expect(new Set(spread).size).toBe(spread.length);
          expect(spread.length).toBeGreaterThanOrEqual(Math.min(replicas, 1));
        },
      ),
    );
  });
});
