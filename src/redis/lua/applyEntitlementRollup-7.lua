--[[
  applyEntitlementRollup: apply one rollup (or correction) to one subject's usage of one metered
  feature, and emit the notifications it triggers, as one atomic step.

  Guarantees
  - Exactly-once effect: the value applied is remembered per rollup identity (feature, window start,
    group) with its revision. A redelivered revision changes nothing; a correction (higher revision,
    new total) adds only the difference; an older revision arriving late is ignored.
  - The difference goes to the usage of the period the window was first attributed to (by window
    start) and to the per-boundary counters the burn-down needs (usage before each grant start/expiry).
  - Notifications (threshold reached, allowance exhausted) are written to the partition's outbox in
    this same step, each at most once per (feature, subject, period, threshold): a marker field in the
    usage hash (HSETNX) guards them. The relay moves them to BullMQ with a deterministic job id.
  - The plan (period, allowances, thresholds) was computed by the caller from definition version
    ARGV[1]; if the definition changed since, nothing is written and 'stale' tells it to re-plan.
  - A window starting before the usage's `since` (tracking restarted after it) is not counted.

  Input:
    KEYS[1] subject definition hash   KEYS[2] usage hash (feature, subject)
    KEYS[3] contributions hash (feature, UTC day of the window start, subject)
    KEYS[4] notification outbox stream   KEYS[5] reset schedule (zset)
    KEYS[6] group tails of the meter in the partition (set)   KEYS[7] group tails of the subject (set)

    ARGV[1] definition version planned with   ARGV[2] subject   ARGV[3] feature
    ARGV[4] contribution field `<windowStart>|<tail>`   ARGV[5] revision   ARGV[6] value (micro-units)
    ARGV[7] window start ms   ARGV[8] group tail (JSON array of group values without the subject)
    ARGV[9] end of the current period (reset schedule score)
    ARGV[10] contributions expire at (ms)   ARGV[11] usage hash expires at (ms)
    ARGV[12] n thresholds, then n pairs (id, level in micro-units)
    then the burn-down plan of the window's period (includes/entitlementMath.lua readPlan)

  Output: { status, delta, periodUsage, balance, overage, notificationsWritten }
    status: 'applied' | 'duplicate' | 'stale' | 'before-start' (window precedes the tracking) |
            'expired' (window beyond retention)
]]

--@include now
--@include entitlementMath

local rcall = redis.call
local defKey = KEYS[1]
local usageKey = KEYS[2]
local contribKey = KEYS[3]
local outboxKey = KEYS[4]
local resetsKey = KEYS[5]
local groupsKey = KEYS[6]
local subjectGroupsKey = KEYS[7]

local version = ARGV[1]
local subject = ARGV[2]
local feature = ARGV[3]
local field = ARGV[4]
local revision = tonumber(ARGV[5])
local value = ARGV[6]
local ws = tonumber(ARGV[7])
local tail = ARGV[8]
local currentEnd = ARGV[9]
local contribExpireAt = ARGV[10]
local usageExpireAt = ARGV[11]

if (rcall('HGET', defKey, 'ver') or '0') ~= version then
  return { 'stale', '0', '0', '0', '0', 0 }
end

local thresholds = {}
local i = 12
local nThresholds = tonumber(ARGV[i])
for t = 1, nThresholds do
  thresholds[t] = { id = ARGV[i + 2 * t - 1], level = pparse(ARGV[i + 2 * t]) }
end
i = i + 1 + 2 * nThresholds
local plan = readPlan(ARGV, i)

local since = rcall('HGET', usageKey, 'since')
if since and ws < tonumber(since) then
  return { 'before-start', '0', '0', '0', '0', 0 }
end
local nowMs = redisNowMs()
-- A rollup older than the retention of its contribution record could not be recognised if delivered
-- again; the pipeline never emits one (such windows are gone), so only a job stuck that long lands here.
if tonumber(contribExpireAt) <= nowMs then
  return { 'expired', '0', '0', '0', '0', 0 }
end

local function fmtInt(x) return string.format('%d', x) end

-- The contribution already applied for this rollup identity: 'rev|value|periodStart'.
local old = rcall('HGET', contribKey, field)
local oldValue, periodStart = P_ZERO, fmtInt(plan.ps)
if old then
  local a = string.find(old, '|', 1, true)
  local b = string.find(old, '|', a + 1, true)
  if tonumber(string.sub(old, 1, a - 1)) >= revision then
    return { 'duplicate', '0', '0', '0', '0', 0 }
  end
  oldValue = pparse(string.sub(old, a + 1, b - 1))
  periodStart = string.sub(old, b + 1)
end
local delta = psub(pparse(value), oldValue)
local deltaText = pfmt(delta)

rcall('HSET', contribKey, field, revision .. '|' .. value .. '|' .. periodStart)
rcall('PEXPIREAT', contribKey, contribExpireAt)
rcall('SADD', groupsKey, tail)
rcall('SADD', subjectGroupsKey, tail)
rcall('PEXPIREAT', subjectGroupsKey, usageExpireAt)
-- GT: the schedule only moves forward (a correction of an old period must not pull it back).
rcall('ZADD', resetsKey, 'GT', currentEnd, feature .. '\n' .. subject)

if periodStart ~= fmtInt(plan.ps) then
  -- Attributed to another period before the definition changed: correct that period, nothing else.
  rcall('HINCRBY', usageKey, 'p:' .. periodStart, deltaText)
  rcall('PEXPIREAT', usageKey, usageExpireAt)
  return { 'applied', deltaText, rcall('HGET', usageKey, 'p:' .. periodStart), '0', '0', 0 }
end

-- Boundary counters: usage of windows starting before each boundary. A counter created now starts
-- from the period's usage: every window applied so far started before it (see docs, "Grants").
local periodField = 'p:' .. periodStart
local before = rcall('HGET', usageKey, periodField) or '0'
for b = 1, #plan.bounds do
  local bf = 'b:' .. periodStart .. ':' .. fmtInt(plan.bounds[b])
  rcall('HSETNX', usageKey, bf, before)
  if ws < plan.bounds[b] then rcall('HINCRBY', usageKey, bf, deltaText) end
end
-- Re-read rather than use HINCRBY's reply: integer replies become Lua doubles, inexact beyond 2^53.
rcall('HINCRBY', usageKey, periodField, deltaText)
local periodUsage = pparse(rcall('HGET', usageKey, periodField))
rcall('PEXPIREAT', usageKey, usageExpireAt)

local tEval = math.min(nowMs, plan.pe - 1)
local _, overage, balance = burnDown(plan, segmentsOf(usageKey, plan, periodUsage), tEval)

local written = 0
local function notify(kind, id, level)
  if rcall('HSETNX', usageKey, 'n:' .. periodStart .. ':' .. id, fmtInt(nowMs)) == 1 then
    rcall('XADD', outboxKey, '*', 't', kind, 's', subject, 'f', feature, 'ps', periodStart, 'pe', fmtInt(plan.pe),
      'k', id, 'l', level, 'u', pfmt(periodUsage), 'b', pfmt(balance), 'o', pfmt(overage), 'a', pfmt(plan.total),
      'at', fmtInt(nowMs))
    written = written + 1
  end
end
-- Only usage above zero reaches anything (a 0% level, or 100% of a zero allowance, is not reached at 0).
if pcmp(periodUsage, P_ZERO) > 0 then
  for t = 1, #thresholds do
    if pcmp(periodUsage, thresholds[t].level) >= 0 then notify('threshold', thresholds[t].id, pfmt(thresholds[t].level)) end
  end
  if pcmp(balance, P_ZERO) == 0 then notify('exhausted', 'exhausted', pfmt(plan.total)) end
end
return { 'applied', deltaText, pfmt(periodUsage), pfmt(balance), pfmt(overage), written }
