import type { Logger } from 'pino';
import type { MeterIndex } from '../meters/index.js';
import type { TallyConfig } from '../config/index.js';
import type { RedisClient } from '../redis/index.js';

export interface UsageQueryOptions {
  /** The resolved configuration (`resolveConfig` / `loadConfigFile`). */
  config: TallyConfig;
  /** A connection to use instead of opening one from the config; it is not closed by `close()`. */
  connection?: RedisClient;
  /**
   * The meters as this process follows them in the registry (a RegistryFollower's `index`).
   * @defaultValue the config's meters
   */
  meters?: MeterIndex;
  /**
   * Structured logger.
   * @defaultValue a pino logger at level `LOG_LEVEL` or `info`
   */
  logger?: Logger;
}

/** One usage query (OpenMeter's meter query, over Tally's stored windows). */
export interface UsageQueryParams {
  /** Meter slug. */
  meter: string;
  /** Only these subjects (their home partitions are read); default all subjects of all partitions. */
  subject?: string | readonly string[];
  /** Inclusive start: windows starting at or after it. ISO 8601, epoch ms or Date. */
  from: string | number | Date;
  /** Exclusive end: windows starting before it. */
  to: string | number | Date;
  /**
   * Row window size (MINUTE, HOUR, DAY, a duration dividing a day, or MONTH: calendar months), at
   * least the meter's; rows are aligned in `timeZone`.
   * @defaultValue one row over [from, to)
   */
  windowSize?: string;
  /**
   * IANA zone the row windows are aligned in.
   * @defaultValue the meter's timeZone
   */
  timeZone?: string;
  /**
   * Group-by keys of the meter to split rows by; the others are aggregated away.
   * @defaultValue none
   */
  groupBy?: readonly string[];
  /**
   * Split rows by subject; false aggregates all (selected) subjects into rows whose `subject` is null.
   * @defaultValue true
   */
  bySubject?: boolean;
  /** Only usage whose group-by values are one of these, by key. */
  filter?: Readonly<Record<string, string | readonly string[]>>;
  /** Abandons the query (it rejects) at its next chunk of windows once aborted, e.g. when its client left. */
  signal?: AbortSignal;
}

export interface UsageRow {
  /** ISO 8601 UTC, clipped to [from, to). */
  readonly windowStart: string;
  readonly windowEnd: string;
  /** null when rows are not split by subject (`bySubject: false`). */
  readonly subject: string | null;
  /** The requested group-by keys and their values. */
  readonly groupBy: Readonly<Record<string, string | null>>;
  readonly value: number;
  /** The exact value as a decimal string. */
  readonly valueDecimal: string;
  readonly eventCount: number;
}
