--[[
  probe: run once at start (redis/access.ts) to find out whether this Redis user may run Tally's
  scripts: EVALSHA/EVAL, TIME inside a script (every script reads Redis's clock), and access to the
  given key. Writes nothing.

  Input:  KEYS[1] a key the user must be able to access (under Tally's prefix or a BullMQ queue's)
  Output: Redis's clock, epoch milliseconds
]]
local rcall = redis.call
local key = KEYS[1]

--@include now
rcall('EXISTS', key)
return redisNowMs()
