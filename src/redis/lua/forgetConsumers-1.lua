--[[
  forgetConsumers: remove consumers from a stream's consumer group once they hold nothing.

  Guarantees
  - A consumer is deleted only while it has no pending entries (XGROUP DELCONSUMER would drop them
    from the group's pending list, and they could never be reclaimed), so nothing is ever lost.
  - With ARGV[2] = '' it removes the named consumers (a worker leaving); otherwise every consumer
    idle for at least ARGV[2] ms with nothing pending (replicas that died long ago), except ARGV[3..].

  Input:
    KEYS[1] stream
    ARGV[1] consumer group   ARGV[2] min idle ms or ''   ARGV[3..] consumer names

  Output: number of consumers removed
]]

--@include streamIds

local rcall = redis.call
local stream = KEYS[1]
local group = ARGV[1]
local minIdle = tonumber(ARGV[2])

if rcall('EXISTS', stream) == 0 then return 0 end
local names = {}
for a = 3, #ARGV do names[ARGV[a]] = true end
local removed = 0
local ok, consumers = pcall(rcall, 'XINFO', 'CONSUMERS', stream, group)
if not ok then return 0 end
for _, c in ipairs(consumers) do
  local name = infoField(c, 'name')
  local pending = tonumber(infoField(c, 'pending'))
  local idle = tonumber(infoField(c, 'idle'))
  local chosen
  if minIdle then
    chosen = not names[name] and idle >= minIdle
  else
    chosen = names[name]
  end
  if chosen and pending == 0 then
    rcall('XGROUP', 'DELCONSUMER', stream, group, name)
    removed = removed + 1
  end
end
return removed
