--@include streamIds
-- Event times of stream entries, read inside Redis (for the close step's pending guard).
--

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
local function daysFromCivil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- Epoch ms of an RFC 3339 timestamp, truncated to the millisecond as the worker does (a leap second
-- :60 counts as :59.999); nil when the text is not one.
local function rfc3339Ms(s)
  local y, mo, d, h, mi, sec, rest =
    string.match(s, '^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.*)$')
  if not y then return nil end
  local ms = 0
  local frac = string.match(rest, '^%.(%d+)')
  if frac then
    ms = tonumber(string.sub(frac .. '00', 1, 3))
    rest = string.sub(rest, #frac + 2)
  end
  local offsetMs = 0
  if rest ~= 'Z' and rest ~= 'z' then
    local sign, oh, om = string.match(rest, '^([+-])(%d%d):(%d%d)$')
    if not sign then return nil end
    offsetMs = (tonumber(oh) * 60 + tonumber(om)) * 60000
    if sign == '-' then offsetMs = -offsetMs end
  end
  local secs = tonumber(sec)
  if secs == 60 then
    secs, ms = 59, 999
  end
  local days = daysFromCivil(tonumber(y), tonumber(mo), tonumber(d))
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + secs * 1000 + ms - offsetMs
end

-- The smallest event time of any event in a stream entry, or a bound below it: the entry's
-- ingestion time (the time of an event without `time`), and every `"time":"..."` text in its payload
-- (a `time` key nested in `data` only lowers the bound). A `time` that does not parse gives 0: the
-- guard then holds until the entry is applied. Nil when the entry no longer exists.
local function entryMinEventTime(eventsKey, id)
  local entry = redis.call('XRANGE', eventsKey, id, id)[1]
  if not entry then return nil end
  local best = idParts(id)
  local fields = entry[2]
  for f = 1, #fields, 2 do
    if fields[f] == 'event' or fields[f] == 'events' then
      for text in string.gmatch(fields[f + 1], '"time"%s*:%s*"([^"]*)"') do
        local t = rfc3339Ms(text) or 0
        if t < best then best = t end
      end
    end
  end
  return best
end
