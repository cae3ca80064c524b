--[[
  (Re)schedules a delivery: a resend, or a delivery whose channel was added to an existing event.

  Guarantees: the status and the due time are written together, and any lease on the member is
  dropped, so an attempt still in flight from before cannot overwrite the new schedule.

  KEYS[1] due         zset
  KEYS[2] leases      hash
  KEYS[3] deliveries  hash
  ARGV[1] member (<channelId>\n<eventId>)
  ARGV[2] due (ms)
  ARGV[3] delivery status JSON

  Returns 1.
]]
local rcall = redis.call
local dueKey, leasesKey, deliveriesKey = KEYS[1], KEYS[2], KEYS[3]
local member, due, statusJson = ARGV[1], ARGV[2], ARGV[3]

rcall('HDEL', leasesKey, member)
rcall('HSET', deliveriesKey, member, statusJson)
rcall('ZADD', dueKey, due, member)
return 1
