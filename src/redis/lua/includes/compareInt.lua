-- Compares two canonical decimal integer strings (optional leading '-', no leading zeros) exactly,
-- without going through Lua doubles (which lose precision beyond 2^53). Returns -1, 0 or 1.
local function compareInt(a, b)
  local negA = string.byte(a, 1) == 45
  local negB = string.byte(b, 1) == 45
  if negA ~= negB then
    return negA and -1 or 1
  end
  local r
  if #a ~= #b then
    r = (#a < #b) and -1 or 1
  elseif a == b then
    return 0
  else
    r = (a < b) and -1 or 1
  end
  if negA then r = -r end
  return r
end
