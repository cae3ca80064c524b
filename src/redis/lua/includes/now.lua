-- Redis's own clock in epoch milliseconds (the clock stream ids are made from).
local function redisNowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
