--[[
  trimStream: delete applied entries from a partition's event stream.

  Guarantees
  - Never deletes an entry that is pending or not yet delivered to the consumer group: the trim point
    is capped at the applied frontier (see includes/frontier.lua).
  - Below that cap, deletes entries older than `retainMs` and, when `maxLength` > 0, the oldest entries
    beyond the newest `maxLength`. Trimming uses `MINID ~`, which deletes whole stream nodes only and
    so may keep a few more entries than asked, never fewer.
  Only this script's consumer group is considered: other groups reading the same stream are not
  protected (see docs/operations.md).

  Input:
    KEYS[1] events stream
    ARGV[1] consumer group   ARGV[2] retain ms   ARGV[3] max length (0 = none)

  Output: number of entries deleted
]]

--@include streamIds
--@include frontier
--@include now

local rcall = redis.call
local eventsKey = KEYS[1]
local group = ARGV[1]
local retainMs = tonumber(ARGV[2])
local maxLength = tonumber(ARGV[3])

local nowMs = redisNowMs()
local frontier = appliedFrontier(eventsKey, group, nowMs)
if not frontier then return 0 end

local target = nowMs - retainMs
if maxLength > 0 then
  local excess = rcall('XLEN', eventsKey) - maxLength
  if excess > 0 then
    local first = rcall('XRANGE', eventsKey, '-', '+', 'COUNT', math.min(excess, 10000))
    local lastOfExcess = first[#first]
    if lastOfExcess then
      local ms = idParts(lastOfExcess[1])
      if ms > target then target = ms end
    end
  end
end
if frontier < target then target = frontier end
if target <= 0 then return 0 end
return rcall('XTRIM', eventsKey, 'MINID', '~', string.format('%d', target) .. '-0')
