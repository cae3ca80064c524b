--[[
  defineEntitlement: change a subject's entitlement definitions (set or remove an entitlement, add or
  remove a grant) as one atomic step with the usage-tracking and reset-schedule changes it implies.

  Guarantees
  - Optimistic concurrency: nothing changes unless the definition version is still ARGV[1] (the one
    the caller validated against); every change bumps it, which also invalidates the definition caches
    of checkers and evaluators (they compare versions in every step).
  - Usage mode 'restart' (new tracking, or a new measure or usage period) starts usage afresh at the
    latest window start in the candidates that is not after Redis's clock: that window is still open,
    so every window counted from then on is applied after this step (docs/entitlements.md).
  - A grant covers usage from max(effectiveAt, now by Redis's clock): a grant never covers windows that
    were applied before it existed, which keeps the burn-down counters exact.

  Input:
    KEYS[1] subject definition hash   KEYS[2] usage hash (feature, subject)   KEYS[3] reset schedule
    ARGV[1] definition version   ARGV[2] op: 'set' | 'remove' | 'grant' | 'ungrant'
    ARGV[3] feature   ARGV[4] subject
    set/remove: ARGV[5] entitlement JSON ('' to remove)   ARGV[6] usage mode 'keep' | 'restart' | 'drop'
                ARGV[7] reset schedule score ('' to unschedule)   ARGV[8] usage hash expires at (ms)
                ARGV[9] n, then n candidate window starts (ascending) for 'restart'
    grant:      ARGV[5] grant id   ARGV[6] effectiveAt ms   ARGV[7] expiresAt ms or ''   ARGV[8] grant JSON
    ungrant:    ARGV[5] grant id

  Output: { 'ok', newVersion, detail } | { 'stale' } | { 'exists' } | { 'expired' } | { 'missing' }
    detail: since (restart), activeFrom (grant), else ''
]]

--@include now

local rcall = redis.call
local defKey = KEYS[1]
local usageKey = KEYS[2]
local resetsKey = KEYS[3]

local version = ARGV[1]
local op = ARGV[2]
local feature = ARGV[3]
local subject = ARGV[4]

if (rcall('HGET', defKey, 'ver') or '0') ~= version then return { 'stale' } end
local nowMs = redisNowMs()
local detail = ''

local function dropGrants()
  local prefix = 'g:' .. feature .. ':'
  for _, name in ipairs(rcall('HKEYS', defKey)) do
    if string.sub(name, 1, #prefix) == prefix then rcall('HDEL', defKey, name) end
  end
end

if op == 'set' or op == 'remove' then
  local json, mode, resetScore, usageExpireAt = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  if json == '' then
    rcall('HDEL', defKey, 'e:' .. feature)
    dropGrants()
  else
    rcall('HSET', defKey, 'e:' .. feature, json)
  end
  if mode == 'restart' or mode == 'drop' then rcall('DEL', usageKey) end
  if mode == 'drop' then dropGrants() end
  if mode == 'restart' then
    local since = nowMs
    local n = tonumber(ARGV[9])
    for c = 1, n do
      local start = tonumber(ARGV[9 + c])
      if start <= nowMs then since = start end
    end
    detail = string.format('%d', since)
    rcall('HSET', usageKey, 'since', detail)
    rcall('PEXPIREAT', usageKey, usageExpireAt)
  end
  local member = feature .. '\n' .. subject
  if resetScore == '' then
    rcall('ZREM', resetsKey, member)
  else
    rcall('ZADD', resetsKey, resetScore, member)
  end
elseif op == 'grant' then
  local id, effectiveAt, expiresAt, json = ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8]
  local grantField = 'g:' .. feature .. ':' .. id
  if rcall('HEXISTS', defKey, grantField) == 1 then return { 'exists' } end
  local activeFrom = math.max(effectiveAt, nowMs)
  if expiresAt ~= '' and tonumber(expiresAt) <= activeFrom then return { 'expired' } end
  detail = string.format('%d', activeFrom)
  rcall('HSET', defKey, grantField, detail .. '|' .. json)
elseif op == 'ungrant' then
  if rcall('HDEL', defKey, 'g:' .. feature .. ':' .. ARGV[5]) == 0 then return { 'missing' } end
else
  return redis.error_reply('ERR unknown defineEntitlement op ' .. tostring(op))
end
return { 'ok', tostring(rcall('HINCRBY', defKey, 'ver', 1)), detail }
