/** Options of the operator tools (`tally status`, `tally dead-letter list|replay`). */

export interface ListDeadLettersOptions {
  /**
   * Only this partition's dead-letter stream.
   * @defaultValue every partition, in order
   */
  partition?: number;
  /** Only dead letters with this reason (`invalid-value`, `late`, `poison`, ...). */
  reason?: string;
  /**
   * At most this many dead letters.
   * @defaultValue 50
   */
  limit?: number;
  /**
   * Continue after this dead letter (`<partition>/<id>`, e.g. the `ref` of the last one of a previous
   * page). Results are ordered by id (arrival), oldest first across partitions, then by partition.
   */
  after?: string;
}

export const defaultListDeadLettersOptions = { limit: 50 } satisfies Partial<ListDeadLettersOptions>;

export interface ReplayDeadLettersOptions {
  /**
   * Dead letters to replay, as `<partition>/<id>`, or bare ids together with `partition`.
   * Exactly one of `ids`, `reason` and `all` selects what to replay.
   */
  ids?: readonly string[];
  /** Replay every dead letter with this reason (of `partition`, or of every partition). */
  reason?: string;
  /** Replay every dead letter (of `partition`, or of every partition). */
  all?: boolean;
  /** The partition of bare `ids`, or the one partition `reason` / `all` look in. */
  partition?: number;
  /**
   * Only report what would be replayed, and where to; write nothing.
   * @defaultValue false
   */
  dryRun?: boolean;
  /**
   * Remove a dead letter (XDEL) once its event is back in the stream; `false` keeps it (`--keep`).
   * @defaultValue true
   */
  delete?: boolean;
  /**
   * The fixed event (JSON text) to replay instead of the dead letter's payload: one dead letter only
   * (one id). Its meter scope stays: a dead letter of one meter is replayed for that meter alone.
   */
  payload?: string;
  /**
   * With `reason` or `all`: replay at most this many.
   * @defaultValue no limit
   */
  limit?: number;
}

export const defaultReplayDeadLettersOptions = {
  dryRun: false,
  delete: true,
  limit: Number.POSITIVE_INFINITY,
} satisfies Partial<ReplayDeadLettersOptions>;
