--[[
  closeWindows: close every window of one partition whose close point has passed, writing one rollup
  per (window, group) to the outbox in the same atomic step, and emit pending corrections.

  Two clocks close windows (docs/semantics.md, "When a window closes"):
    watermark   closedThrough = max(closedThrough, min(streamTime, guard, now)), where streamTime is
                the largest event time applied (kept by applyBatch) and guard is the smallest event
                time of the oldest entry read but not yet applied (pending), so the watermark never
                passes an entry a replica holds, a dead replica left behind or a failed apply retries.
                Windows with end + grace <= closedThrough close. It is built from applied events only.
    wall clock  on a quiet partition (nothing pending or undelivered, newest entry idleTimeout old),
                windows with end + grace <= now close too, but the watermark does not move: later
                events are late only for the windows actually emitted, so a backfill after a quiet
                period is not late.

  Guarantees
  - Each (window, group, revision) is written to the outbox exactly once: the window leaves the index
    in the same step, and the revision is stored in the window hash (`r:<group>`).
  - closedThrough only grows and never passes the event time of a pending entry's events (up to the
    jitter inside that entry); applyBatch treats windows closing at or before it, and windows already
    emitted (out of the index, hash kept), as late.
  - Closed windows are kept until end + retention for corrections and queries, then expire.
  - At most ARGV[5] windows and ARGV[6] corrections per call; the reply says whether more remain.

  Input:
    KEYS[1] events stream   KEYS[2] state hash    KEYS[3] window index   KEYS[4] corrections set
    KEYS[5] outbox stream   KEYS[6] partition base `<prefix>:{p<i>}:` (window keys derive from it)
    ARGV[1] consumer group  ARGV[2] grace ms      ARGV[3] idle timeout ms ARGV[4] retention ms
    ARGV[5] max windows     ARGV[6] max corrections

  Output: { closedWindows, rollups, corrections, more (0|1), closedThrough, status }
    status: 'ok', or 'no-group' when the stream or its consumer group does not exist.
]]

--@include streamIds
--@include frontier
--@include eventTime
--@include now

local rcall = redis.call
local eventsKey = KEYS[1]
local stateKey = KEYS[2]
local indexKey = KEYS[3]
local correctionsKey = KEYS[4]
local outboxKey = KEYS[5]
local base = KEYS[6]

local group = ARGV[1]
local graceMs = tonumber(ARGV[2])
local idleMs = tonumber(ARGV[3])
local retentionMs = tonumber(ARGV[4])
local maxWindows = tonumber(ARGV[5])
local maxCorrections = tonumber(ARGV[6])

local nowMs = redisNowMs()
local state = rcall('HMGET', stateKey, 'closedThrough', 'streamTime', 'guardId', 'guardMs')
local closedThrough = tonumber(state[1] or '0')

local frontier, caughtUp, lastIdMs, minPendingId = appliedFrontier(eventsKey, group, nowMs)
if not frontier then
  return { 0, 0, 0, 0, string.format('%d', closedThrough), 'no-group' }
end

local target = math.min(tonumber(state[2] or '0'), nowMs)
if minPendingId then
  -- The guard of the oldest pending entry is kept in the state hash while that entry stays oldest.
  local guard = tonumber(state[4] or '0')
  if state[3] ~= minPendingId then
    guard = entryMinEventTime(eventsKey, minPendingId) or idParts(minPendingId)
    rcall('HSET', stateKey, 'guardId', minPendingId, 'guardMs', string.format('%d', guard))
  end
  if guard < target then target = guard end
end
if target > closedThrough then
  closedThrough = target
  rcall('HSET', stateKey, 'closedThrough', string.format('%d', closedThrough))
end

-- The wall clock closes what is open on a quiet partition, without moving the watermark.
local bound = closedThrough
if caughtUp and nowMs - lastIdMs >= idleMs and nowMs > bound then
  bound = nowMs
end

local rollups = 0

-- Emits the rollup of one group with the next revision; `h` maps field -> value of the window hash.
local function emit(meter, agg, ws, we, grp, count, value, revision)
  if agg == 'C' then value = count end
  rcall('XADD', outboxKey, '*', 'm', meter, 'a', agg, 'ws', ws, 'we', we, 'g', grp,
    'v', value or '0', 'c', count, 'r', revision)
  rollups = rollups + 1
end

local function splitMember(member)
  local a, b, c = string.find(member, '|', 1, true), nil, nil
  b = string.find(member, '|', a + 1, true)
  c = string.find(member, '|', b + 1, true)
  return string.sub(member, 1, a - 1), string.sub(member, a + 1, b - 1), string.sub(member, b + 1, c - 1),
    string.sub(member, c + 1)
end

local closing = rcall('ZRANGEBYSCORE', indexKey, '-inf', string.format('%d', bound), 'LIMIT', 0, maxWindows)
for _, member in ipairs(closing) do
  local meter, agg, ws, we = splitMember(member)
  local wkey = base .. 'w:' .. meter .. ':' .. ws
  local flat = rcall('HGETALL', wkey)
  local h = {}
  for f = 1, #flat, 2 do h[flat[f]] = flat[f + 1] end
  local revisions = {}
  for f = 1, #flat, 2 do
    local name = flat[f]
    if string.byte(name, 1) == 99 and string.byte(name, 2) == 58 then -- 'c:'
      local grp = string.sub(name, 3)
      local revision = tonumber(h['r:' .. grp] or '0') + 1
      emit(meter, agg, ws, we, grp, flat[f + 1], h['v:' .. grp], revision)
      revisions[#revisions + 1] = 'r:' .. grp
      revisions[#revisions + 1] = revision
    end
  end
  for r = 1, #revisions, 200 do
    rcall('HSET', wkey, unpack(revisions, r, math.min(r + 199, #revisions)))
  end
  local expireAt = string.format('%d', tonumber(we) + retentionMs)
  rcall('PEXPIREAT', wkey, expireAt)
  rcall('PEXPIREAT', wkey .. ':u', expireAt)
  rcall('ZREM', indexKey, member)
end

local corrections = 0
for _, item in ipairs(rcall('SPOP', correctionsKey, maxCorrections)) do
  local nl = string.find(item, '\n', 1, true)
  local member, grp = string.sub(item, 1, nl - 1), string.sub(item, nl + 1)
  local meter, agg, ws, we = splitMember(member)
  local wkey = base .. 'w:' .. meter .. ':' .. ws
  local vals = rcall('HMGET', wkey, 'c:' .. grp, 'v:' .. grp, 'r:' .. grp)
  if vals[1] then
    local revision = tonumber(vals[3] or '0') + 1
    emit(meter, agg, ws, we, grp, vals[1], vals[2], revision)
    rcall('HSET', wkey, 'r:' .. grp, revision)
    -- A window first created by a late event never passed through the closing above.
    local expireAt = string.format('%d', tonumber(we) + retentionMs)
    rcall('PEXPIREAT', wkey, expireAt)
    rcall('PEXPIREAT', wkey .. ':u', expireAt)
    corrections = corrections + 1
  end
end

local more = 0
if #closing == maxWindows or rcall('SCARD', correctionsKey) > 0 then more = 1 end
return { #closing, rollups, corrections, more, string.format('%d', closedThrough), 'ok' }
