--[[
  applyBatch: dedup, aggregate and acknowledge one batch of stream entries of one partition, as one
  atomic step.

  Guarantees
  - Every entry named by an 'E' record is XACKed in the same step that applies its events, so a crash
    before the step leaves the entry pending (it is redone) and a crash after leaves nothing to redo.
  - An event whose fingerprint (of source and id) is remembered in its entry's dedup epoch, any of
    the `generations` before it, or any later one changes nothing. A new event is remembered in the
    epoch of its entry id.
  - An event is applied to all of its meters or to none: late events under the dead-letter policy and
    events beyond retention are dead-lettered whole (and not remembered, so a replay counts once).
    The one exception is int64 overflow of a window total (beyond about 9.2e12 units), see below.
  - An event is late when a window of one of its meters was already emitted (it left the open-window
    index and its hash is kept), or closes at or before the watermark `closedThrough` (end + grace <=
    closedThrough; closeWindows builds it from applied event time only). A window closed by the wall
    clock on a quiet partition makes late only the events of that window, never earlier ones.
  - Late events under the correct policy are applied to their windows; each emitted (window, group)
    they change is queued in `corrections`, so the next close step emits one correction rollup per
    changed (window, group). A late event for a window still open is simply part of its first rollup.
  The script performs no call that can fail on well-formed input except HINCRBY overflow (a window
  total beyond int64 micro-units), which is caught and dead-lettered with reason `sum-overflow`; the
  event's count and its other meters stay applied then (the total cannot be represented anyway).

  Input:
    KEYS[1] events stream            KEYS[2] dead-letter stream     KEYS[3] state hash
    KEYS[4] window index (zset)      KEYS[5] corrections (set)      KEYS[6] dedup epochs (hash)
    KEYS[7] partition base `<prefix>:{p<i>}:` (window `w:*` and dedup `d:*` keys derive from it)

    ARGV[1] consumer group     ARGV[2] grace ms        ARGV[3] late policy ('correct'|'dead-letter')
    ARGV[4] retention ms       ARGV[5] generations     ARGV[6] bucket bits for new epochs
    ARGV[7] consumer name
    ARGV[9] the events' 16-byte fingerprints, concatenated (binary: Redis's cmsgpack has no bin type)
    ARGV[8] the records, as one MessagePack array (decoded in C by cmsgpack: passing thousands of
            separate arguments costs more than the work they describe), each starting with a tag:
      'E', entryId, epoch   -- following records belong to this entry. It is applied and acked only
                            -- while still pending for this consumer: an entry reclaimed by another
                            -- consumer meanwhile (or already acked) is skipped whole, so a stalled
                            -- worker that wakes up late cannot apply or dead-letter it twice.
      'P', entryId, epoch   -- as 'E', but the entry goes on in a later call (the worker keeps each
                            -- call short): applied, not acked; the call holding its last records
                            -- acks it. A crash in between redoes the entry: the events applied
                            -- already are duplicates then (its dead letters may be written twice).
      'D', index, reason, detail, payload, field  -- dead-letter an event rejected by the worker
      'V', index, k, timeMs, from, to, n, then n updates of 7 values  -- k: fingerprint number k in
           ARGV[9]; from, to: the event's bytes in the entry value (0, 0: the whole value), so a dead
           letter decided here holds the event alone, not its whole batch entry
           meter, agg, windowStart, windowEnd, group, value, sortKey
      agg: C count, S sum, A avg, m min, M max, U unique count, L latest

  Output: { applied, duplicates, deadLettered, corrected, acked, skippedEntries }
]]

--@include compareInt
--@include now
--@include isoTime

local rcall = redis.call
local eventsKey = KEYS[1]
local deadLetterKey = KEYS[2]
local stateKey = KEYS[3]
local indexKey = KEYS[4]
local correctionsKey = KEYS[5]
local epochsKey = KEYS[6]
local base = KEYS[7]

local group = ARGV[1]
local graceMs = tonumber(ARGV[2])
local latePolicy = ARGV[3]
local retentionMs = tonumber(ARGV[4])
local generations = tonumber(ARGV[5])
local newBucketBits = tonumber(ARGV[6])
local consumer = ARGV[7]

local nowMs = redisNowMs()
local closedThrough = tonumber(rcall('HGET', stateKey, 'closedThrough') or '0')
local streamTime = tonumber(rcall('HGET', stateKey, 'streamTime') or '0')
local streamTimeBefore = streamTime

-- Dedup epochs that exist (epoch -> bucket bits), read once per batch.
local epochBits = {}
do
  local flat = rcall('HGETALL', epochsKey)
  for f = 1, #flat, 2 do
    local e = tonumber(flat[f])
    if e then epochBits[e] = tonumber(flat[f + 1]) end
  end
end

-- Other epochs an entry of epoch e looks in: every existing epoch from e - generations on, newer
-- ones included, because an older copy of an event can be applied after a newer copy (when its
-- entry was reclaimed late) and the newer copy was remembered in its own, later epoch.
local lookups = {}
local function othersOf(e)
  local list = lookups[e]
  if not list then
    list = {}
    for other in pairs(epochBits) do
      if other ~= e and other >= e - generations then list[#list + 1] = other end
    end
    lookups[e] = list
  end
  return list
end

local function bitsFor(e)
  local bits = epochBits[e]
  if not bits then
    local name = string.format('%d', e)
    rcall('HSETNX', epochsKey, name, newBucketBits)
    bits = tonumber(rcall('HGET', epochsKey, name))
    epochBits[e] = bits
    lookups = {}
  end
  return bits
end

-- Bucket keys are built once per (epoch, bucket) and batch: no string is built per event here.
local bucketKeys = {}
local function bucketKey(e, bits, top)
  local bucket = math.floor(top / 2 ^ (24 - bits))
  local keys = bucketKeys[e]
  if not keys then
    keys = { prefix = base .. 'd:' .. string.format('%d', e) .. ':' }
    bucketKeys[e] = keys
  end
  local key = keys[bucket]
  if not key then
    key = keys.prefix .. string.format('%d', bucket)
    keys[bucket] = key
  end
  return key
end

-- Returns true if the fingerprint was already remembered; otherwise remembers it in epoch e and
-- returns false plus the key it was written to (so a dead-lettered event can be forgotten again).
-- The fingerprint is the 16 bytes of ARGV[9] from offset `at`: its top 24 bits pick the bucket and the
-- next 12 bytes are the field (the last byte is not stored).
local function seenBefore(e, fingerprints, at)
  local b1, b2, b3 = string.byte(fingerprints, at, at + 2)
  local top = b1 * 65536 + b2 * 256 + b3
  local field = string.sub(fingerprints, at + 3, at + 14)
  local key = bucketKey(e, bitsFor(e), top)
  if rcall('HSETNX', key, field, '') == 0 then
    return true
  end
  for _, other in ipairs(othersOf(e)) do
    if rcall('HEXISTS', bucketKey(other, epochBits[other], top), field) == 1 then
      return true
    end
  end
  return false, key, field
end

local entryId, entryEpoch
local owned = false
local skipped = 0
local acks = {}
local applied, duplicates, deadLettered, corrected = 0, 0, 0, 0

-- A window's index member and hash key, built once per (meter, window start) and batch.
local windowNames = {}
local function windowOf(meter, agg, ws, we)
  local byStart = windowNames[meter]
  if not byStart then
    byStart = {}
    windowNames[meter] = byStart
  end
  local w = byStart[ws]
  if not w then
    w = { meter .. '|' .. agg .. '|' .. ws .. '|' .. we, base .. 'w:' .. meter .. ':' .. ws, tonumber(we) }
    byStart[ws] = w
  end
  return w
end

-- Where a window stands, once per batch: 'open' (in the index), 'emitted' (closed: out of the index,
-- its hash kept until retention), or 'new' (never seen, or expired).
local windowStates = {}
local function windowState(member, wkey)
  local st = windowStates[member]
  if not st then
    if rcall('ZSCORE', indexKey, member) then
      st = 'open'
    elseif rcall('EXISTS', wkey) == 1 then
      st = 'emitted'
    else
      st = 'new'
    end
    windowStates[member] = st
  end
  return st
end

local function deadLetter(index, reason, detail, payload, field)
  rcall('XADD', deadLetterKey, '*', 'reason', reason, 'detail', detail, 'entry', entryId, 'index', index,
    'field', field, 'payload', payload, 'at', string.format('%d', nowMs))
  deadLettered = deadLettered + 1
end

-- What a dead letter decided here (a late or overflowing event) holds: the event's own bytes, cut
-- out of its entry's value (read once per entry), or the whole value for a single-event entry.
local payloadOf, valueOf, fieldOf
local function originalPayload(from, to)
  if payloadOf ~= entryId then
    payloadOf, valueOf, fieldOf = entryId, '', 'event'
    local entry = rcall('XRANGE', eventsKey, entryId, entryId)[1]
    if entry then
      local fields = entry[2]
      for i = 1, #fields, 2 do
        if fields[i] == 'event' or fields[i] == 'events' then
          valueOf, fieldOf = fields[i + 1], fields[i]
          break
        end
      end
    end
  end
  if from > 0 and fieldOf == 'events' then
    local text = string.sub(valueOf, from, to)
    -- '{' ... '}': the offsets fit (they would not if the stored bytes were not valid UTF-8).
    if string.byte(text, 1) == 123 and string.byte(text, -1) == 125 then return text, 'event' end
  end
  return valueOf, fieldOf
end

-- Counts and sums are added up in Lua first, per window hash and group as { count, value increment },
-- and written once per (window, field) at the end of the batch: a Lua table update costs a fraction
-- of a redis.call, and the field names ('c:' .. group) are built then, not per event. Lua numbers are
-- exact integers below 2^53, so a value or running total that could leave that range is written
-- through at once instead.
local increments = {}
local EXACT = 2 ^ 52
local function cellOf(wkey, grp)
  local h = increments[wkey]
  if not h then
    h = {}
    increments[wkey] = h
  end
  local cell = h[grp]
  if not cell then
    cell = { 0, 0 }
    h[grp] = cell
  end
  return cell
end

local function applyUpdate(wkey, agg, grp, value, sortKey)
  local cell = cellOf(wkey, grp)
  cell[1] = cell[1] + 1
  if agg == 'C' then
    return true
  elseif agg == 'S' or agg == 'A' then
    local d = tonumber(value)
    if math.abs(d) < EXACT and math.abs(cell[2] + d) < EXACT then
      cell[2] = cell[2] + d
      return true
    end
    local res = redis.pcall('HINCRBY', wkey, 'v:' .. grp, value)
    return type(res) ~= 'table' or res.err == nil
  elseif agg == 'm' or agg == 'M' then
    local cur = rcall('HGET', wkey, 'v:' .. grp)
    local c = cur and compareInt(value, cur) or 0
    if not cur or (agg == 'm' and c < 0) or (agg == 'M' and c > 0) then
      rcall('HSET', wkey, 'v:' .. grp, value)
    end
  elseif agg == 'U' then
    if rcall('HSETNX', wkey .. ':u', grp .. '\n' .. value, '') == 1 then
      cell[2] = cell[2] + 1
    end
  elseif agg == 'L' then
    local cur = rcall('HGET', wkey, 't:' .. grp)
    if not cur or sortKey > cur then
      rcall('HSET', wkey, 't:' .. grp, sortKey, 'v:' .. grp, value)
    end
  end
  return true
end

local R = cmsgpack.unpack(ARGV[8])
local fingerprints = ARGV[9]

-- Entries of this batch still pending for this consumer, with one XPENDING over the batch's id range
-- (entry ids arrive in order). An entry outside the reply is skipped: another consumer reclaimed it,
-- or it was acked already. Asking for more than the batch holds keeps other pending entries of this
-- consumer inside the range from crowding batch entries out.
local ownedIds = {}
do
  local first, last, entries = nil, nil, 0
  local j = 1
  while j <= #R do
    local tag = R[j]
    if tag == 'E' or tag == 'P' then
      first = first or R[j + 1]
      last = R[j + 1]
      entries = entries + 1
      j = j + 3
    elseif tag == 'D' then
      j = j + 6
    else
      j = j + 7 + R[j + 6] * 7
    end
  end
  if first then
    for _, p in ipairs(rcall('XPENDING', eventsKey, group, first, last, entries * 4 + 1000, consumer)) do
      ownedIds[p[1]] = true
    end
  end
end
local i = 1
local n = #R
while i <= n do
  local tag = R[i]
  if tag == 'E' or tag == 'P' then
    entryId = R[i + 1]
    entryEpoch = tonumber(R[i + 2])
    owned = ownedIds[entryId] == true
    if not owned then
      skipped = skipped + 1
    elseif tag == 'E' then
      acks[#acks + 1] = entryId
    end
    i = i + 3
  elseif tag == 'D' then
    if owned then deadLetter(R[i + 1], R[i + 2], R[i + 3], R[i + 4], R[i + 5]) end
    i = i + 6
  elseif not owned then -- 'V' of an entry this consumer no longer owns
    i = i + 7 + tonumber(R[i + 6]) * 7
  else -- 'V'
    local index = R[i + 1]
    local k = R[i + 2]
    local timeMs = tonumber(R[i + 3])
    local from, to = tonumber(R[i + 4]), tonumber(R[i + 5])
    local count = tonumber(R[i + 6])
    local first = i + 7
    i = first + count * 7
    local dup, dedupKey, dedupField = seenBefore(entryEpoch, fingerprints, k * 16 + 1)
    if dup then
      duplicates = duplicates + 1
    else
      local late, expired = false, false
      local windowEnd
      for u = first, i - 1, 7 do
        local w = windowOf(R[u], R[u + 1], R[u + 2], R[u + 3])
        local we = w[3]
        if we + retentionMs <= nowMs then
          expired, windowEnd = true, we
        elseif we + graceMs <= closedThrough then
          late, windowEnd = true, windowEnd or we
        elseif windowState(w[1], w[2]) == 'emitted' then
          late, windowEnd = true, windowEnd or we
        end
      end
      if expired or (late and latePolicy == 'dead-letter') then
        rcall('HDEL', dedupKey, dedupField)
        local payload, field = originalPayload(from, to)
        local detail
        if expired then
          detail = 'too old to keep: event time ' .. isoUtc(timeMs) .. ' is in a window that ended ' .. isoUtc(windowEnd) ..
            ', more than windows.retention (' .. string.format('%d', retentionMs) .. ' ms) before now (' .. isoUtc(nowMs) ..
            '); windows that old are deleted, so it can be neither counted nor corrected'
        else
          detail = 'late: event time ' .. isoUtc(timeMs) .. ' is in a window (ended ' .. isoUtc(windowEnd) ..
            ') already emitted, or closed by the watermark ' .. isoUtc(closedThrough) .. ' (grace ' ..
            string.format('%d', graceMs) .. ' ms); under latePolicy dead-letter it is not counted'
        end
        deadLetter(index, expired and 'beyond-retention' or 'late', detail, payload, field)
      else
        local touchedEmitted = false
        for u = first, i - 1, 7 do
          local agg, grp = R[u + 1], R[u + 4]
          local w = windowOf(R[u], agg, R[u + 2], R[u + 3])
          local member, wkey, we = w[1], w[2], w[3]
          local st = windowState(member, wkey) -- before the update creates the hash
          if not applyUpdate(wkey, agg, grp, R[u + 5], R[u + 6]) then
            local payload, field = originalPayload(from, to)
            deadLetter(index, 'sum-overflow', 'total of ' .. member .. ' would exceed int64 micro-units', payload, field)
          end
          if st == 'new' then
            if we + graceMs <= closedThrough then
              st = 'emitted' -- its first rollup goes out as a correction (revision 1)
            else
              rcall('ZADD', indexKey, 'NX', string.format('%d', we + graceMs), member)
              st = 'open'
            end
            windowStates[member] = st
          end
          if st == 'emitted' then
            rcall('SADD', correctionsKey, member .. '\n' .. grp)
            touchedEmitted = true
          end
        end
        if touchedEmitted then corrected = corrected + 1 end
        if timeMs > streamTime then streamTime = timeMs end
        applied = applied + 1
      end
    end
  end
end

-- Write the batch's counts and sums. An overflow here (a window total beyond int64 micro-units,
-- about 9.2e12 units) cannot be pinned on one event: the total is dead-lettered for an operator.
local function writeIncrement(wkey, field, total)
  if total == 0 then return end
  local res = redis.pcall('HINCRBY', wkey, field, string.format('%d', total))
  if type(res) == 'table' and res.err then
    rcall('XADD', deadLetterKey, '*', 'reason', 'sum-overflow', 'detail', wkey .. ' ' .. field .. ' += ' ..
      string.format('%d', total) .. ': ' .. res.err, 'entry', '', 'index', '-1', 'field', '', 'payload', '',
      'at', string.format('%d', nowMs))
    deadLettered = deadLettered + 1
  end
end
for wkey, groups in pairs(increments) do
  for grp, cell in pairs(groups) do
    writeIncrement(wkey, 'c:' .. grp, cell[1])
    writeIncrement(wkey, 'v:' .. grp, cell[2])
  end
end

if streamTime > streamTimeBefore then
  rcall('HSET', stateKey, 'streamTime', string.format('%d', streamTime))
end
for a = 1, #acks, 500 do
  rcall('XACK', eventsKey, group, unpack(acks, a, math.min(a + 499, #acks)))
end
return { applied, duplicates, deadLettered, corrected, #acks, skipped }
