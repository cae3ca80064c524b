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
  - Each (window, group, revision) is written to the outbox exactly once. A window leaves the index
    in the step that starts closing it (from then on applyBatch treats it as emitted: a late event is
    corrected or dead-lettered), and each group's revision is stored in the window hash (`r:<group>`)
    in the step that writes its rollup.
  - The work per call is bounded by a budget of ARGV[5] units (one per rollup written, plus a few per
    window started and per correction, see WINDOW_COST), not by a number of windows: a window with
    more groups than fit goes on in later calls. Its close is kept in the state hash (`closing` =
    index member, `closingCursor` = HSCAN cursor over the window hash) and is finished before any new
    window is started, by whichever replica calls next (a crash between calls loses nothing). During
    a close a group is written only if it has no `r:` yet (HSCAN may return a field twice, and a
    correction may have emitted the group first, at revision 1), and writing it drops a queued
    correction of that group, since its revision 1 already holds every applied event. A late event
    for a group not yet written thus ends up in its revision 1; one for a group already written gets
    one correction (revision 2). The window's expiry is set when its close starts.
  - closedThrough only grows and never passes the event time of a pending entry's events (up to the
    jitter inside that entry); applyBatch treats windows closing at or before it, and windows already
    emitted or being closed (out of the index, hash kept), as late.
  - Closed windows are kept until end + retention for corrections and queries, then expire.
  - A budget may be overshot by one HSCAN page: up to 128 groups for a small (listpack-encoded)
    window, which HSCAN always returns whole. At most ARGV[6] corrections per call, within the same
    budget. The reply says whether more remain (a close in progress, due windows or corrections).

  Input:
    KEYS[1] events stream   KEYS[2] state hash    KEYS[3] window index   KEYS[4] corrections set
    KEYS[5] outbox stream   KEYS[6] partition base `<prefix>:{p<i>}:` (window keys derive from it)
    ARGV[1] consumer group  ARGV[2] grace ms      ARGV[3] idle timeout ms ARGV[4] retention ms
    ARGV[5] budget (rollups) ARGV[6] max corrections

  Outbox entries (read by the relay, src/rollups/relay.ts):
    a page of a window's close  m, a, ws, we (the window), n (rollups), rollups: JSON array of
                                n x (group, value, count, revision)
    a correction                m, a, ws, we, g, v, c, r (one rollup)

  Output: { closedWindows, rollups, corrections, more (0|1), closedThrough, status }
    closedWindows counts windows whose close finished in this call.
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
local maxRollups = tonumber(ARGV[5])
local maxCorrections = tonumber(ARGV[6])

local nowMs = redisNowMs()
local state = rcall('HMGET', stateKey, 'closedThrough', 'streamTime', 'guardId', 'guardMs', 'closing',
  'closingCursor')
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

-- Budget units spent in this call: one per rollup written, plus the fixed costs below. Measured on the
-- 2-core reference machine (Redis 7.0, SLOWLOG of this script): writing one rollup of a big window
-- (XADD to the outbox, its share of HSCAN and of the `r:` HSET) costs ~10 us; starting a window (ZREM,
-- two PEXPIREAT, the first HSCAN) ~25 us; a correction (HMGET, XADD, HSET) ~15 us.
local WINDOW_COST = 3
local CORRECTION_COST = 2
-- Above this many fields a window hash is surely not listpack-encoded, so HSCAN pages it by COUNT.
local SMALL_WINDOW_FIELDS = 1024
local spent = 0
local rollups = 0

local function emit(meter, agg, ws, we, grp, count, value, revision)
  if agg == 'C' then value = count end
  rcall('XADD', outboxKey, '*', 'm', meter, 'a', agg, 'ws', ws, 'we', we, 'g', grp,
    'v', value or '0', 'c', count, 'r', revision)
  rollups = rollups + 1
  spent = spent + 1
end

local function splitMember(member)
  local a, b, c = string.find(member, '|', 1, true), nil, nil
  b = string.find(member, '|', a + 1, true)
  c = string.find(member, '|', b + 1, true)
  return string.sub(member, 1, a - 1), string.sub(member, a + 1, b - 1), string.sub(member, b + 1, c - 1),
    string.sub(member, c + 1)
end

-- Whether corrections are queued at all, asked once per call (usually none are).
local correctionsQueued
local function anyCorrections()
  if correctionsQueued == nil then correctionsQueued = rcall('SCARD', correctionsKey) > 0 end
  return correctionsQueued
end

-- Closed windows are kept until end + retention, for corrections and queries.
local function expireWindow(wkey, we)
  local expireAt = string.format('%d', tonumber(we) + retentionMs)
  rcall('PEXPIREAT', wkey, expireAt)
  rcall('PEXPIREAT', wkey .. ':u', expireAt)
end

local function hsetBatched(key, list)
  for r = 1, #list, 200 do rcall('HSET', key, unpack(list, r, math.min(r + 199, #list))) end
end

-- Emits, at revision 1, every group of one HSCAN page of a closing window that has no revision yet
-- (`r:<group>`): a group seen twice by HSCAN, or already emitted by a correction, is skipped. `whole`
-- says the page is the entire hash (a small window: one HSCAN from cursor 0 to 0), so the page alone
-- holds each group's value and revision; otherwise they are read with one HMGET per page. A queued
-- correction of a group emitted here is dropped: this rollup already holds every applied event.
local function closePage(member, wkey, meter, agg, ws, we, flat, whole)
  local h = {}
  local groups = {}
  for f = 1, #flat, 2 do
    local name = flat[f]
    h[name] = flat[f + 1]
    if string.byte(name, 1) == 99 and string.byte(name, 2) == 58 then -- 'c:'
      groups[#groups + 1] = string.sub(name, 3)
    end
  end
  if #groups == 0 then return end
  local values, revisions = {}, {}
  if whole then
    for g, grp in ipairs(groups) do
      values[g] = h['v:' .. grp]
      revisions[g] = h['r:' .. grp]
    end
  else
    local ask = {}
    for g, grp in ipairs(groups) do
      ask[2 * g - 1] = 'v:' .. grp
      ask[2 * g] = 'r:' .. grp
    end
    local got = rcall('HMGET', wkey, unpack(ask))
    for g = 1, #groups do
      values[g] = got[2 * g - 1] or nil
      revisions[g] = got[2 * g] or nil
    end
  end
  local written, dropped, seen, page = {}, {}, {}, {}
  for g, grp in ipairs(groups) do
    if not revisions[g] and not seen[grp] then
      seen[grp] = true
      local count = h['c:' .. grp]
      page[#page + 1] = grp
      page[#page + 1] = agg == 'C' and count or values[g] or '0'
      page[#page + 1] = count
      page[#page + 1] = 1
      written[#written + 1] = 'r:' .. grp
      written[#written + 1] = 1
      dropped[#dropped + 1] = member .. '\n' .. grp
    end
  end
  if #page == 0 then return end
  -- One outbox entry for the page: its window once, then per group (group, value, count, revision),
  -- as one JSON array (text, as the relay reads stream fields). One XADD per page, not per group.
  rcall('XADD', outboxKey, '*', 'm', meter, 'a', agg, 'ws', ws, 'we', we, 'n', #page / 4, 'rollups',
    cjson.encode(page))
  rollups = rollups + #page / 4
  spent = spent + #page / 4
  hsetBatched(wkey, written)
  if #dropped > 0 and anyCorrections() then
    for r = 1, #dropped, 200 do rcall('SREM', correctionsKey, unpack(dropped, r, math.min(r + 199, #dropped))) end
  end
end

-- Due windows, oldest close point first, as many as the budget could start.
local due = rcall('ZRANGEBYSCORE', indexKey, '-inf', string.format('%d', bound), 'LIMIT', 0,
  math.floor(maxRollups / WINDOW_COST) + 1)
local nextDue = 1

-- A close left unfinished by an earlier call goes on first.
local closingMember, closingCursor = state[5], state[6]
local member, cursor = closingMember, closingCursor or '0'
local closedWindows = 0

while spent < maxRollups do
  if not member then
    member = due[nextDue]
    if not member then break end
    if spent > 0 then
      -- A small window comes whole from one HSCAN (listpack encoding, up to hash-max-listpack-entries
      -- fields): it is started only if its groups (about a field or two each) fit the budget left.
      local meter, agg, ws = splitMember(member)
      local fields = rcall('HLEN', base .. 'w:' .. meter .. ':' .. ws)
      if fields <= SMALL_WINDOW_FIELDS and (agg == 'C' and fields or fields / 2) > maxRollups - spent then
        member = nil
        break
      end
    end
    nextDue = nextDue + 1
    cursor = '0'
    -- The window leaves the index at once: from now on applyBatch treats it as emitted (a late event
    -- is corrected or dead-lettered), and its expiry is set, so a window whose close is abandoned
    -- (its state lost) still expires. A window past its retention already (a worker down that long)
    -- gets it when its close ends instead, or it would be gone before its rollups are written.
    rcall('ZREM', indexKey, member)
    local meter, _, ws, we = splitMember(member)
    if tonumber(we) + retentionMs > nowMs then
      expireWindow(base .. 'w:' .. meter .. ':' .. ws, we)
    end
    spent = spent + WINDOW_COST
  end
  local meter, agg, ws, we = splitMember(member)
  local wkey = base .. 'w:' .. meter .. ':' .. ws
  repeat
    local from = cursor
    -- COUNT is a hint in fields (each group has 1 to 4): a page holds about as many groups as the
    -- budget has left, a listpack-encoded (small) hash always comes whole.
    local page = rcall('HSCAN', wkey, cursor, 'COUNT', math.max(maxRollups - spent, 16))
    cursor = page[1]
    closePage(member, wkey, meter, agg, ws, we, page[2], from == '0' and cursor == '0')
  until cursor == '0' or spent >= maxRollups
  if cursor == '0' then
    if tonumber(we) + retentionMs <= nowMs then expireWindow(wkey, we) end
    closedWindows = closedWindows + 1
    member = nil
  end
end

if member then
  if member ~= closingMember or cursor ~= closingCursor then
    rcall('HSET', stateKey, 'closing', member, 'closingCursor', cursor)
  end
elseif closingMember then
  rcall('HDEL', stateKey, 'closing', 'closingCursor')
end

local corrections = 0
local expiring = {}
local room = math.min(maxCorrections, math.floor((maxRollups - spent) / CORRECTION_COST))
if room > 0 then
  for _, item in ipairs(rcall('SPOP', correctionsKey, room)) do
    local nl = string.find(item, '\n', 1, true)
    local cmember, grp = string.sub(item, 1, nl - 1), string.sub(item, nl + 1)
    local meter, agg, ws, we = splitMember(cmember)
    local wkey = base .. 'w:' .. meter .. ':' .. ws
    local vals = rcall('HMGET', wkey, 'c:' .. grp, 'v:' .. grp, 'r:' .. grp)
    if vals[1] then
      local revision = tonumber(vals[3] or '0') + 1
      emit(meter, agg, ws, we, grp, vals[1], vals[2], revision)
      spent = spent + CORRECTION_COST - 1
      rcall('HSET', wkey, 'r:' .. grp, revision)
      -- A window first created by a late event never passed through the closing above.
      if not expiring[wkey] then
        expiring[wkey] = true
        expireWindow(wkey, we)
      end
      corrections = corrections + 1
    end
  end
end

local more = 0
if member or nextDue <= #due or #due > math.floor(maxRollups / WINDOW_COST) or
    rcall('SCARD', correctionsKey) > 0 then
  more = 1
end
return { closedWindows, rollups, corrections, more, string.format('%d', closedThrough), 'ok' }
