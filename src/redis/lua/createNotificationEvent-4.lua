--[[
  Creates a notification event and its deliveries, at most once per event id.

  Guarantees: the event, its place in the index, and one pending delivery per channel (due at once)
  are written together or not at all; a second call with the same event id (a relay replaying its
  outbox after a crash, a second evaluator) changes nothing. The feed derives the id from the source
  notification and the rule, so a threshold crossed once is one event.

  KEYS[1] events      hash   event id -> event JSON
  KEYS[2] index       zset   event id by creation time (ms)
  KEYS[3] deliveries  hash   <channelId>\n<eventId> -> delivery status JSON
  KEYS[4] due         zset   <channelId>\n<eventId> by the time its next attempt is due (ms)
  ARGV[1] event id
  ARGV[2] creation time (ms)
  ARGV[3] event JSON
  ARGV[4] initial delivery status JSON
  ARGV[5..] channel ids

  Returns 1 when created, 0 when the event already existed.
]]
local rcall = redis.call
local eventsKey, indexKey, deliveriesKey, dueKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local eventId, createdAt, eventJson, statusJson = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

if rcall('HSETNX', eventsKey, eventId, eventJson) == 0 then return 0 end
rcall('ZADD', indexKey, createdAt, eventId)
for i = 5, #ARGV do
  local member = ARGV[i] .. '\n' .. eventId
  rcall('HSET', deliveriesKey, member, statusJson)
  rcall('ZADD', dueKey, createdAt, member)
end
return 1
