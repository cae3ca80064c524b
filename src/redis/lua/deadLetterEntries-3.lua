--[[
  deadLetterEntries: move poison entries (delivered too many times without being applied) to the
  dead-letter stream and acknowledge them, as one atomic step per call.

  Guarantees
  - An entry is moved only while it is still pending in the group: one that was applied (acked)
    meanwhile is left alone, so nothing is both counted and dead-lettered.
  - The dead letter carries the original entry value unchanged, the delivery count and the last error
    recorded for the entry (which is then forgotten).

  Input:
    KEYS[1] events stream   KEYS[2] dead-letter stream   KEYS[3] errors hash (entry id -> last error)
    ARGV[1] consumer group  ARGV[2..] pairs of entry id, delivery count

  Output: number of entries dead-lettered
]]

--@include now

local rcall = redis.call
local eventsKey = KEYS[1]
local deadLetterKey = KEYS[2]
local errorsKey = KEYS[3]
local group = ARGV[1]

local nowMs = string.format('%d', redisNowMs())
local moved = 0
for i = 2, #ARGV, 2 do
  local id, deliveries = ARGV[i], ARGV[i + 1]
  if #rcall('XPENDING', eventsKey, group, id, id, 1) == 1 then
    local payload, field = '', 'event'
    local entry = rcall('XRANGE', eventsKey, id, id)[1]
    if entry then
      local fields = entry[2]
      for f = 1, #fields, 2 do
        if fields[f] == 'event' or fields[f] == 'events' then
          payload, field = fields[f + 1], fields[f]
        end
      end
    end
    local lastError = rcall('HGET', errorsKey, id) or 'no error recorded'
    rcall('XADD', deadLetterKey, '*', 'reason', 'poison', 'detail', lastError, 'entry', id, 'index', '-1',
      'field', field, 'payload', payload, 'deliveries', deliveries, 'at', nowMs)
    rcall('XACK', eventsKey, group, id)
    rcall('HDEL', errorsKey, id)
    moved = moved + 1
  end
end
return moved
