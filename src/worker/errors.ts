import { ReplyError } from 'ioredis';

/**
 * Redis replies that say "not now" rather than "never": retried for as long as they last, and never
 * counted towards an entry's poison attempts. NOPERM is here too: a denied command fails for every
 * entry alike, and bisecting would dead-letter good entries for an operator's mistake. Inside a
 * script, Redis 7.0 words a denied command or key as `ERR The user executing the script can't ...`.
 * WRONGTYPE too: a key of Tally's holding another type (an operator's mistake) fails every entry of the
 * partition alike; dead-lettering them as poison would lose them all, so the partition waits instead
 * (it alone: /readyz and `tally status`, which names the key, say so).
 */
const TRANSIENT_REPLIES =
  /^(?:(?:OOM|LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY|NOREPLICAS|MOVED|ASK|NOPERM|WRONGTYPE)\b|ERR The user executing the script can't)/;

/**
 * True when a failed call says nothing about the entries it carried: no reply at all (the connection
 * dropped, a timeout) or a Redis reply from the list above. A script's own error (a Lua runtime error
 * on some input) and a programming error in Node (RangeError, TypeError...) are not transient:
 * retrying the same entries fails the same way.
 */
export function isTransientRedisError(err: unknown): boolean {
  let cause: unknown = err;
  for (let depth = 0; depth < 5 && cause instanceof Error; depth++) {
    if (cause instanceof ReplyError) return TRANSIENT_REPLIES.test(cause.message);
    if (
      cause instanceof RangeError ||
      cause instanceof TypeError ||
      cause instanceof SyntaxError ||
      cause instanceof ReferenceError
    ) {
      return false;
    }
    cause = cause.cause;
  }
  return true;
}
