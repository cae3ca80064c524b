--[[
  Claims due delivery attempts for one replica, under a lease.

  Guarantees: an attempt claimed here is not claimed again (by any replica) until its lease ends:
  its due time moves to now + lease and its lease token is recorded, in one step. A replica that
  dies mid-attempt leaves it due again at the lease end, so the attempt is retried (at least once).
  Members whose channel already has `perChannel` attempts in flight (the caller's counts, plus the
  ones claimed by this call) are skipped, so a slow channel never takes the places of others (no
  head-of-line blocking within the `scan` earliest due members).

  KEYS[1] due         zset   <channelId>\n<eventId> by due time (ms)
  KEYS[2] leases      hash   member -> lease token
  KEYS[3] deliveries  hash   member -> delivery status JSON
  ARGV[1] now (ms)
  ARGV[2] lease (ms)
  ARGV[3] at most this many claims
  ARGV[4] look at most at this many due members
  ARGV[5] attempts in flight per channel, at most
  ARGV[6] lease token
  ARGV[7..] pairs: channel id, attempts the caller has in flight on it

  Returns a flat list: member, its delivery status JSON ('' if none), ...
]]
local rcall = redis.call
local dueKey, leasesKey, deliveriesKey = KEYS[1], KEYS[2], KEYS[3]
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local max, scan, perChannel, token = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]

local inFlight = {}
for i = 7, #ARGV, 2 do inFlight[ARGV[i]] = tonumber(ARGV[i + 1]) end

local out = {}
if max <= 0 then return out end
local candidates = rcall('ZRANGEBYSCORE', dueKey, '-inf', string.format('%d', now), 'LIMIT', 0, scan)
local claimed = 0
local leaseEnd = string.format('%d', now + lease)
for _, member in ipairs(candidates) do
  if claimed >= max then break end
  local channel = string.match(member, '^([^\n]*)\n')
  local n = inFlight[channel] or 0
  if channel and n < perChannel then
    inFlight[channel] = n + 1
    claimed = claimed + 1
    rcall('ZADD', dueKey, 'XX', leaseEnd, member)
    rcall('HSET', leasesKey, member, token)
    out[#out + 1] = member
    out[#out + 1] = rcall('HGET', deliveriesKey, member) or ''
  end
end
return out
