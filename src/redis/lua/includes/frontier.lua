--@include streamIds
-- The applied frontier of a consumer group on a stream: every entry whose id time is below the
-- returned frontier (ms) has been applied, i.e. delivered and acknowledged. It is the smallest pending
-- id, or the last delivered id while undelivered entries remain, else now.
-- Returns frontier, caughtUp (nothing pending or undelivered), lastIdMs, and the smallest pending id
-- (nil when nothing is pending); or nil when the stream or the group does not exist.
local function appliedFrontier(eventsKey, group, nowMs)
  if redis.call('EXISTS', eventsKey) == 0 then return nil end
  local groupInfo
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', eventsKey)) do
    if infoField(g, 'name') == group then groupInfo = g end
  end
  if not groupInfo then return nil end
  local lastId = infoField(redis.call('XINFO', 'STREAM', eventsKey), 'last-generated-id')
  local lastDelivered = infoField(groupInfo, 'last-delivered-id')
  local frontier = nowMs
  local caughtUp = true
  local minPendingId = nil
  if idLess(lastDelivered, lastId) then
    frontier = idParts(lastDelivered)
    caughtUp = false
  end
  if tonumber(infoField(groupInfo, 'pending')) > 0 then
    minPendingId = redis.call('XPENDING', eventsKey, group)[2]
    local minPending = idParts(minPendingId)
    if minPending < frontier then frontier = minPending end
    caughtUp = false
  end
  return frontier, caughtUp, idParts(lastId), minPendingId
end
