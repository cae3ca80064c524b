/** Which Redis failures a partition waits out rather than turning entries into poison. */
import { ReplyError } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { isOwnWrongType, isTransientRedisError } from '../../../src/worker/errors.js';

// ioredis types ReplyError loosely (redis-errors): construct it through a typed view.
const Reply = ReplyError as unknown as new (message: string) => Error;

function reply(message: string, command: string): Error {
  const err = new Reply(message);
  Object.assign(err, { command: { name: command, args: [] } });
  return err;
}

describe('worker error classes', () => {
  const wrongType = 'WRONGTYPE Operation against a key holding the wrong kind of value';

  it('takes WRONGTYPE from a script (the partition\'s own keys) as "not now", also wrapped', () => {
    expect(isOwnWrongType(reply(`${wrongType} script: abc, on @user_script:12.`, 'evalsha'))).toBe(true);
    const wrapped = new Error('applyBatch: WRONGTYPE ...', {
      cause: reply(`${wrongType} script: abc`, 'evalsha'),
    });
    expect(isOwnWrongType(wrapped)).toBe(true);
    // Not in the transient class itself: only applying a partition's own batch waits it out.
    expect(isTransientRedisError(wrapped)).toBe(false);
  });

  it('leaves WRONGTYPE of a forward into another partition, and other script errors, to the poison path', () => {
    expect(isOwnWrongType(reply(wrongType, 'xadd'))).toBe(false);
    expect(
      isOwnWrongType(reply('ERR user_script:3: attempt to perform arithmetic on a nil value', 'evalsha')),
    ).toBe(false);
    expect(isOwnWrongType(new RangeError('Maximum call stack size exceeded'))).toBe(false);
  });
});
