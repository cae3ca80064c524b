--[[
  deleteMeter: stop a meter's aggregation from the next registry version on.

  Guarantees
  - The meter's definition stays registered (marked deleted), so its slug cannot come back with
    another definition while data of the old one may be kept, and its open windows still close and
    emit, its stored windows stay queryable.
  - The version goes up by one if the meter was active; deleting a deleted meter changes nothing.

  Input:  KEYS[1] registry hash (see registerMeters.lua)   ARGV[1] slug
  Output: { 'ok', version } | { 'missing' }
]]

--@include now

local rcall = redis.call
local registryKey = KEYS[1]
local slug = ARGV[1]

if rcall('HEXISTS', registryKey, 'd:' .. slug) == 0 then return { 'missing' } end
if rcall('HSETNX', registryKey, 'x:' .. slug, string.format('%d', redisNowMs())) == 0 then
  return { 'ok', rcall('HGET', registryKey, 'version') }
end
return { 'ok', tostring(rcall('HINCRBY', registryKey, 'version', 1)) }
