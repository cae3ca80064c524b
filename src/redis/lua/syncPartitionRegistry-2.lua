--[[
  syncPartitionRegistry: bring one partition to a registry version, recording where each meter
  active in it starts counting.

  Guarantees
  - A partition's version only goes up: asked for an older version than it has, nothing changes
    ('newer'; the caller read the registry before a change and must read it again).
  - The version and the activation points change together, in the partition's slot, and applyBatch
    (which refuses a call prepared at another version) reads them there: once a partition is at
    version V, no event is applied in it by a worker that does not know V's meters.
  - A meter's activation point `from:<slug>` is recorded once, when the partition first reaches a
    version that has it: the stream's last generated entry id then, so the meter counts exactly the
    entries added after it, on every replica alike. Meters of the registry's first version count
    from the start ('0-0'): they existed before any worker read the stream. A meter no longer
    active loses its point, and gets a new one if it is activated again.

  Input:
    KEYS[1] partition registry hash: `version`, `from:<slug>`   KEYS[2] the partition's event stream
    ARGV[1] version   ARGV[2..] pairs: slug, activation version of each meter active at that version

  Output: { 'ok', version, field, value, ... (the whole hash) } | { 'newer', version }
]]

local rcall = redis.call
local registryKey = KEYS[1]
local eventsKey = KEYS[2]
local version = tonumber(ARGV[1])

local current = tonumber(rcall('HGET', registryKey, 'version') or '-1')
if current > version then return { 'newer', tostring(current) } end
if current < version then
  local last = '0-0'
  if rcall('EXISTS', eventsKey) == 1 then
    local info = rcall('XINFO', 'STREAM', eventsKey)
    for f = 1, #info, 2 do
      if info[f] == 'last-generated-id' then last = info[f + 1] end
    end
  end
  local active = {}
  for a = 2, #ARGV, 2 do
    local slug = ARGV[a]
    active['from:' .. slug] = true
    rcall('HSETNX', registryKey, 'from:' .. slug, ARGV[a + 1] == '1' and '0-0' or last)
  end
  local flat = rcall('HGETALL', registryKey)
  for f = 1, #flat, 2 do
    local name = flat[f]
    if string.sub(name, 1, 5) == 'from:' and not active[name] then rcall('HDEL', registryKey, name) end
  end
  rcall('HSET', registryKey, 'version', ARGV[1])
end
local reply = { 'ok', ARGV[1] }
local flat = rcall('HGETALL', registryKey)
for f = 1, #flat do reply[#reply + 1] = flat[f] end
return reply
