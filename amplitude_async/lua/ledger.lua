-- A pool's ledger (amplitude_async.budget.PoolLedger, kept in Redis): in-flight entries with
-- their leases, and completed entries still occupying a window.
--
-- A pool's state (`pool` in every function), read by load_pools (exchange.lua):
--   keys: ledger_key (hash of the numbers below), flight_key (hash: entry -> "weight|owner|
--     deadline"), done_by_weight_key and done_by_time_key (zsets of completed entries, scored
--     by cumulative weight and by completion time; member "cum:time:entry", cum zero-padded to
--     15 digits), then the queue's keys (see waiters.lua);
--   cap, windows (each {budget, length}), window_count, drain (policy.drain);
--   entries (entry id as a string -> {weight, owner, deadline}; owner '' = abandoned) and
--   in_flight, their number;
--   cum: the cumulative weight of every completion so far; used[i]: the weight occupying
--   window i; head[i]: the cumulative weight of the last completion gone from window i (the
--   running sums that make every forecast an O(log n) range query);
--   last_done, paused_until, last_entry (the last entry id given), and the queue's count,
--   backlog and fresh_since (waiters.lua).

local function put_entry(pool, id, entry)
  hash_set(pool.flight_key, id, entry.weight .. '|' .. entry.owner .. '|' .. fmt(entry.deadline))
end

-- The cumulative weight and the time of a completed entry's member.
local function parse_done(member)
  local cum, time = string.match(member, '^(%d+):([^:]+):')
  return tonumber(cum), tonumber(time)
end

local function add_done(pool, time, weight, id)
  if weight == 0 then
    -- Occupies no window, so frees nothing: not kept. (Kept, it would share its cumulative
    -- weight, the by-weight score, with the entry before it, and could sort before it: the
    -- member's time is text, "…4.5" before "…4:".) PoolLedger keeps it; no forecast of a
    -- weight of 1 or more can land on it there.
    if time > pool.last_done then pool.last_done = time end
    return
  end
  pool.cum = pool.cum + weight
  local member = string.format('%015d:%s:%s', pool.cum, fmt(time), id)
  zset_add(pool.done_by_weight_key, pool.cum, member)
  zset_add(pool.done_by_time_key, fmt(time), member)
  if time > pool.last_done then pool.last_done = time end
end

local function complete(pool, id, time)
  local entry = pool.entries[id]
  pool.entries[id] = nil
  pool.in_flight = pool.in_flight - 1
  hash_delete(pool.flight_key, id)
  add_done(pool, time, entry.weight, id)
end

local function take(pool, weight, entry_owner, deadline)
  pool.last_entry = pool.last_entry + 1
  local id = tostring(pool.last_entry)
  local entry = { weight = weight, owner = entry_owner, deadline = deadline }
  pool.entries[id] = entry
  pool.in_flight = pool.in_flight + 1
  put_entry(pool, id, entry)
  for i = 1, pool.window_count do pool.used[i] = pool.used[i] + weight end
  return pool.last_entry
end

local function release(pool, id)
  local entry = pool.entries[id]
  pool.entries[id] = nil
  pool.in_flight = pool.in_flight - 1
  hash_delete(pool.flight_key, id)
  for i = 1, pool.window_count do pool.used[i] = pool.used[i] - entry.weight end
end

-- The cumulative weight of the last entry gone from window i by `when`, if past its head.
local function last_gone(pool, i, when)
  -- Every completion is gone from the window already: nothing to read.
  if pool.head[i] >= pool.cum then return nil end
  local length = pool.windows[i][2]
  sync(pool.done_by_time_key)
  local members = redis.call('ZREVRANGEBYSCORE', pool.done_by_time_key,
    fmt(when - length + 1e-6), '-inf', 'LIMIT', 0, 8)
  for _, member in ipairs(members) do
    local cum, time = parse_done(member)
    if cum <= pool.head[i] then return nil end
    if time + length <= when then return cum end
  end
  return nil
end

-- Complete the entries whose lease ran out; drop the completed ones no window holds any more.
local function expire(pool)
  local gone = {}
  for id, entry in pairs(pool.entries) do
    if entry.deadline <= now then gone[#gone + 1] = { entry.deadline, tonumber(id) } end
  end
  table.sort(gone, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  for _, x in ipairs(gone) do
    complete(pool, tostring(x[2]), math.max(x[1], pool.last_done))
  end
  local low, low_before = INF, INF
  for i = 1, pool.window_count do
    low_before = math.min(low_before, pool.head[i])
    local cum = last_gone(pool, i, now)
    if cum then
      pool.used[i] = pool.used[i] - (cum - pool.head[i])
      pool.head[i] = cum
    end
    if pool.head[i] < low then low = pool.head[i] end
  end
  -- Entries gone from every window: bounded by what was added, so amortised O(1) each. Only
  -- when one went (the others went with an earlier exchange), and with them the entries
  -- completed more than the longest window ago; the last completion (cum, at last_done)
  -- stays while a window holds it.
  if low < INF and low > low_before then
    remove_now(pool.cum > low, 'ZREMRANGEBYSCORE', pool.done_by_weight_key, '-inf', low)
    local longest = 0
    for i = 1, pool.window_count do
      if pool.windows[i][2] > longest then longest = pool.windows[i][2] end
    end
    local oldest = now - longest - 1
    remove_now(pool.cum > 0 and pool.last_done >= oldest, 'ZREMRANGEBYSCORE',
      pool.done_by_time_key, '-inf', '(' .. fmt(oldest))
  end
end

-- Weight freed in window i at or before `when` (Expiries.freed_by).
local function freed_by(pool, i, when)
  local cum = last_gone(pool, i, when)
  if cum then return cum - pool.head[i] end
  return 0
end

-- Earliest time by which at least `weight` has freed in window i (Expiries.freed_at).
local function freed_at(pool, i, weight)
  if weight <= 0 then return -INF end
  -- Not that much has completed since the window's head: nothing to read.
  if pool.head[i] + weight > pool.cum then return INF end
  sync(pool.done_by_weight_key)
  local members = redis.call('ZRANGEBYSCORE', pool.done_by_weight_key,
    pool.head[i] + weight, '+inf', 'LIMIT', 0, 1)
  if #members == 0 then return INF end
  local _, time = parse_done(members[1])
  return time + pool.windows[i][2]
end

-- The snapshot's questions (amplitude_async.budget.PoolSnapshot), at `now`.

local function paused(pool) return now < pool.paused_until end

local function slots(pool) return math.max(0, pool.cap - pool.in_flight) end

local function room(pool)
  local r = INF
  for i = 1, pool.window_count do r = math.min(r, pool.windows[i][1] - pool.used[i]) end
  return r
end

local function room_at(pool, when)
  local r = INF
  for i = 1, pool.window_count do
    r = math.min(r, pool.windows[i][1] - pool.used[i] + freed_by(pool, i, when))
  end
  return r
end

local function earliest_fit(pool, weight, needed_slots)
  if slots(pool) < needed_slots then return INF end
  local when = math.max(now, pool.paused_until)
  for i = 1, pool.window_count do
    when = math.max(when, freed_at(pool, i, pool.used[i] + weight - pool.windows[i][1]))
  end
  return when
end

-- When the earliest lease of an in-flight entry runs out.
local function lease_until(pool)
  local until_ = INF
  for _, entry in pairs(pool.entries) do until_ = math.min(until_, entry.deadline) end
  return until_
end
