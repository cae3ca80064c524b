import CRC32 from 'crc-32';

/**
 * The partition of a subject: CRC-32 (as in zlib, of the UTF-8 bytes) modulo the partition count.
 * Producers in any language must use the same function; a worker forwards a misrouted event to its
 * home partition, so a mistake costs a hop, never a double count.
 */
export function partitionOf(subject: string, partitions: number): number {
  if (partitions <= 1) return 0;
  return (CRC32.str(subject) >>> 0) % partitions;
}
