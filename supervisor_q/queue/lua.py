"""Every Lua script, each headed by its KEYS/ARGV/return contract.

All keys of one script belong to one queue (one Cluster hash tag), so a script
is one atomic step on standalone Redis and on Redis Cluster alike. Times are the
server's clock (TIME) in milliseconds, so hosts with skewed clocks agree on
deadlines. Imports nothing else from the package.
"""

# Shared prelude: server time in ms, and "make a job ready" (list + wake-up token +
# the time it became ready, for wait-time measurements).
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function make_ready(ready, notify, enqueued, id, at)
  redis.call('RPUSH', ready, id)
  redis.call('RPUSH', notify, '1')
  redis.call('HSET', enqueued, id, at)
end
local function ready_after(delay, ready, notify, enqueued, delayed, id)
  if delay > 0 then
    redis.call('ZADD', delayed, now + delay, id)
  else
    make_ready(ready, notify, enqueued, id, now)
  end
end
"""

# KEYS: 1 ready, 2 notify, 3 delayed, 4 payloads, 5 enqueued, 6 attempts
# ARGV: 1 id, 2 payload JSON, 3 delay in ms (0 = now), 4 attempts already made
# Returns: 1
PUSH = _PRELUDE + """
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
local attempts = tonumber(ARGV[4])
if attempts > 0 then redis.call('HSET', KEYS[6], ARGV[1], attempts) end
ready_after(tonumber(ARGV[3]), KEYS[1], KEYS[2], KEYS[5], KEYS[3], ARGV[1])
return 1
"""

# Acknowledge (delete) one reserved job; a no-op unless it is still reserved by us.
_ACK_BODY = """
local function ack(id)
  if redis.call('ZREM', KEYS[4], id) == 1 then
    redis.call('HDEL', KEYS[5], id)
    redis.call('HDEL', KEYS[6], id)
    redis.call('HDEL', KEYS[7], id)
    redis.call('HDEL', KEYS[8], id)
    return 1
  end
  return 0
end
""" + """
-- >>> job lookup (queue/jobinfo.py): the done record of an acked job.
-- KEYS 9 running (hash id -> reservation JSON), 10 recent (zset id -> forget-at ms),
-- 11 recent records (hash id -> done record JSON). keep: ms the record stays findable;
-- cap: most records kept per queue (the soonest forgotten go first).
local recorded_keep = 0
local function record_done(id, keep, record)
  redis.call('HDEL', KEYS[9], id)
  keep = tonumber(keep) or 0
  if keep <= 0 or record == '' then return end
  redis.call('HSET', KEYS[11], id, record)
  redis.call('ZADD', KEYS[10], now + keep, id)
  if keep > recorded_keep then recorded_keep = keep end
end
local function trim_done(cap)
  if recorded_keep == 0 then return end
  local old = redis.call('ZRANGEBYSCORE', KEYS[10], '-inf', now, 'LIMIT', 0, 100)
  local over = redis.call('ZCARD', KEYS[10]) - #old - tonumber(cap)
  if over > 1000 then over = 1000 end  -- a lowered cap is reached over several calls
  if over > 0 then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[10], #old, #old + over - 1)) do
      table.insert(old, id)
    end
  end
  if #old > 0 then
    redis.call('ZREM', KEYS[10], unpack(old))
    redis.call('HDEL', KEYS[11], unpack(old))
  end
  for i = 10, 11 do
    if redis.call('PTTL', KEYS[i]) < recorded_keep then
      redis.call('PEXPIRE', KEYS[i], recorded_keep)
    end
  end
end
-- <<< job lookup
"""

# Move due delayed jobs and expired reservations back to the ready list.
_MIGRATE_BODY = """
local function migrate(from)
  local due = redis.call('ZRANGEBYSCORE', from, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(due) do
    redis.call('ZREM', from, id)
    make_ready(KEYS[1], KEYS[2], KEYS[8], id, now)
  end
end
"""

# KEYS: 1 ready, 2 notify, 3 delayed, 4 reserved, 5 payloads, 6 attempts, 7 exceptions,
#       8 enqueued, 9 running, 10 recent, 11 recent records (job lookup, see _ACK_BODY)
# ARGV: 1 default timeout ms, 2 reservation margin ms, 3 how many jobs to reserve at most,
#       4 the worker as a JSON fragment ('"host":"h","pid":1'; '' = record no running
#       job), 5 cap of done records, 6.. finished jobs to ack first, three values each:
#       id, ms its done record is kept (0 = none), done record JSON
#       (none, one, or several with prefetch)
# Returns: {acked count, next_delayed_ms or false,
#           then per job: id, payload, attempts, exceptions, waited_ms}
# The acks of finished jobs ride in the same round trip as the next reserve.
# The reservation deadline comes from the job's own timeout (read from the head of
# its payload, which dispatch writes as {"v":1,"timeout":N,...}) plus the margin.
RESERVE = _PRELUDE + _ACK_BODY + _MIGRATE_BODY + """
local acked = 0
for i = 6, #ARGV, 3 do
  local done = ack(ARGV[i])
  if done == 1 then record_done(ARGV[i], ARGV[i + 1], ARGV[i + 2]) end
  acked = acked + done
end
trim_done(ARGV[5])
migrate(KEYS[3])
migrate(KEYS[4])
local out = {acked, false}
local wanted = tonumber(ARGV[3])
local got = 0
while got < wanted do
  local id = redis.call('LPOP', KEYS[1])
  if not id then break end
  -- An id without a payload is reserved too, with '' as payload: the worker fails it
  -- ("no payload"), which also clears its enqueued/attempts entries.
  local payload = redis.call('HGET', KEYS[5], id) or ''
  local timeout = tonumber(string.match(payload, '^{"v":%d+,"timeout":([%d%.]+)'))
  local timeout_ms = timeout and math.floor(timeout * 1000) or tonumber(ARGV[1])
  redis.call('ZADD', KEYS[4], now + timeout_ms + tonumber(ARGV[2]), id)
  local attempts = redis.call('HINCRBY', KEYS[6], id, 1)
  local exceptions = tonumber(redis.call('HGET', KEYS[7], id) or '0')
  local since = tonumber(redis.call('HGET', KEYS[8], id) or now)
  if ARGV[4] ~= '' then  -- job lookup: who runs it, since when
    redis.call('HSET', KEYS[9], id, '{"reserved_at":' .. now .. ',' .. ARGV[4] .. '}')
  end
  table.insert(out, id)
  table.insert(out, payload)
  table.insert(out, attempts)
  table.insert(out, exceptions)
  table.insert(out, now - since)
  got = got + 1
end
-- Keep wake-up tokens no more numerous than ready jobs, so idle workers are not
-- woken for jobs that busy workers already took.
local ready_len = redis.call('LLEN', KEYS[1])
if ready_len == 0 then
  redis.call('DEL', KEYS[2])
elseif redis.call('LLEN', KEYS[2]) > ready_len then
  redis.call('LTRIM', KEYS[2], 0, ready_len - 1)
end
if got == 0 then
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if first[2] then out[2] = tonumber(first[2]) - now end
end
return out
"""

# KEYS: as RESERVE's
# ARGV: 1 cap of done records, 2.. three values per job: id, ms its done record is kept
#       (0 = none), done record JSON (see RESERVE)
# Returns: how many of the jobs were reserved and are now deleted
ACK = _PRELUDE + _ACK_BODY + """
local acked = 0
for i = 2, #ARGV, 3 do
  local done = ack(ARGV[i])
  if done == 1 then record_done(ARGV[i], ARGV[i + 1], ARGV[i + 2]) end
  acked = acked + done
end
trim_done(ARGV[1])
return acked
"""

# KEYS: 1 ready, 2 notify, 3 delayed, 4 reserved, 5 exceptions, 6 enqueued, 7 attempts
# ARGV: 1 id, 2 delay ms, 3 '1' to count one more exception,
#       4 expected attempts ('' = any): the master hands back only the attempt it saw,
#         never a later attempt another worker holds now,
#       5 '1' to give the attempt back (a graceful shutdown interrupted the job)
# Returns: 1 if the job was reserved and is now delayed or ready again, else 0
# (0 means someone else already recovered or finished it: do nothing twice).
RELEASE = _PRELUDE + """
if redis.call('ZSCORE', KEYS[4], ARGV[1]) == false then return 0 end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[7], ARGV[1]) ~= ARGV[4] then return 0 end
redis.call('ZREM', KEYS[4], ARGV[1])
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[5], ARGV[1], 1) end
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[7], ARGV[1], -1) end
ready_after(tonumber(ARGV[2]), KEYS[1], KEYS[2], KEYS[6], KEYS[3], ARGV[1])
return 1
"""

# KEYS: 1 reserved, 2 attempts
# ARGV: 1 id, 2 ms from now the reservation must last, 3 attempts of the holder
# Returns: 1 if the holder's reservation now ends that late, 0 if it no longer holds it.
# For a job whose declared timeout is longer than the one its reservation was computed
# from (a payload dispatched by name carries none): it must not outlive its reservation.
EXTEND = _PRELUDE + """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[3] then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""

# KEYS: 1 reserved, 2 payloads, 3 attempts, 4 exceptions, 5 enqueued, 6 failed,
#       7 failed_records, 8 running (job lookup: its entry goes)
# ARGV: 1 id, 2 failed record JSON, 3 failed-at ms, 4 '1' to fail even if not reserved,
#       5 expected attempts ('' = any; see RELEASE)
# Returns: 1 if the job moved to the failed store, else 0
FAIL = """
if ARGV[5] ~= '' and redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[5] then return 0 end
local was_reserved = redis.call('ZREM', KEYS[1], ARGV[1])
if was_reserved == 0 and ARGV[4] ~= '1' then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[8], ARGV[1])
redis.call('ZADD', KEYS[6], tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[7], ARGV[1], ARGV[2])
return 1
"""

# KEYS: 1 ready, 2 notify, 3 failed, 4 failed_records, 5 payloads, 6 attempts,
#       7 exceptions, 8 enqueued
# ARGV: 1 id, 2 payload JSON to queue again
# Returns: 1 if the failed job is queued again with fresh attempts, 0 if it was
# not in the failed store (already retried or forgotten).
RETRY_FAILED = _PRELUDE + """
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
make_ready(KEYS[1], KEYS[2], KEYS[8], ARGV[1], now)
return 1
"""

# KEYS: 1 ready, 2 enqueued
# ARGV: none
# Returns: {ready length, ms the oldest ready job has waited (0 when empty)}
LOAD = _PRELUDE + """
local len = redis.call('LLEN', KEYS[1])
if len == 0 then return {0, 0} end
local head = redis.call('LINDEX', KEYS[1], 0)
local since = tonumber(redis.call('HGET', KEYS[2], head) or now)
return {len, now - since}
"""

# KEYS: 1 payloads, 2 reserved, 3 delayed, 4 attempts, 5 exceptions, 6 running, 7 recent,
#       8 recent records, 9 failed records
# ARGV: 1 id
# Returns: {server now ms, payload, reservation deadline, delayed until, attempts,
#           exceptions, running JSON, forget-at of the done record, done record JSON,
#           failed record JSON}, each false (nil) where absent: one job, one queue,
#           one consistent instant (job lookup, queue/jobinfo.py).
JOB_INFO = _PRELUDE + """
local id = ARGV[1]
return {now, redis.call('HGET', KEYS[1], id), redis.call('ZSCORE', KEYS[2], id),
        redis.call('ZSCORE', KEYS[3], id), redis.call('HGET', KEYS[4], id),
        redis.call('HGET', KEYS[5], id), redis.call('HGET', KEYS[6], id),
        redis.call('ZSCORE', KEYS[7], id), redis.call('HGET', KEYS[8], id),
        redis.call('HGET', KEYS[9], id)}
"""

# ---------------------------------------------------------------------------
# Job workflows and controls (chains, batches, locks, rate limits). Each script
# touches the keys of one queue or of one batch/lock only (one hash tag).

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
# ARGV: 1 job id
# Returns: {counted, fire_then, fire_finally}. Idempotent per job id, so a job run
# twice (at-least-once) counts once; the HSETNX flags make each callback fire once
# even when two workers finish the last two jobs at the same instant.
BATCH_SUCCEEDED = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0} end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return {0, 0, 0} end
redis.call('SREM', KEYS[3], ARGV[1])
local pending = redis.call('HINCRBY', KEYS[1], 'pending', -1)
local failed = redis.call('SCARD', KEYS[3])
local fire_then = 0
if pending == 0 and redis.call('HEXISTS', KEYS[1], 'cancelled_at') == 0 then
  fire_then = redis.call('HSETNX', KEYS[1], 'then_at', now)
end
local fire_finally = 0
if pending <= failed then fire_finally = redis.call('HSETNX', KEYS[1], 'finished_at', now) end
return {1, fire_then, fire_finally}
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
