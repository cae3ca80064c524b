--[[
  renewLease: extend or release a partition lease, only if this replica still holds it.

  Guarantees
  - A replica never extends or deletes a lease another replica acquired after its own expired
    (compare-and-set on the holder's name), so two replicas never both believe they own a partition
    for longer than one lease period.

  Input:
    KEYS[1] lease key
    ARGV[1] consumer name   ARGV[2] ttl ms (0 = release)

  Output: 1 if the lease was held (and renewed or released), 0 if not
]]
local rcall = redis.call
local leaseKey = KEYS[1]
local consumer = ARGV[1]
local ttl = tonumber(ARGV[2])

if rcall('GET', leaseKey) ~= consumer then
  return 0
end
if ttl > 0 then
  rcall('PEXPIRE', leaseKey, ttl)
else
  rcall('DEL', leaseKey)
end
return 1
