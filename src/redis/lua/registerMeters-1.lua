--[[
  registerMeters: add meters to the prefix's registry (the meters every worker, evaluator and `serve`
  obeys), record the partition count, and bump the registry version when anything changed.

  Guarantees
  - A meter's definition is immutable per slug: a slug already registered with another definition
    (the canonical JSON of event type, aggregation, value property, group-by, window size and zone)
    is refused whole ('conflict'), and nothing is written. This holds for deleted meters too: their
    stored windows keep the old definition's meaning.
  - The partition count is recorded by the first registration and never changed here: another count
    is refused ('partitions'), and nothing is written.
  - Versions only go up, by one per call that adds or reactivates a meter; every meter added by one
    call shares that version (its activation version). Registering what is registered changes nothing.
  - mode 'create' (the API) also refuses a slug that is registered and active ('exists').

  Input:
    KEYS[1] registry hash: `version`, `partitions`, and per meter `d:<slug>` (definition JSON),
            `i:<slug>` (id, name, description as JSON), `v:<slug>` (activation version),
            `c:<slug>` (created, ms), `x:<slug>` (deleted, ms; absent while active)
    ARGV[1] partitions   ARGV[2] mode ('declare' | 'create')
    ARGV[3..] triples: slug, definition JSON, info JSON (kept from the first registration on)

  Output:
    { 'ok', version, addedSlug... } | { 'partitions', storedCount } | { 'conflict', slug, storedDefinition }
    | { 'exists', slug }
]]

--@include now

local rcall = redis.call
local registryKey = KEYS[1]
local partitions = ARGV[1]
local mode = ARGV[2]

local storedPartitions = rcall('HGET', registryKey, 'partitions')
if storedPartitions and storedPartitions ~= partitions then
  return { 'partitions', storedPartitions }
end

for a = 3, #ARGV, 3 do
  local slug, definition = ARGV[a], ARGV[a + 1]
  local stored = rcall('HGET', registryKey, 'd:' .. slug)
  if stored and stored ~= definition then return { 'conflict', slug, stored } end
  if stored and mode == 'create' and rcall('HEXISTS', registryKey, 'x:' .. slug) == 0 then
    return { 'exists', slug }
  end
end

local version = tonumber(rcall('HGET', registryKey, 'version') or '0')
local now = string.format('%d', redisNowMs())
local added = {}
for a = 3, #ARGV, 3 do
  local slug, definition, info = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local fresh = rcall('HSETNX', registryKey, 'd:' .. slug, definition) == 1
  if fresh or rcall('HDEL', registryKey, 'x:' .. slug) == 1 then
    if #added == 0 then version = version + 1 end
    if fresh then rcall('HSET', registryKey, 'i:' .. slug, info, 'c:' .. slug, now) end
    rcall('HSET', registryKey, 'v:' .. slug, version)
    added[#added + 1] = slug
  end
end
if not storedPartitions then
  rcall('HSET', registryKey, 'partitions', partitions)
  if version == 0 then version = 1 end
end
rcall('HSET', registryKey, 'version', version)
return { 'ok', tostring(version), unpack(added) }
