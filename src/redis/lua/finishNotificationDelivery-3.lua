--[[
  Records the outcome of a claimed delivery attempt, if the claim still holds.

  Guarantees: only the holder of the attempt's lease records it; an outcome arriving after the lease
  was taken over (the lease ended, or the event was resent meanwhile) changes nothing. The status and
  the next due time (or the removal from the due set, when delivered or failed for good) are written
  together.

  KEYS[1] due         zset
  KEYS[2] leases      hash   member -> lease token
  KEYS[3] deliveries  hash   member -> delivery status JSON
  ARGV[1] member (<channelId>\n<eventId>)
  ARGV[2] lease token of the claim
  ARGV[3] new delivery status JSON
  ARGV[4] next attempt due (ms), or '' when there is none

  Returns 1 when recorded, 0 when the claim no longer held.
]]
local rcall = redis.call
local dueKey, leasesKey, deliveriesKey = KEYS[1], KEYS[2], KEYS[3]
local member, token, statusJson, nextDue = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

if rcall('HGET', leasesKey, member) ~= token then return 0 end
rcall('HDEL', leasesKey, member)
rcall('HSET', deliveriesKey, member, statusJson)
if nextDue == '' then
  rcall('ZREM', dueKey, member)
else
  rcall('ZADD', dueKey, nextDue, member)
end
return 1
