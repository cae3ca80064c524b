--[[
  resetEntitlementPeriod: process a due period reset of one (feature, subject): emit the
  `entitlement.reset` notification of the new period, schedule the next reset, and forget the usage
  of periods before the previous one, as one atomic step.

  Guarantees
  - At most one reset notification per (feature, subject, period): a marker field in the usage hash
    guards it, and the schedule entry is moved only by the replica that still sees the score it read
    (ARGV[5]); another replica that raced it gets 'moved' and does nothing.
  - 'stale' when the definition changed since the caller planned (it re-plans).

  Input:
    KEYS[1] subject definition hash   KEYS[2] usage hash (feature, subject)   KEYS[3] reset schedule
    KEYS[4] notification outbox stream
    ARGV[1] definition version   ARGV[2] op: 'reset' | 'drop' (no metered entitlement any more)
    ARGV[3] feature   ARGV[4] subject   ARGV[5] schedule score the caller read
    ARGV[6] new period start   ARGV[7] new period end   ARGV[8] allowance of the new period (micro-units)
    ARGV[9] keep usage of periods starting at or after this   ARGV[10] usage hash expires at (ms)

  Output: { status, notificationsWritten }   status: 'reset' | 'dropped' | 'moved' | 'stale'
]]

--@include now
--@include entitlementMath

local rcall = redis.call
local defKey = KEYS[1]
local usageKey = KEYS[2]
local resetsKey = KEYS[3]
local outboxKey = KEYS[4]

local feature = ARGV[3]
local subject = ARGV[4]
local member = feature .. '\n' .. subject

if (rcall('HGET', defKey, 'ver') or '0') ~= ARGV[1] then return { 'stale', 0 } end
local score = rcall('ZSCORE', resetsKey, member)
if not score or tonumber(score) ~= tonumber(ARGV[5]) then return { 'moved', 0 } end
if ARGV[2] == 'drop' then
  rcall('ZREM', resetsKey, member)
  return { 'dropped', 0 }
end

local nowMs = redisNowMs()
local periodStart, periodEnd = ARGV[6], ARGV[7]
local allowance = pparse(ARGV[8])
local keepFrom = tonumber(ARGV[9])
local written = 0
if rcall('HSETNX', usageKey, 'n:' .. periodStart .. ':reset', string.format('%d', nowMs)) == 1 then
  local usage = pparse(rcall('HGET', usageKey, 'p:' .. periodStart))
  local balance, overage = psub(allowance, usage), P_ZERO
  if pcmp(balance, P_ZERO) < 0 then balance, overage = P_ZERO, psub(usage, allowance) end
  rcall('XADD', outboxKey, '*', 't', 'reset', 's', subject, 'f', feature, 'ps', periodStart, 'pe', periodEnd,
    'k', 'reset', 'l', pfmt(allowance), 'u', pfmt(usage), 'b', pfmt(balance), 'o', pfmt(overage), 'a', pfmt(allowance),
    'at', string.format('%d', nowMs))
  written = 1
end
rcall('ZADD', resetsKey, periodEnd, member)

-- Forget periods before the previous one (fields p:<start>, b:<start>:<t>, n:<start>:<id>).
for _, name in ipairs(rcall('HKEYS', usageKey)) do
  local kind = string.sub(name, 1, 2)
  if kind == 'p:' or kind == 'b:' or kind == 'n:' then
    local stop = string.find(name, ':', 3, true)
    local start = tonumber(string.sub(name, 3, stop and stop - 1 or nil))
    if start and start < keepFrom then rcall('HDEL', usageKey, name) end
  end
end
rcall('PEXPIREAT', usageKey, ARGV[10])
return { 'reset', written }
