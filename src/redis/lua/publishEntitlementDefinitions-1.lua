--[[
  publishEntitlementDefinitions: make a config's entitlement features and defaults the ones every
  evaluator and checker of the prefix applies, under a new version number.

  Guarantees
  - Versions only go up, by one per change of content: publishing what is already published (same
    fingerprint) changes nothing and keeps its version, time and publisher, so replicas starting with
    the same config agree on one version.
  - The document, its fingerprint, version, time (Redis's clock) and publisher change together.
  - The catalog only moves forward: a document published before and since replaced by a later
    version is not published again ('older'), so an evaluator still running an older config (a
    rolling deploy) never takes the catalog back. `seen:<fingerprint>` keeps the version each
    document was published as.

  Input:
    KEYS[1] definitions hash (`ver`, `fp`, `doc`, `at`, `by`)
    ARGV[1] fingerprint   ARGV[2] document (JSON)   ARGV[3] publisher (e.g. host-pid)

  Output:
    { 'unchanged', version, publishedAt, publishedBy }
    { 'older', version, publishedAt, publishedBy, versionItWasPublishedAs }
    { 'published', version, publishedAt, publishedBy, previousVersion, previousAt, previousBy }
      (previous* are '0', '', '' when nothing was published before)
]]

--@include now

local rcall = redis.call
local definitionsKey = KEYS[1]
local fingerprint = ARGV[1]
local doc = ARGV[2]
local publisher = ARGV[3]

local current = rcall('HMGET', definitionsKey, 'ver', 'fp', 'at', 'by')
if current[2] == fingerprint then
  return { 'unchanged', current[1], current[3] or '', current[4] or '' }
end
local seen = rcall('HGET', definitionsKey, 'seen:' .. fingerprint)
if seen and current[1] and tonumber(seen) < tonumber(current[1]) then
  return { 'older', current[1], current[3] or '', current[4] or '', seen }
end
local version = rcall('HINCRBY', definitionsKey, 'ver', 1)
local now = redisNowMs()
rcall('HSET', definitionsKey, 'fp', fingerprint, 'doc', doc, 'at', now, 'by', publisher, 'seen:' .. fingerprint, version)
return { 'published', tostring(version), tostring(now), publisher, current[1] or '0', current[3] or '', current[4] or '' }
