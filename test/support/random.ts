import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';

/**
 * Seeded pseudo-random numbers in [0, 1) (pure-rand's xoroshiro128+), so a failing test or a bench run
 * reproduces from its seed. The one PRNG of the tests and the bench; property tests use fast-check.
 */
export function random(seed: number): () => number {
  const rng = xoroshiro128plus(seed);
  return () => uniformFloat64(rng);
}
