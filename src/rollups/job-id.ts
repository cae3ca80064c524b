import { createHash } from 'node:crypto';

/**
 * The deterministic BullMQ job id of a rollup: adding the same rollup twice (a relay retrying after a
 * crash) is a no-op while the first job is still stored. BullMQ job ids must not contain ':' nor be all
 * digits; meter slugs are [a-z0-9_-], so this never does.
 */
export function rollupJobId(meter: string, windowStartMs: number, group: string, revision: number): string {
  const groupHash = createHash('sha1').update(group).digest('hex').slice(0, 20);
  return `${meter}.${windowStartMs}.${groupHash}.r${revision}`;
}
