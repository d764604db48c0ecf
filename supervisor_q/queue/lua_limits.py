"""The Lua scripts whose keys belong to no queue: unique locks, middleware limits
(funnel, throttle) and batch counters. Each touches one key or one batch's keys (one
hash tag), so it is one atomic step on Redis Cluster too. Imports only lua (the
prelude).
"""

from supervisor_q.queue.lua import _PRELUDE

# KEYS: 1 lock
# ARGV: 1 token
# Returns: 1 if the lock held token and is now deleted, else 0 (someone else's lock).
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: 1 holders zset (token -> expiry ms)
# ARGV: 1 token, 2 limit, 3 hold ms
# Returns: 0 if token now holds a slot, else ms until the earliest slot expires.
# Expired holders (their worker died) are dropped first, so a lost slot frees itself.
FUNNEL_ACQUIRE = _PRELUDE + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or
   redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + 1000)
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(first[2]) - now)
"""

# KEYS: 1 log zset (member -> start ms)
# ARGV: 1 member, 2 allow, 3 window ms
# Returns: 0 if this start is allowed (and logged), else ms until it would be.
# A sliding log: at most `allow` starts in any window, never a burst at a boundary.
THROTTLE = _PRELUDE + """
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(first[2]) + window - now)
"""

# KEYS: 1 batch state hash, 2 succeeded ids set, 3 failed ids set
# ARGV: 1 job id, 2 the worker's holder name ('' = keep no replay record), 3 the token of
#       its reservation of the job (queue/fencing.py)
# Returns: {counted, fire_then, fire_finally, has_progress}. Idempotent per job id, so a job run
# twice (at-least-once) counts once; the HSETNX flags make each callback fire once
# even when two workers finish the last two jobs at the same instant. The worker sends
# this in the round trip of the job's ack (queue/batchack.py) and retries both when the
# reply is lost: the state keeps, per holder, its last count ("by:<holder>" = the three
# flags, then "<id>|<token>"), and the same call again (same job, same reservation)
# returns the same answer, so the callbacks it won are still dispatched, once.
# It runs once per batch job: one HMGET reads the state's fields it needs (a state
# without 'pending' is none), the failed set is touched only when not empty, and the
# clock (TIME) only read for a callback won: 5 calls in all for most jobs.
BATCH_SUCCEEDED = """
local state = redis.call('HMGET', KEYS[1], 'pending', 'cancelled_at', 'has_progress')
if not state[1] then return {0, 0, 0, 0} end
local mine = ARGV[2] and ARGV[2] ~= '' and ('by:' .. ARGV[2])
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then
  local last = mine and redis.call('HGET', KEYS[1], mine)
  if last and string.sub(last, 4) == ARGV[1] .. '|' .. ARGV[3] then
    return {1, tonumber(string.sub(last, 1, 1)), tonumber(string.sub(last, 2, 2)),
            tonumber(string.sub(last, 3, 3))}
  end
  return {0, 0, 0, 0}
end
local failed = redis.call('SCARD', KEYS[3])
if failed > 0 then failed = failed - redis.call('SREM', KEYS[3], ARGV[1]) end
local pending = redis.call('HINCRBY', KEYS[1], 'pending', -1)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local fire_then, fire_finally = 0, 0
if pending == 0 and not state[2] then
  fire_then = redis.call('HSETNX', KEYS[1], 'then_at', now_ms())
end
if pending <= failed then fire_finally = redis.call('HSETNX', KEYS[1], 'finished_at', now_ms()) end
local progress = state[3] and 1 or 0
if mine then
  redis.call('HSET', KEYS[1], mine,
             fire_then .. fire_finally .. progress .. ARGV[1] .. '|' .. ARGV[3])
end
return {1, fire_then, fire_finally, progress}
"""

# KEYS: 1 batch state hash, 2 succeeded ids set, 3 failed ids set
# ARGV: 1 the worker's holder name ('' = keep no replay record), then per job of this one
#       batch: its id, the token of its reservation
# Returns: four digits per job, in order (counted, fire_then, fire_finally, has_progress):
# what BATCH_SUCCEEDED sent for each job in turn would answer, replay record included
# (the holder's last count, read as it would be before each job), in one call: the
# worker counts the jobs of a batch it acks together (prefetch) with this, so a batch job
# costs its SADD and little else, not a script call of its own.
BATCH_SUCCEEDED_MANY = """
local state = redis.call('HMGET', KEYS[1], 'pending', 'cancelled_at', 'has_progress')
if not state[1] then return string.rep('0000', (#ARGV - 1) / 2) end
local mine = ARGV[1] ~= '' and ('by:' .. ARGV[1])
local progress = state[3] and 1 or 0
local pending, failed = tonumber(state[1]), redis.call('SCARD', KEYS[3])
local counted, last, now, out = 0, nil, nil, {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  if redis.call('SADD', KEYS[2], id) == 0 then
    if last == nil then last = mine and redis.call('HGET', KEYS[1], mine) or false end
    if last and string.sub(last, 4) == id .. '|' .. token then
      out[#out + 1] = '1' .. string.sub(last, 1, 3)
    else
      out[#out + 1] = '0000'
    end
  else
    if failed > 0 then failed = failed - redis.call('SREM', KEYS[3], id) end
    counted, pending = counted + 1, pending - 1
    local fire_then, fire_finally = 0, 0
    if (pending == 0 and not state[2]) or pending <= failed then
      if not now then
        local t = redis.call('TIME')
        now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      end
      if pending == 0 and not state[2] then
        fire_then = redis.call('HSETNX', KEYS[1], 'then_at', now)
      end
      if pending <= failed then fire_finally = redis.call('HSETNX', KEYS[1], 'finished_at', now) end
    end
    last = fire_then .. fire_finally .. progress .. id .. '|' .. token
    out[#out + 1] = '1' .. string.sub(last, 1, 3)
  end
end
if counted > 0 then
  redis.call('HINCRBY', KEYS[1], 'pending', -counted)
  if mine then redis.call('HSET', KEYS[1], mine, last) end
end
return table.concat(out)
"""

# KEYS: 1 batch state hash
# ARGV: 1 a callback ('then', 'catch' or 'finally'), 2 the field its win set ('then_at',
#       'catch_at', 'finished_at': ms), 3 ms the win must be old at least (0: its winner
#       claims it), 4 ms the claim holds, 5 the claimer (host:pid)
# Returns: 1 if the caller now holds the callback's dispatch ("sent:<callback>" = the
# claim's expiry ms|claimer; the caller dispatches it, then sets it to "done"), else 0:
# not won, won too recently, done, or claimed by another whose claim still holds. The
# same claimer claims again (its dispatch met a Redis fault and is tried again).
CLAIM_CALLBACK = _PRELUDE + """
local won = redis.call('HGET', KEYS[1], ARGV[2])
if not won or now - tonumber(won) < tonumber(ARGV[3]) then return 0 end
local field = 'sent:' .. ARGV[1]
local sent = redis.call('HGET', KEYS[1], field)
if sent == 'done' then return 0 end
if sent then
  local expiry, claimer = string.match(sent, '^(%d+)|(.*)$')
  if claimer ~= ARGV[5] and tonumber(expiry or 0) > now then return 0 end
end
redis.call('HSET', KEYS[1], field, (now + tonumber(ARGV[4])) .. '|' .. ARGV[5])
return 1
"""

# KEYS: 1 batch state hash, 2 succeeded ids set (unused), 3 failed ids set
# ARGV: 1 how many counted jobs will never run (a dispatch cut off; 0 for an empty batch)
# Returns: {fire_then, fire_finally}: takes them off total and pending, then finishes the
# batch as BATCH_SUCCEEDED would if nothing is left pending.
BATCH_UNCOUNT = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local gone = tonumber(ARGV[1])
redis.call('HINCRBY', KEYS[1], 'total', -gone)
local pending = redis.call('HINCRBY', KEYS[1], 'pending', -gone)
local fire_then = 0
if pending == 0 and redis.call('HEXISTS', KEYS[1], 'cancelled_at') == 0 then
  fire_then = redis.call('HSETNX', KEYS[1], 'then_at', now)
end
local fire_finally = 0
if pending <= redis.call('SCARD', KEYS[3]) then
  fire_finally = redis.call('HSETNX', KEYS[1], 'finished_at', now)
end
return {fire_then, fire_finally}
"""

# KEYS: 1 batch state hash, 2 succeeded ids set, 3 failed ids set
# ARGV: 1 job id, 2 jobs of its chain that will now never run (taken off the batch)
# Returns: {counted, fire_catch, fire_finally}
BATCH_FAILED = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0} end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return {0, 0, 0} end
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return {0, 0, 0} end
local skipped = tonumber(ARGV[2])
if skipped > 0 then
  redis.call('HINCRBY', KEYS[1], 'total', -skipped)
  redis.call('HINCRBY', KEYS[1], 'pending', -skipped)
end
if redis.call('HGET', KEYS[1], 'allow_failures') ~= '1' then
  redis.call('HSETNX', KEYS[1], 'cancelled_at', now)
end
local fire_catch = redis.call('HSETNX', KEYS[1], 'catch_at', now)
local pending = tonumber(redis.call('HGET', KEYS[1], 'pending'))
local fire_finally = 0
if pending <= redis.call('SCARD', KEYS[3]) then
  fire_finally = redis.call('HSETNX', KEYS[1], 'finished_at', now)
end
return {1, fire_catch, fire_finally}
"""
