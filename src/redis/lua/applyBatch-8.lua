--[[
  applyBatch: dedup, aggregate and acknowledge one batch of stream entries of one partition, as one
  atomic step.

  Guarantees
  - Every entry named by an 'E' header is XACKed in the same step that applies its events, so a crash
    before the step leaves the entry pending (it is redone) and a crash after leaves nothing to redo.
  - An event whose fingerprint (of source and id) is remembered in its entry's dedup epoch, any of
    the `generations` before it, or any later one changes nothing. A new event is remembered in the
    epoch of its entry id.
  - Nothing is applied by a call prepared at another registry version than its partition's (reply
    { 'stale', version }): a worker whose view of the meters lags applies no event without the meters
    that count it (docs/operations.md, "Changing meters and partitions safely").
  - Meters are isolated. An event is applied to every meter that can count it; a meter that cannot
    (the worker found its value invalid, or its window is late under the dead-letter policy or beyond
    retention) gets a dead letter naming it (field `meter`), written only when the event is applied,
    so once per (event, meter). An event no meter can count is dead-lettered whole and not remembered,
    so a replay counts once. An entry naming one meter (scope, a replayed dead letter of that meter)
    counts in it alone, under its own fingerprint of (meter, source, id). The one exception is int64
    overflow of a window total (beyond about 9.2e12 units), see below.
  - An event is late when a window of one of its meters was already emitted (it left the open-window
    index and its hash is kept), or closes at or before the watermark `closedThrough` (end + grace <=
    closedThrough; closeWindows builds it from applied event time only). A window closed by the wall
    clock on a quiet partition makes late only the events of that window, never earlier ones.
  - Late events under the correct policy are applied to their windows; each emitted (window, group)
    they change is queued in `corrections`, so the next close step emits one correction rollup per
    changed (window, group). A late event for a window still open is simply part of its first rollup.
  The script performs no call that can fail on well-formed input except HINCRBY overflow (a window
  total beyond int64 micro-units), which is caught: the events whose values could not be added are
  dead-lettered with reason `sum-overflow`, their counts and other meters stay applied (the total
  cannot be represented anyway).

  How the work is split (issue 10): the worker aggregates each call's events per cell, a (window,
  group), so this script does per event only the dedup write and per cell one write of its count and
  value. Each event also carries its own contribution to its cells, which is read only when needed:
  - an event that is a duplicate, of an entry this consumer no longer owns, or dead-lettered here is
    taken back out of its cells (count minus one; a SUM/AVG value subtracted exactly, see the cell
    table; a UNIQUE_COUNT value's multiplicity lowered);
  - a MIN/MAX/LATEST cell that lost an event, a SUM/AVG cell the worker could not sum exactly, and a
    cell whose total overflowed are written event by event instead ("replayed") from the events that
    still count;
  - lateness is decided per window; only when a window of the call is late, emitted or beyond
    retention are the events looked at one by one.

  Input:
    KEYS[1] events stream            KEYS[2] dead-letter stream     KEYS[3] state hash
    KEYS[4] window index (zset)      KEYS[5] corrections (set)      KEYS[6] dedup epochs (hash)
    KEYS[7] partition base `<prefix>:{p<i>}:` (window `w:*` and dedup `d:*` keys derive from it)
    KEYS[8] partition registry hash (`version`, see syncPartitionRegistry.lua)

    ARGV[1] consumer group     ARGV[2] grace ms        ARGV[3] late policy ('correct'|'dead-letter')
    ARGV[4] retention ms       ARGV[5] generations     ARGV[6] bucket bits for new epochs
    ARGV[7] consumer name      ARGV[10] the registry version the call was prepared at
    ARGV[9] the events' 16-byte fingerprints, concatenated, in event order (binary: Redis's cmsgpack
            has no bin type)
    ARGV[8] the call, as one MessagePack array (decoded in C by cmsgpack: passing thousands of
            separate arguments costs more than the work they describe):
      windows   nWindows, then per window: meter, agg, windowStart, windowEnd
                agg: C count, S sum, A avg, m min, M max, U unique count, L latest
      cells     nCells, then per cell: window, group, count, a, b
                  C: 0, 0        S/A: the exact sum of its values, 0; or 0, 1 (not exact: replayed)
                  m/M: the min/max value, 0         L: the latest value, its sort key
                  U: d, 0, then d pairs (value, number of the cell's events carrying it)
                window: 1-based in the window table; cells likewise in the cell table
      range     firstEntryId, lastEntryId, nEntries
      entries   per entry: tag, entryId, epoch, nRecords, scope (the one meter it counts in, or ''),
                then nRecords records:
                  tag 'E': applied and acked by this call, only while still pending for this
                    consumer: an entry reclaimed by another consumer meanwhile (or already acked) is
                    skipped whole, so a stalled worker that wakes up late cannot apply or dead-letter
                    it twice.
                  tag 'P': as 'E', but the entry goes on in a later call (the worker keeps each call
                    short): applied, not acked; the call holding its last records acks it. A crash in
                    between redoes the entry: the events applied already are duplicates then (its
                    dead letters may be written twice).
                'D', index, reason, detail, payload, field, meter   -- dead-letter an event the worker
                  rejected (meter: the meter it is for, or '')
                timeMs, index, from, to, n, r, then n updates (cell, value, sortKey), then r
                  rejections (meter, reason, detail)   -- an event; its fingerprint is the next 16
                  bytes of ARGV[9]. from, to: its bytes in the entry value (0, 0: the whole value), so
                  a dead letter decided here holds the event alone. value: a number for COUNT (0) and
                  exact SUM/AVG values, else the scaled value or distinct value as text; sortKey:
                  LATEST only, else 0. A rejection: a meter of the event's type that cannot count it.

  Output: { applied, duplicates, deadLettered, corrected, acked, skippedEntries } | { 'stale', version }
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
local registryKey = KEYS[8]

local group = ARGV[1]
local graceMs = tonumber(ARGV[2])
local latePolicy = ARGV[3]
local retentionMs = tonumber(ARGV[4])
local generations = tonumber(ARGV[5])
local newBucketBits = tonumber(ARGV[6])
local consumer = ARGV[7]

do
  local version = rcall('HGET', registryKey, 'version')
  if version ~= ARGV[10] then return { 'stale', version or '' } end
end

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

local entryId
local applied, duplicates, deadLettered, corrected = 0, 0, 0, 0

local function deadLetter(index, reason, detail, payload, field, meter)
  if meter ~= '' then
    rcall('XADD', deadLetterKey, '*', 'reason', reason, 'detail', detail, 'entry', entryId, 'index', index,
      'field', field, 'payload', payload, 'at', string.format('%d', nowMs), 'meter', meter)
  else
    rcall('XADD', deadLetterKey, '*', 'reason', reason, 'detail', detail, 'entry', entryId, 'index', index,
      'field', field, 'payload', payload, 'at', string.format('%d', nowMs))
  end
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


local R = cmsgpack.unpack(ARGV[8])
local fingerprints = ARGV[9]
local deadLetterLate = latePolicy == 'dead-letter'

-- The call's windows and where each stands, decided once per call: beyond retention (its events are
-- always dead-lettered), late, and its state: 'open' (in the index), 'emitted' (closed: out of the
-- index, its hash kept until retention) or 'new' (never seen, or expired; looked up before any write
-- of this call creates its hash). `excludes`: an event with an update in it is dead-lettered.
-- `corrects`: the groups it changes are queued as corrections (an emitted window, or a new one past
-- the watermark, whose first rollup goes out as a correction, revision 1).
local windows = {}
local slow = false -- some window of the call is late or expired: events are looked at one by one
local i = 1
local nWindows = R[i]
i = i + 1
for w = 1, nWindows do
  local meter, agg, ws, we = R[i], R[i + 1], R[i + 2], R[i + 3]
  i = i + 4
  local member = meter .. '|' .. agg .. '|' .. ws .. '|' .. we
  local wkey = base .. 'w:' .. meter .. ':' .. ws
  local st
  if rcall('ZSCORE', indexKey, member) then
    st = 'open'
  elseif rcall('EXISTS', wkey) == 1 then
    st = 'emitted'
  else
    st = 'new'
  end
  local weMs = tonumber(we)
  local expired = weMs + retentionMs <= nowMs
  local pastWatermark = weMs + graceMs <= closedThrough
  local late = pastWatermark or st == 'emitted'
  local win = {
    meter = meter, member = member, key = wkey, agg = agg, we = weMs, st = st, expired = expired, late = late,
    pastWatermark = pastWatermark,
    excludes = expired or (late and deadLetterLate),
    corrects = not expired and not deadLetterLate and (st == 'emitted' or (st == 'new' and pastWatermark)),
  }
  if win.excludes or win.corrects then slow = true end
  windows[w] = win
end

-- The call's cells, (window, group) aggregates of its events, stay where they are in R (no table
-- per cell): cell c is R[at], R[at + 1], ... with at = cells[c]: window, group, count, a, b (as in
-- the header). Taking an event out updates count and a in place. `replay[c]`: written event by event
-- (see the header). `uniques[c]`: a UNIQUE_COUNT cell's values -> multiplicity.
local cells, replay, uniques = {}, {}, {}
local nCells = R[i]
i = i + 1
for c = 1, nCells do
  cells[c] = i
  local agg = windows[R[i]].agg
  local a, b = R[i + 3], R[i + 4]
  i = i + 5
  if agg == 'U' then
    local values = {}
    for _ = 1, a do
      values[R[i]] = R[i + 1]
      i = i + 2
    end
    uniques[c] = values
  elseif (agg == 'S' or agg == 'A') and b == 1 then
    replay[c] = true
  end
end

-- Entries of this call still pending for this consumer, with one XPENDING over the call's id range
-- (entry ids arrive in order). An entry outside the reply is skipped: another consumer reclaimed it,
-- or it was acked already. Asking for more than the call holds keeps other pending entries of this
-- consumer inside the range from crowding the call's entries out.
local ownedIds = {}
do
  local first, last, entries = R[i], R[i + 1], R[i + 2]
  i = i + 3
  if entries > 0 then
    for _, p in ipairs(rcall('XPENDING', eventsKey, group, first, last, entries * 4 + 1000, consumer)) do
      ownedIds[p[1]] = true
    end
  end
end
local entriesAt = i
local nR = #R

-- Takes an event (its record at R[at]) back out of its cells: it is a duplicate, not ours any more,
-- or dead-lettered. Additive cells subtract it (exact: the worker sums a cell only while any subset
-- of its values sums exactly), UNIQUE_COUNT lowers its value's multiplicity, and MIN/MAX/LATEST
-- cells are replayed from the events that still count.
local function takeOutUpdate(u)
  local c = R[u]
  local p = cells[c]
  R[p + 2] = R[p + 2] - 1
  local agg = windows[R[p]].agg
  if agg == 'S' or agg == 'A' then
    if not replay[c] then R[p + 3] = R[p + 3] - R[u + 1] end
  elseif agg == 'U' then
    local values = uniques[c]
    values[R[u + 1]] = values[R[u + 1]] - 1
  elseif agg ~= 'C' then
    replay[c] = true
  end
end
local function takeOut(at)
  for u = at + 6, at + 5 + R[at + 4] * 3, 3 do takeOutUpdate(u) end
end

-- Why a window's event is dead-lettered here: its reason and detail.
local function excludedBecause(timeMs, w)
  if w.expired then
    return 'beyond-retention', 'too old to keep: event time ' .. isoUtc(timeMs) .. ' is in a window that ended ' ..
      isoUtc(w.we) .. ', more than windows.retention (' .. string.format('%d', retentionMs) .. ' ms) before now (' ..
      isoUtc(nowMs) .. '); windows that old are deleted, so it can be neither counted nor corrected'
  end
  return 'late', 'late: event time ' .. isoUtc(timeMs) .. ' is in a window (ended ' .. isoUtc(w.we) ..
    ') already emitted, or closed by the watermark ' .. isoUtc(closedThrough) .. ' (grace ' ..
    string.format('%d', graceMs) .. ' ms); under latePolicy dead-letter it is not counted'
end

-- Events dead-lettered here or not counted for another reason, by their record position, and single
-- updates taken out (a meter that dead-lettered an applied event), by theirs, for the replay pass.
local out, outUpdate = {}, {}
local skipped = 0
local acks = {}
local k = 0 -- fingerprints consumed
i = entriesAt
while i <= nR do
  local tag = R[i]
  entryId = R[i + 1]
  local epoch = tonumber(R[i + 2])
  local records = R[i + 3]
  local scope = R[i + 4]
  i = i + 5
  local owned = ownedIds[entryId] == true
  if not owned then
    skipped = skipped + 1
  elseif tag == 'E' then
    acks[#acks + 1] = entryId
  end
  for _ = 1, records do
    if R[i] == 'D' then
      if owned then deadLetter(R[i + 1], R[i + 2], R[i + 3], R[i + 4], R[i + 5], R[i + 6]) end
      i = i + 7
    else
      local at = i
      local nUpdates = R[at + 4]
      local lastUpdate = at + 3 + nUpdates * 3
      i = at + 6 + nUpdates * 3 + R[at + 5] * 3
      local fpAt = k * 16 + 1
      k = k + 1
      if not owned then
        takeOut(at)
        out[at] = true
      else
        local dup, dedupKey, dedupField = seenBefore(epoch, fingerprints, fpAt)
        if dup then
          duplicates = duplicates + 1
          takeOut(at)
          out[at] = true
        else
          local excluded, correcting = 0, false
          if slow then
            for u = at + 6, lastUpdate, 3 do
              local w = windows[R[cells[R[u]]]]
              if w.excludes then excluded = excluded + 1 end
              if w.corrects then correcting = true end
            end
          end
          if excluded == nUpdates then
            -- No meter can count it: dead-lettered whole, and forgotten so that a replay counts once.
            rcall('HDEL', dedupKey, dedupField)
            takeOut(at)
            out[at] = true
            local payload, field = originalPayload(R[at + 2], R[at + 3])
            local reason, detail = excludedBecause(R[at], windows[R[cells[R[at + 6]]]])
            for u = at + 6, lastUpdate, 3 do
              if windows[R[cells[R[u]]]].expired then
                reason, detail = excludedBecause(R[at], windows[R[cells[R[u]]]])
                break
              end
            end
            deadLetter(R[at + 1], reason, detail, payload, field, scope)
          else
            local payload, field
            if excluded > 0 or R[at + 5] > 0 then payload, field = originalPayload(R[at + 2], R[at + 3]) end
            if excluded > 0 then
              -- Some meters' windows are late or expired: the event counts in the others, and each of
              -- those meters gets its own dead letter.
              for u = at + 6, lastUpdate, 3 do
                local w = windows[R[cells[R[u]]]]
                if w.excludes then
                  takeOutUpdate(u)
                  outUpdate[u] = true
                  local reason, detail = excludedBecause(R[at], w)
                  deadLetter(R[at + 1], reason, w.meter .. ': ' .. detail, payload, field, w.meter)
                end
              end
            end
            for r = lastUpdate + 3, i - 1, 3 do
              deadLetter(R[at + 1], R[r + 1], R[r + 2], payload, field, R[r])
            end
            if correcting then corrected = corrected + 1 end
            if R[at] > streamTime then streamTime = R[at] end
            applied = applied + 1
          end
        end
      end
    end
  end
end

-- Writes an increment; false if it would overflow int64 (nothing is written then).
local function increment(wkey, field, by)
  local res = redis.pcall('HINCRBY', wkey, field, by)
  return type(res) ~= 'table' or res.err == nil
end

-- A MIN/MAX value is kept if it beats the stored one; a LATEST value if its sort key is newer.
local function keepExtreme(wkey, agg, grp, value)
  local cur = rcall('HGET', wkey, 'v:' .. grp)
  local cmp = cur and compareInt(value, cur) or 0
  if not cur or (agg == 'm' and cmp < 0) or (agg == 'M' and cmp > 0) then
    rcall('HSET', wkey, 'v:' .. grp, value)
  end
end
local function keepLatest(wkey, grp, value, sortKey)
  local cur = rcall('HGET', wkey, 't:' .. grp)
  if not cur or sortKey > cur then
    rcall('HSET', wkey, 't:' .. grp, sortKey, 'v:' .. grp, value)
  end
end

-- Cells: the window bookkeeping, then one write of the count and of the value.
local replaying = false
for c, p in ipairs(cells) do
  local n = R[p + 2]
  if n > 0 then
    local w, grp, a, b = windows[R[p]], R[p + 1], R[p + 3], R[p + 4]
    local wkey, agg = w.key, w.agg
    if w.st == 'new' then
      if w.pastWatermark then
        w.st = 'emitted' -- its first rollup goes out as a correction (revision 1)
      else
        rcall('ZADD', indexKey, 'NX', string.format('%d', w.we + graceMs), w.member)
        w.st = 'open'
      end
    end
    if w.st == 'emitted' then rcall('SADD', correctionsKey, w.member .. '\n' .. grp) end
    rcall('HINCRBY', wkey, 'c:' .. grp, n)
    if replay[c] then
      replaying = true
    elseif agg == 'S' or agg == 'A' then
      if a ~= 0 and not increment(wkey, 'v:' .. grp, string.format('%d', a)) then
        replay[c] = true
        replaying = true
      end
    elseif agg == 'm' or agg == 'M' then
      keepExtreme(wkey, agg, grp, a)
    elseif agg == 'L' then
      keepLatest(wkey, grp, a, b)
    elseif agg == 'U' then
      local ukey, added = wkey .. ':u', 0
      for value, k in pairs(uniques[c]) do
        if k > 0 and rcall('HSETNX', ukey, grp .. '\n' .. value, '') == 1 then added = added + 1 end
      end
      if added > 0 then rcall('HINCRBY', wkey, 'v:' .. grp, added) end
    end
  end
end

-- Replayed cells, event by event, from the events that still count. A SUM/AVG value that cannot be
-- added (the total would leave int64) is dead-lettered as `sum-overflow`, its count staying applied.
if replaying then
  i = entriesAt
  while i <= nR do
    entryId = R[i + 1]
    local records = R[i + 3]
    i = i + 5
    for _ = 1, records do
      if R[i] == 'D' then
        i = i + 7
      else
        local at = i
        local lastUpdate = at + 3 + R[at + 4] * 3
        i = at + 6 + R[at + 4] * 3 + R[at + 5] * 3
        if not out[at] then
          for u = at + 6, lastUpdate, 3 do
            local c = R[u]
            if replay[c] and not outUpdate[u] then
              local w, value = windows[R[cells[c]]], R[u + 1]
              local wkey, agg, grp = w.key, w.agg, R[cells[c] + 1]
              if agg == 'S' or agg == 'A' then
                if type(value) == 'number' then value = string.format('%d', value) end
                if not increment(wkey, 'v:' .. grp, value) then
                  local payload, field = originalPayload(R[at + 2], R[at + 3])
                  deadLetter(R[at + 1], 'sum-overflow', 'total of ' .. w.member .. ' would exceed int64 micro-units',
                    payload, field, w.meter)
                end
              elseif agg == 'm' or agg == 'M' then
                keepExtreme(wkey, agg, grp, value)
              elseif agg == 'L' then
                keepLatest(wkey, grp, value, R[u + 2])
              end
            end
          end
        end
      end
    end
  end
end

if streamTime > streamTimeBefore then
  rcall('HSET', stateKey, 'streamTime', string.format('%d', streamTime))
end
for a = 1, #acks, 500 do
  rcall('XACK', eventsKey, group, unpack(acks, a, math.min(a + 499, #acks)))
end
return { applied, duplicates, deadLettered, corrected, #acks, skipped }
