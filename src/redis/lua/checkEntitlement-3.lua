--[[
  checkEntitlement: a subject's real-time usage, balance and overage for one feature, in one atomic
  read of its entitlement state and of the live window hashes of its partition.

  Usage = the applied usage of the period (rollups applied by the evaluator) + for each recent window
  and group of the feature: live value (window hash) - value already applied (contribution record).
  The difference is the live value for an open window, 0 for a window whose rollup is applied, the
  pending value for one whose rollup is still on its way, and the correction delta for one changed by
  a late event; so no window is counted twice or skipped, whatever the timing. Only the windows passed
  in ARGV are read (those that may be unapplied: see docs/entitlements.md, "Real-time checks").

  Guarantees
  - Reads only; never writes.
  - 'stale' when the subject's definition version differs from ARGV[1]: the caller re-reads it.

  Input:
    KEYS[1] subject definition hash   KEYS[2] usage hash (feature, subject)
    KEYS[3] partition base `<prefix>:{p<i>}:` (window `w:<meter>:<start>`, contributions
            `ent:con:<feature>:<day>:<subject>` and group sets `ent:tails:<meter>[:<subject>]` derive from it)
    ARGV[1] definition version   ARGV[2] mode: 'v' (only check the version) or 'm' (metered)
    metered only:
    ARGV[3] now (ms)   ARGV[4] meter   ARGV[5] aggregation code ('S' sum or 'C' count)
    ARGV[6] subject   ARGV[7] feature   ARGV[8] subject as a JSON string (the first element of a group)
    ARGV[9] group mode: 'fixed' (ARGV[10] is the one group tail) or 'tails' (ARGV[10] is the filter
            as JSON {position: value} over the tails seen for the meter)
    ARGV[11] most tails to probe from the partition's set before using only the subject's
    ARGV[12] scan budget: in 'tails' mode, window hashes are also scanned (HSCAN MATCH the subject)
             for combinations no rollup has shown yet, newest window first, while their sizes add
             up to at most this many fields
    ARGV[13] n windows, then n pairs (window start, UTC day start of the window start), oldest first
    then the burn-down plan of the current period (includes/entitlementMath.lua readPlan)

  Output: { 'ok', usage, appliedUsage, liveUsage, balance, overage, remaining of each allowance... }
          | { 'ok' } in mode 'v' | { 'stale' }
]]

--@include entitlementMath

local rcall = redis.call
local defKey = KEYS[1]
local usageKey = KEYS[2]
local base = KEYS[3]

if (rcall('HGET', defKey, 'ver') or '0') ~= ARGV[1] then return { 'stale' } end
if ARGV[2] ~= 'm' then return { 'ok' } end

local now = tonumber(ARGV[3])
local meter = ARGV[4]
local agg = ARGV[5]
local subject = ARGV[6]
local feature = ARGV[7]
local subjectJson = ARGV[8]
local groupMode = ARGV[9]
local groupArg = ARGV[10]
local maxGroups = tonumber(ARGV[11])
local scanBudget = tonumber(ARGV[12])
local nWindows = tonumber(ARGV[13])
local windows = {}
local i = 14
for w = 1, nWindows do
  windows[w] = { start = ARGV[i], day = ARGV[i + 1] }
  i = i + 2
end
local plan = readPlan(ARGV, i)
local periodStart = string.format('%d', plan.ps)

local state = rcall('HMGET', usageKey, 'p:' .. periodStart, 'since')
local applied = pparse(state[1])
local since = state[2] and tonumber(state[2]) or -math.huge

-- HMGET in chunks (unpack has a stack limit).
local function hmget(key, fields)
  local out = {}
  for c = 1, #fields, 500 do
    local part = rcall('HMGET', key, unpack(fields, c, math.min(c + 499, #fields)))
    for k = 1, #part do out[c + k - 1] = part[k] end
  end
  return out
end

local function windowKey(w) return base .. 'w:' .. meter .. ':' .. windows[w].start end
local function inPeriod(w)
  local ws = tonumber(windows[w].start)
  return ws >= plan.ps and ws < plan.pe and ws >= since
end

-- The feature's group tails.
local tails
if groupMode == 'fixed' then
  tails = { groupArg }
else
  local filter = cjson.decode(groupArg)
  local seen = {}
  tails = {}
  local function consider(t)
    if seen[t] then return end
    seen[t] = true
    if next(filter) ~= nil then
      local ok, values = pcall(cjson.decode, t)
      if not ok then return end
      for pos, want in pairs(filter) do
        if values[tonumber(pos)] ~= want then return end
      end
    end
    tails[#tails + 1] = t
  end
  local setKey = base .. 'ent:tails:' .. meter
  if rcall('SCARD', setKey) > maxGroups then setKey = setKey .. ':' .. subject end
  for _, t in ipairs(rcall('SMEMBERS', setKey)) do consider(t) end
  -- Combinations no rollup has shown yet (a subject's first usage of a model): scan small window
  -- hashes for the subject's count fields, newest first, within the budget.
  local pattern = 'c:\\[' .. string.gsub(subjectJson, '([%*%?%[%]\\])', '\\%1') .. ',*'
  local skip = #('c:[' .. subjectJson .. ',')
  for w = nWindows, 1, -1 do
    if inPeriod(w) then
      local size = rcall('HLEN', windowKey(w))
      if size > scanBudget then break end
      scanBudget = scanBudget - size
      local cursor = '0'
      repeat
        local res = rcall('HSCAN', windowKey(w), cursor, 'MATCH', pattern, 'COUNT', 1000)
        cursor = res[1]
        for f = 1, #res[2], 2 do consider('[' .. string.sub(res[2][f], skip + 1)) end
      until cursor == '0'
    end
  end
end

local segUsage = segmentsOf(usageKey, plan, applied)
local live = P_ZERO
if #tails > 0 then
  local valueFields = {}
  local prefix = (agg == 'C') and 'c:[' or 'v:['
  for g = 1, #tails do
    local t = tails[g]
    valueFields[g] = (t == '[]') and (prefix .. subjectJson .. ']') or (prefix .. subjectJson .. ',' .. string.sub(t, 2))
  end
  for w = 1, nWindows do
    local ws = tonumber(windows[w].start)
    if inPeriod(w) then
      local current = hmget(windowKey(w), valueFields)
      local contributionFields = {}
      for g = 1, #tails do contributionFields[g] = windows[w].start .. '|' .. tails[g] end
      local done = hmget(base .. 'ent:con:' .. feature .. ':' .. windows[w].day .. ':' .. subject, contributionFields)
      local windowDelta = P_ZERO
      for g = 1, #tails do
        local value = current[g]
        if value and agg == 'C' then value = value .. '000000' end
        local d = pparse(value)
        if done[g] then
          local a = string.find(done[g], '|', 1, true)
          local b = string.find(done[g], '|', a + 1, true)
          d = psub(d, pparse(string.sub(done[g], a + 1, b - 1)))
        end
        windowDelta = padd(windowDelta, d)
      end
      if pcmp(windowDelta, P_ZERO) ~= 0 then
        local j = segmentOf(plan, ws)
        segUsage[j] = padd(segUsage[j], windowDelta)
        live = padd(live, windowDelta)
      end
    end
  end
end

local tEval = math.min(now, plan.pe - 1)
local remaining, overage, balance = burnDown(plan, segUsage, tEval)
local out = { 'ok', pfmt(padd(applied, live)), pfmt(applied), pfmt(live), pfmt(balance), pfmt(overage) }
for a = 1, #remaining do out[#out + 1] = pfmt(remaining[a]) end
return out
