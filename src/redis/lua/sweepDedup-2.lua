--[[
  sweepDedup: forget dedup epochs that have left the horizon, a bounded number of bucket keys per call.

  Guarantees
  - Only epochs older than `current - generations` are touched: applyBatch never reads them again
    (it checks the entry's epoch and the `generations` before it), so deleting them cannot let a
    duplicate within the horizon through.
  - Progress is stored (`cursor:<epoch>`), so the sweep resumes where it stopped; the epoch's entry
    is removed from the epochs hash only after all its buckets are gone.

  Input:
    KEYS[1] dedup epochs hash   KEYS[2] partition base `<prefix>:{p<i>}:` (bucket keys `d:<epoch>:<b>`)
    ARGV[1] current epoch       ARGV[2] generations        ARGV[3] max keys to delete in this call

  Output: { keysDeleted, epochsForgotten, more (0|1) }
]]
local rcall = redis.call
local epochsKey = KEYS[1]
local base = KEYS[2]
local current = tonumber(ARGV[1])
local generations = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])

local deleted, forgotten, more = 0, 0, 0
local flat = rcall('HGETALL', epochsKey)
for i = 1, #flat, 2 do
  local name = flat[i]
  local epoch = tonumber(name)
  if epoch and epoch < current - generations then
    if budget <= 0 then
      more = 1
      break
    end
    local buckets = 2 ^ tonumber(flat[i + 1])
    local cursor = tonumber(rcall('HGET', epochsKey, 'cursor:' .. name) or '0')
    local stop = math.min(buckets, cursor + budget)
    local keys = {}
    for b = cursor, stop - 1 do
      keys[#keys + 1] = base .. 'd:' .. name .. ':' .. string.format('%d', b)
      if #keys == 500 then
        deleted = deleted + rcall('UNLINK', unpack(keys))
        keys = {}
      end
    end
    if #keys > 0 then deleted = deleted + rcall('UNLINK', unpack(keys)) end
    budget = budget - (stop - cursor)
    if stop >= buckets then
      rcall('HDEL', epochsKey, name, 'cursor:' .. name)
      forgotten = forgotten + 1
    else
      rcall('HSET', epochsKey, 'cursor:' .. name, string.format('%d', stop))
      more = 1
    end
  end
end
return { deleted, forgotten, more }
