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

# --- fencing (reservation tokens) -------------------------------------------------
# A reserve by a worker that names its holder ("<master id>|<process tag>") records the
# token "<holder>|<attempts>" in the queue's `holders` hash. Its ack, release and fail
# pass the token back and do nothing unless the job still holds it: a worker whose
# reservation expired, or whose dead-declared master's jobs were handed back, cannot
# delete or move the job that now runs elsewhere. An empty or absent token (callers
# older than fencing, the master's hand-backs by attempt) is not checked.
_FENCE = """
local function holds(holders, id, token)
  return token == nil or token == '' or redis.call('HGET', holders, id) == token
end
"""
# --- end fencing ---------------------------------------------------------------------

# Acknowledge (delete) one reserved job; a no-op unless it is still reserved by us
# (and, with a token, by this very reservation: KEYS[9] holders).
_ACK_BODY = _FENCE + """
local function ack(id, token)
  if not holds(KEYS[9], id, token) then return 0 end
  if redis.call('ZREM', KEYS[4], id) == 1 then
    redis.call('HDEL', KEYS[5], id)
    redis.call('HDEL', KEYS[6], id)
    redis.call('HDEL', KEYS[7], id)
    redis.call('HDEL', KEYS[8], id)
    redis.call('HDEL', KEYS[9], id)
    return 1
  end
  return 0
end
""" + """
-- >>> job lookup (queue/jobinfo.py): the done record of an acked job.
-- KEYS 10 running (hash id -> reservation JSON), 11 recent (zset id -> forget-at ms),
-- 12 recent records (hash id -> done record JSON), 13 recent ended (zset id -> ms it
-- finished). keep: ms the record stays findable; cap: most records kept per queue (the
-- oldest finished go first, whatever their keep: a job just finished stays findable).
local recorded_keep = 0
local function record_done(id, keep, record)
  redis.call('HDEL', KEYS[10], id)
  keep = tonumber(keep) or 0
  if keep <= 0 or record == '' then return end
  redis.call('HSET', KEYS[12], id, record)
  redis.call('ZADD', KEYS[11], now + keep, id)
  redis.call('ZADD', KEYS[13], now, id)
  if keep > recorded_keep then recorded_keep = keep end
end
local function trim_done(cap)
  if recorded_keep == 0 then return end
  local old = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', now, 'LIMIT', 0, 100)
  if #old > 0 then
    redis.call('ZREM', KEYS[11], unpack(old))
    redis.call('ZREM', KEYS[13], unpack(old))
    redis.call('HDEL', KEYS[12], unpack(old))
  end
  local over = redis.call('ZCARD', KEYS[11]) - tonumber(cap)
  if over > 0 then  -- a hundredth of the cap more: the next acks need not trim each
    over = over + math.floor(tonumber(cap) / 100)
  end
  if over > 1000 then over = 1000 end  -- a lowered cap is reached over several calls
  if over > 0 then
    local drop = redis.call('ZRANGE', KEYS[13], 0, over - 1)
    if #drop < over then  -- records from before `recent ended`: the soonest forgotten
      for _, id in ipairs(redis.call('ZRANGE', KEYS[11], 0, over - #drop - 1)) do
        table.insert(drop, id)
      end
    end
    redis.call('ZREM', KEYS[11], unpack(drop))
    redis.call('ZREM', KEYS[13], unpack(drop))
    redis.call('HDEL', KEYS[12], unpack(drop))
  end
  -- The three keys are written together: when the first would expire before this
  -- call's longest keep, all three get twice that, so this is not redone at every ack.
  if redis.call('PTTL', KEYS[11]) < recorded_keep then
    for _, i in ipairs({11, 12, 13}) do redis.call('PEXPIRE', KEYS[i], 2 * recorded_keep) end
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
    redis.call('HDEL', KEYS[9], id)  -- fencing: the old reservation's token is void
    make_ready(KEYS[1], KEYS[2], KEYS[8], id, now)
  end
end
"""

# KEYS: 1 ready, 2 notify, 3 delayed, 4 reserved, 5 payloads, 6 attempts, 7 exceptions,
#       8 enqueued, 9 holders (fencing), 10 running, 11 recent, 12 recent records,
#       13 recent ended (job lookup, see _ACK_BODY)
# ARGV: 1 default timeout ms, 2 reservation margin ms, 3 how many jobs to reserve at most,
#       4 holder ('' = none: no token recorded), 5 the worker as a JSON fragment
#       ('"host":"h","pid":1'; '' = record no running job), 6 cap of done records,
#       7.. finished jobs to ack first, four values each: id, token, ms its done record
#       is kept (0 = none), done record JSON (none, one, or several with prefetch)
# Returns: {acked count, next_delayed_ms or false,
#           then per job: id, payload, attempts, exceptions, waited_ms}
# The acks of finished jobs ride in the same round trip as the next reserve.
# The reservation deadline comes from the job's own timeout (read from the head of
# its payload, which dispatch writes as {"v":2,"timeout":N,...}; v1 too) plus the margin.
RESERVE = _PRELUDE + _ACK_BODY + _MIGRATE_BODY + """
local acked = 0
for i = 7, #ARGV, 4 do
  local done = ack(ARGV[i], ARGV[i + 1])
  if done == 1 then record_done(ARGV[i], ARGV[i + 2], ARGV[i + 3]) end
  acked = acked + done
end
trim_done(ARGV[6])
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
  if ARGV[4] ~= '' then redis.call('HSET', KEYS[9], id, ARGV[4] .. '|' .. attempts)
  else redis.call('HDEL', KEYS[9], id) end  -- fencing
  local exceptions = tonumber(redis.call('HGET', KEYS[7], id) or '0')
  local since = tonumber(redis.call('HGET', KEYS[8], id) or now)
  if ARGV[5] ~= '' then  -- job lookup: who runs it, since when
    redis.call('HSET', KEYS[10], id, '{"reserved_at":' .. now .. ',' .. ARGV[5] .. '}')
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
# ARGV: 1 cap of done records, 2.. four values per job: id, token, ms its done record is
#       kept (0 = none), done record JSON (see RESERVE)
# Returns: how many of the jobs were reserved (by that token) and are now deleted
ACK = _PRELUDE + _ACK_BODY + """
local acked = 0
for i = 2, #ARGV, 4 do
  local done = ack(ARGV[i], ARGV[i + 1])
  if done == 1 then record_done(ARGV[i], ARGV[i + 2], ARGV[i + 3]) end
  acked = acked + done
end
trim_done(ARGV[1])
return acked
"""

# KEYS: 1 ready, 2 notify, 3 delayed, 4 reserved, 5 exceptions, 6 enqueued, 7 attempts,
#       8 holders
# ARGV: 1 id, 2 delay ms, 3 '1' to count one more exception,
#       4 expected attempts ('' = any): the master hands back only the attempt it saw,
#         never a later attempt another worker holds now,
#       5 '1' to give the attempt back (a graceful shutdown interrupted the job),
#       6 the holder's token (absent or '' = not checked; see _FENCE)
# Returns: 1 if the job was reserved and is now delayed or ready again, else 0
# (0 means someone else already recovered or finished it: do nothing twice).
RELEASE = _PRELUDE + _FENCE + """
if redis.call('ZSCORE', KEYS[4], ARGV[1]) == false then return 0 end
if not holds(KEYS[8], ARGV[1], ARGV[6]) then return 0 end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[7], ARGV[1]) ~= ARGV[4] then return 0 end
redis.call('HDEL', KEYS[8], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[5], ARGV[1], 1) end
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[7], ARGV[1], -1) end
ready_after(tonumber(ARGV[2]), KEYS[1], KEYS[2], KEYS[6], KEYS[3], ARGV[1])
return 1
"""

# KEYS: 1 reserved, 2 attempts, 3 holders
# ARGV: 1 id, 2 ms from now the reservation must last, 3 attempts of the holder,
#       4 the holder's token ('' = not checked; see _FENCE)
# Returns: 1 if the holder's reservation now ends that late, 0 if it no longer holds it.
# For a job whose declared timeout is longer than the one its reservation was computed
# from (a payload dispatched by name carries none): it must not outlive its reservation.
# The token matters: a job handed back from a dead master has its attempt given back, so
# the next holder's attempt number equals the stale one's.
EXTEND = _PRELUDE + _FENCE + """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[3] then return 0 end
if not holds(KEYS[3], ARGV[1], ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""

# KEYS: 1 reserved, 2 payloads, 3 attempts, 4 exceptions, 5 enqueued, 6 failed,
#       7 failed_records, 8 holders, 9 running (job lookup: its entry goes)
# ARGV: 1 id, 2 failed record JSON, 3 failed-at ms, 4 '1' to fail even if not reserved,
#       5 expected attempts ('' = any; see RELEASE), 6 the holder's token (see _FENCE)
# Returns: 1 if the job moved to the failed store, else 0
FAIL = _FENCE + """
if ARGV[5] ~= '' and redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[5] then return 0 end
if not holds(KEYS[8], ARGV[1], ARGV[6]) then return 0 end
redis.call('HDEL', KEYS[8], ARGV[1])
local was_reserved = redis.call('ZREM', KEYS[1], ARGV[1])
if was_reserved == 0 and ARGV[4] ~= '1' then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[9], ARGV[1])
redis.call('ZADD', KEYS[6], tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[7], ARGV[1], ARGV[2])
return 1
"""

# KEYS: 1 ready, 2 notify, 3 reserved, 4 attempts, 5 enqueued, 6 holders
# ARGV: 1 a holder prefix: a dead master's ("<master id>|") or one worker's ("<holder>|");
#       2.. ids to leave alone (the jobs that worker knows it holds)
# Returns: how many jobs held are ready again, their attempt given back.
# The claim of a dead master (fleet/member.py): this finds the jobs its children had
# reserved but not yet reported (or prefetched), which its in-flight list lacks. A worker
# back from an outage (Fencing.reclaim_unknown) finds reservations whose reply it lost.
HAND_BACK_HELD = _PRELUDE + """
local back = 0
local keep = {}
for i = 2, #ARGV do keep[ARGV[i]] = true end
local held = redis.call('HGETALL', KEYS[6])
for i = 1, #held, 2 do
  local id, token = held[i], held[i + 1]
  if string.sub(token, 1, #ARGV[1]) == ARGV[1] and not keep[id] then
    redis.call('HDEL', KEYS[6], id)
    if redis.call('ZREM', KEYS[3], id) == 1 then
      redis.call('HINCRBY', KEYS[4], id, -1)
      make_ready(KEYS[1], KEYS[2], KEYS[5], id, now)
      back = back + 1
    end
  end
end
return back
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

# RETRY_FAILED for many jobs of one queue at once (`failed retry all`, --range).
# KEYS: as RETRY_FAILED;  ARGV: id1, payload1, id2, payload2, ...
# Returns: how many were still failed (and are queued now)
RETRY_FAILED_MANY = _PRELUDE + """
local done = 0
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('ZREM', KEYS[3], id) == 1 then
    redis.call('HDEL', KEYS[4], id)
    redis.call('HSET', KEYS[5], id, ARGV[i + 1])
    redis.call('HDEL', KEYS[6], id)
    redis.call('HDEL', KEYS[7], id)
    make_ready(KEYS[1], KEYS[2], KEYS[8], id, now)
    done = done + 1
  end
end
return done
"""

# PUSH for many jobs of one queue at once (dispatch_many, batches: jobs/bulk.py). A
# chunk lands whole or not at all; KEYS[6] marks it (EX ARGV[1] s), so a call resent
# after a lost reply is a no-op, and a caller whose connection broke can ask whether
# its chunk landed (RedisQueue.push_many).
# KEYS: 1 ready, 2 notify, 3 delayed, 4 payloads, 5 enqueued, 6 the chunk's marker
# ARGV: 1 marker lifetime (s), then id, payload JSON, delay ms for each job
# Returns: how many jobs it queued (0: the chunk had landed already)
PUSH_MANY = _PRELUDE + """
if not redis.call('SET', KEYS[6], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 2, #ARGV, 3 do
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
  ready_after(tonumber(ARGV[i + 2]), KEYS[1], KEYS[2], KEYS[5], KEYS[3], ARGV[i])
end
return (#ARGV - 1) / 3
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
