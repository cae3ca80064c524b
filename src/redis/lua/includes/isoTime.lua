-- UTC ISO 8601 text of epoch milliseconds (2026-12-03T10:00:00.000Z), for dead-letter details that
-- operators read. Days to civil date after Howard Hinnant's days_from_civil inverse; exact for any
-- millisecond count below 2^53.
local function isoUtc(ms)
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', year, month, day, math.floor(rem / 3600),
    math.floor(rem % 3600 / 60), rem % 60, ms - s * 1000)
end
