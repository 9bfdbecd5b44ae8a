//! The Lua scripts of the counters the cluster shares (leases, caps, rates), each one round trip.

/// Takes a unit of KEYS[1] (a hash holder -> units) for ARGV[1] unless the
/// units of live holders (whose key ARGV[3]..holder exists) reach ARGV[2];
/// the fields of dead holders are dropped on the way.
pub(super) const ACQUIRE: &str = r"
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local holder, n = fields[i], tonumber(fields[i + 1])
  if holder == ARGV[1] or redis.call('EXISTS', ARGV[3] .. holder) == 1 then
    total = total + n
  else
    redis.call('HDEL', KEYS[1], holder)
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
";

/// GCRA on KEYS[1] (the theoretical arrival time, in microseconds of the
/// server's clock): ARGV[1] the interval, ARGV[2] the burst tolerance, both
/// in microseconds. Returns 0 when allowed, else the wait in microseconds.
pub(super) const RATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then return tat - now - tolerance end
local next = tat + interval
redis.call('SET', KEYS[1], next, 'PX', math.ceil((next - now) / 1000) + 1)
return 0
";

/// Gives back a unit of KEYS[1] held by ARGV[1].
pub(super) const RELEASE: &str = r"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
";
