import { ReplyError } from 'ioredis';

/**
 * Redis replies that say "not now" rather than "never": retried for as long as they last, and never
 * counted towards an entry's poison attempts. NOPERM is here too: a denied command fails for every
 * entry alike, and bisecting would dead-letter good entries for an operator's mistake. Inside a
 * script, Redis 7.0 words a denied command or key as `ERR The user executing the script can't ...`.
 * (WRONGTYPE inside a script too: see isOwnWrongType.)
 */
const TRANSIENT_REPLIES =
  /^(?:(?:OOM|LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY|NOREPLICAS|MOVED|ASK|NOPERM)\b|ERR The user executing the script can't)/;

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

/**
 * WRONGTYPE from a Tally script (applyBatch): one of the partition's own keys holds another type (an
 * operator's mistake). Every entry of the partition fails alike, so it is "not now" for that
 * partition: dead-lettering them as poison would lose them all; the partition waits instead (it
 * alone: /readyz and `tally status`, which names the key, say so). A WRONGTYPE from a plain command
 * (forwarding a misrouted event into another partition's stream) is about that entry only, and may
 * become poison as before, so that a broken key of one partition never stalls another.
 */
export function isOwnWrongType(err: unknown): boolean {
  let cause: unknown = err;
  for (let depth = 0; depth < 5 && cause instanceof Error; depth++) {
    if (cause instanceof ReplyError) {
      const command = (cause as { command?: { name?: string } }).command?.name ?? '';
      return cause.message.startsWith('WRONGTYPE') && /^eval/i.test(command);
    }
    cause = cause.cause;
  }
  return false;
}
