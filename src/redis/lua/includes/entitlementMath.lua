-- Exact arithmetic on scaled int64 values (micro-units, canonical decimal integer strings as HGET and
-- HINCRBY return them) for the entitlement steps. Lua numbers are doubles and lose integers beyond 2^53
-- (9e9 units of usage), so a value is a pair {hi, lo} = hi * 1e9 + lo with 0 <= lo < 1e9: both parts
-- stay far below 2^53 for every int64.
local P_BASE = 1000000000
local P_ZERO = { 0, 0 }

local function pnorm(hi, lo)
  if lo >= P_BASE then return { hi + 1, lo - P_BASE } end
  if lo < 0 then return { hi - 1, lo + P_BASE } end
  return { hi, lo }
end

local function pparse(s)
  if not s or s == '' then return P_ZERO end
  local neg = string.byte(s, 1) == 45
  local digits = neg and string.sub(s, 2) or s
  local hi, lo = 0, 0
  if #digits <= 9 then
    lo = tonumber(digits)
  else
    hi, lo = tonumber(string.sub(digits, 1, -10)), tonumber(string.sub(digits, -9))
  end
  if neg then return pnorm(-hi, -lo) end
  return { hi, lo }
end

local function padd(a, b) return pnorm(a[1] + b[1], a[2] + b[2]) end
local function psub(a, b) return pnorm(a[1] - b[1], a[2] - b[2]) end

local function pcmp(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] and -1 or 1 end
  if a[2] ~= b[2] then return a[2] < b[2] and -1 or 1 end
  return 0
end

local function pfmt(a)
  if a[1] < 0 then return '-' .. pfmt(pnorm(-a[1], -a[2])) end
  if a[1] == 0 then return string.format('%d', a[2]) end
  return string.format('%d%09d', a[1], a[2])
end

-- Reads a burn-down plan from ARGV at index i (see entitlements/model.ts planArgs):
-- periodStart, periodEnd, n, boundaries x n, m, (id, amount, from, to) x m. Returns plan, next index.
local function readPlan(argv, i)
  local plan = { ps = tonumber(argv[i]), pe = tonumber(argv[i + 1]), bounds = {}, allowances = {}, total = P_ZERO }
  local n = tonumber(argv[i + 2])
  i = i + 3
  for b = 1, n do plan.bounds[b] = tonumber(argv[i + b - 1]) end
  i = i + n
  local m = tonumber(argv[i])
  i = i + 1
  for a = 1, m do
    local amount = pparse(argv[i + 1])
    plan.allowances[a] = { id = argv[i], amount = amount, from = tonumber(argv[i + 2]), to = tonumber(argv[i + 3]) }
    plan.total = padd(plan.total, amount)
    i = i + 4
  end
  return plan, i
end

-- Burns usage down, segment by segment in time order. `segUsage[j]` is the usage of windows starting
-- in segment j ([ps, b1), [b1, b2), ..., [bn, pe)). Within a segment the allowances covering it are
-- consumed in plan order; what none covers is overage. Negative segment usage (a SUM of negative
-- values) restores nothing: it counts as zero here. Returns remaining per allowance, overage, and the
-- balance at tEval (what is left of the allowances covering tEval).
local function burnDown(plan, segUsage, tEval)
  local remaining = {}
  for a = 1, #plan.allowances do remaining[a] = plan.allowances[a].amount end
  local overage = P_ZERO
  for j = 1, #segUsage do
    local left = segUsage[j]
    if pcmp(left, P_ZERO) > 0 then
      local s = (j == 1) and plan.ps or plan.bounds[j - 1]
      for a = 1, #plan.allowances do
        local al = plan.allowances[a]
        if al.from <= s and al.to > s and pcmp(remaining[a], P_ZERO) > 0 then
          if pcmp(remaining[a], left) >= 0 then
            remaining[a] = psub(remaining[a], left)
            left = P_ZERO
            break
          end
          left = psub(left, remaining[a])
          remaining[a] = P_ZERO
        end
      end
      overage = padd(overage, left)
    end
  end
  local balance = P_ZERO
  for a = 1, #plan.allowances do
    local al = plan.allowances[a]
    if al.from <= tEval and al.to > tEval then balance = padd(balance, remaining[a]) end
  end
  return remaining, overage, balance
end

-- The usage before each boundary of `plan`, from the usage hash (`b:<ps>:<t>`; a boundary without a
-- counter has seen every applied window before it, so it is the period's usage), as segment usages.
local function segmentsOf(usageKey, plan, periodUsage)
  local segUsage = {}
  local prev = P_ZERO
  if #plan.bounds > 0 then
    local fields = {}
    for b = 1, #plan.bounds do fields[b] = 'b:' .. string.format('%d', plan.ps) .. ':' .. string.format('%d', plan.bounds[b]) end
    local before = redis.call('HMGET', usageKey, unpack(fields))
    for b = 1, #plan.bounds do
      local v = before[b] and pparse(before[b]) or periodUsage
      segUsage[b] = psub(v, prev)
      prev = v
    end
  end
  segUsage[#plan.bounds + 1] = psub(periodUsage, prev)
  return segUsage
end

-- Index of the segment containing window start ws.
local function segmentOf(plan, ws)
  local j = 1
  for b = 1, #plan.bounds do
    if ws >= plan.bounds[b] then j = b + 1 end
  end
  return j
end
