-- One exchange with a project's shared budget (amplitude_async.redis_store), atomically.
--
-- The same decisions as amplitude_async.admission.InMemoryBudgetStore.apply, step for step:
-- renew and expire leases, apply the owner's changes, then admit per pool (first starved waiter,
-- priorities with heaviest-first packing, a reservation later admissions may not delay).
--
-- Bounded work: window sums are kept as running sums; completed entries are in two sorted sets
-- (by cumulative weight and by completion time), so every forecast is an O(log n) range query;
-- a decision touches O(d) buckets for d distinct (priority, weight) pairs waiting, plus O(log n)
-- per admitted waiter; in-flight entries are at most the in-flight cap.
--
-- KEYS: 1 config, 2 owners (zset: owner -> lease deadline), 3 pending grants (hash: owner ->
-- "pool:local:entry,..."), then per pool 10 keys: ledger (hash), in flight (hash: entry ->
-- "weight|owner|deadline"), done by cumulative weight (zset), done by time (zset), queue (zset,
-- by lexical member: priority, weight, sequence, owner:local), bucket counts (hash:
-- "priority:weight" -> n), claims (zset: claim time -> sequence|owner:local), waiters (hash:
-- owner:local -> queue member), waiters by owner (zset, lexical), waiters without a claim yet
-- (list of sequence|owner:local).
-- ARGV: 1 owner, 2 lease term (s), 3 warm (0/1), 4 time override ("" = TIME), 5 config (JSON),
-- 6 changes (JSON), 7 key TTL (ms), 8 grant channel prefix.

local owner = ARGV[1]
local lease = tonumber(ARGV[2])
local warm = ARGV[3] == '1'
local now
if ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local cfgtext = ARGV[5]
local ch = cjson.decode(ARGV[6])
local ttl = ARGV[7]
local chan = ARGV[8]
local cfg = cjson.decode(cfgtext)
local bound = cfg.bound
if bound < 0 then bound = math.huge end
local INF = math.huge
local NEVER = -1e308

local function fmt(x) return string.format('%.17g', x) end

-- The limits live with the budget: a process with other limits may not join.
local cold = false
local stored = redis.call('HGET', KEYS[1], 'config')
if not stored then
  redis.call('HSET', KEYS[1], 'config', cfgtext)
  -- Gone while a process was using it (restart, flush, failover): the API still counts what
  -- was admitted, so start as if the last window were full.
  cold = warm
elseif stored ~= cfgtext then
  return redis.error_reply('AMPLITUDE_LIMITS ' .. stored)
end

-- -- pools -------------------------------------------------------------------------------------

local pools = {}
for p = 1, #cfg.pools do
  local base = 3 + (p - 1) * 10
  local pc = cfg.pools[p]
  local st = {
    L = KEYS[base + 1], F = KEYS[base + 2], DC = KEYS[base + 3], DT = KEYS[base + 4],
    Q = KEYS[base + 5], C = KEYS[base + 6], K = KEYS[base + 7], W = KEYS[base + 8],
    OW = KEYS[base + 9], FR = KEYS[base + 10], cap = pc.cap, win = pc.windows, drain = pc.drain,
    n = #pc.windows, fl = {}, nfl = 0,
  }
  local raw = redis.call('HGETALL', st.L)
  local h = {}
  for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
  st.u, st.h = {}, {}
  for i = 1, st.n do
    st.u[i] = tonumber(h['u' .. i] or '0')
    st.h[i] = tonumber(h['h' .. i] or '0')
  end
  st.cum = tonumber(h.cum or '0')
  st.last = tonumber(h.last or NEVER)
  st.pause = tonumber(h.pause or NEVER)
  st.eid = tonumber(h.eid or '0')
  st.count = tonumber(h.count or '0')
  st.backlog = tonumber(h.backlog or '0')
  st.fsince = tonumber(h.fsince or '1e308')
  raw = redis.call('HGETALL', st.F)
  for i = 1, #raw, 2 do
    local w, o, d = string.match(raw[i + 1], '^(%d+)|([^|]*)|(.+)$')
    st.fl[raw[i]] = { w = tonumber(w), o = o, d = tonumber(d) }
    st.nfl = st.nfl + 1
  end
  pools[p] = st
end

-- -- the ledger --------------------------------------------------------------------------------

local function parse_done(m)
  local c, t = string.match(m, '^(%d+):([^:]+):')
  return tonumber(c), tonumber(t)
end

local function put_flight(st, eid, e)
  redis.call('HSET', st.F, eid, e.w .. '|' .. e.o .. '|' .. fmt(e.d))
end

local function add_done(st, t, w, eid)
  st.cum = st.cum + w
  local m = string.format('%015d:%s:%s', st.cum, fmt(t), eid)
  redis.call('ZADD', st.DC, st.cum, m)
  redis.call('ZADD', st.DT, fmt(t), m)
  if t > st.last then st.last = t end
end

local function complete(st, eid, t)
  local e = st.fl[eid]
  st.fl[eid] = nil
  st.nfl = st.nfl - 1
  redis.call('HDEL', st.F, eid)
  add_done(st, t, e.w, eid)
end

local function take(st, w, o, d)
  st.eid = st.eid + 1
  local eid = tostring(st.eid)
  local e = { w = w, o = o, d = d }
  st.fl[eid] = e
  st.nfl = st.nfl + 1
  put_flight(st, eid, e)
  for i = 1, st.n do st.u[i] = st.u[i] + w end
  return st.eid
end

local function release(st, eid)
  local e = st.fl[eid]
  st.fl[eid] = nil
  st.nfl = st.nfl - 1
  redis.call('HDEL', st.F, eid)
  for i = 1, st.n do st.u[i] = st.u[i] - e.w end
end

-- Cumulative weight of the last entry of window i gone by `when`, if past the window's head.
local function last_gone(st, i, when)
  local len = st.win[i][2]
  local ms = redis.call('ZREVRANGEBYSCORE', st.DT, fmt(when - len + 1e-6), '-inf', 'LIMIT', 0, 8)
  for _, m in ipairs(ms) do
    local c, t = parse_done(m)
    if c <= st.h[i] then return nil end
    if t + len <= when then return c end
  end
  return nil
end

local function expire(st)
  local gone = {}
  for eid, e in pairs(st.fl) do
    if e.d <= now then gone[#gone + 1] = { e.d, tonumber(eid) } end
  end
  table.sort(gone, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  for _, x in ipairs(gone) do complete(st, tostring(x[2]), math.max(x[1], st.last)) end
  local low = INF
  for i = 1, st.n do
    local c = last_gone(st, i, now)
    if c then
      st.u[i] = st.u[i] - (c - st.h[i])
      st.h[i] = c
    end
    if st.h[i] < low then low = st.h[i] end
  end
  -- Entries gone from every window: bounded by what was added, so amortised O(1) each.
  if low < INF and low > 0 then
    redis.call('ZREMRANGEBYSCORE', st.DC, '-inf', low)
  end
  local longest = 0
  for i = 1, st.n do if st.win[i][2] > longest then longest = st.win[i][2] end end
  redis.call('ZREMRANGEBYSCORE', st.DT, '-inf', '(' .. fmt(now - longest - 1))
end

local function freed_by(st, i, when)
  local c = last_gone(st, i, when)
  if c then return c - st.h[i] end
  return 0
end

local function freed_at(st, i, w)
  if w <= 0 then return -INF end
  local ms = redis.call('ZRANGEBYSCORE', st.DC, st.h[i] + w, '+inf', 'LIMIT', 0, 1)
  if #ms == 0 then return INF end
  local _, t = parse_done(ms[1])
  return t + st.win[i][2]
end

local function room(st)
  local r = INF
  for i = 1, st.n do r = math.min(r, st.win[i][1] - st.u[i]) end
  return r
end

local function room_at(st, when)
  local r = INF
  for i = 1, st.n do r = math.min(r, st.win[i][1] - st.u[i] + freed_by(st, i, when)) end
  return r
end

local function earliest_fit(st, w, slots)
  if math.max(0, st.cap - st.nfl) < slots then return INF end
  local when = math.max(now, st.pause)
  for i = 1, st.n do
    when = math.max(when, freed_at(st, i, st.u[i] + w - st.win[i][1]))
  end
  return when
end

local function next_change(st)
  local change = INF
  for i = 1, st.n do
    local ms = redis.call('ZRANGEBYSCORE', st.DC, '(' .. st.h[i], '+inf', 'LIMIT', 0, 1)
    if #ms > 0 then
      local _, t = parse_done(ms[1])
      change = math.min(change, t + st.win[i][2])
    end
  end
  for _, e in pairs(st.fl) do change = math.min(change, e.d) end
  if now < st.pause then change = math.min(change, st.pause) end
  return change
end

-- -- the queue ---------------------------------------------------------------------------------

local function qprefix(pr, w)
  return string.format('%011d%010d', pr + 10000000000, w)
end

local function decode_q(m)
  local pr = tonumber(string.sub(m, 1, 11)) - 10000000000
  local w = tonumber(string.sub(m, 12, 21))
  local s = string.sub(m, 22, 36)
  local key = string.sub(m, 38)
  return pr, w, s, key
end

local function unlink(st, m, levels)
  local pr, w, s, key = decode_q(m)
  redis.call('ZREM', st.Q, m)
  redis.call('ZREM', st.K, s .. '|' .. key)
  redis.call('HDEL', st.W, key)
  redis.call('ZREM', st.OW, key)
  local f = string.format('%d:%d', pr, w)
  if redis.call('HINCRBY', st.C, f, -1) <= 0 then redis.call('HDEL', st.C, f) end
  st.count = st.count - 1
  st.backlog = st.backlog - w
  if levels and levels[pr] and levels[pr][w] then levels[pr][w] = levels[pr][w] - 1 end
  return w, key
end

local function register(st, o, loc, w, pr)
  local key = o .. ':' .. loc
  if redis.call('HEXISTS', st.W, key) == 1 then return end
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  local s = string.format('%015d', seq)
  local m = qprefix(pr, w) .. s .. '|' .. key
  redis.call('ZADD', st.Q, 0, m)
  redis.call('HSET', st.W, key, m)
  redis.call('ZADD', st.OW, 0, key)
  redis.call('HINCRBY', st.C, string.format('%d:%d', pr, w), 1)
  st.count = st.count + 1
  st.backlog = st.backlog + w
  if redis.call('RPUSH', st.FR, s .. '|' .. key) == 1 then st.fsince = now end
end

local function first_claim(st)
  local r = redis.call('ZRANGE', st.K, 0, 0, 'WITHSCORES')
  if #r == 0 then return nil end
  local key = string.match(r[1], '^%d+|(.*)$')
  return tonumber(r[2]), redis.call('HGET', st.W, key)
end

local function bucket_head(st, pr, w)
  local p = qprefix(pr, w)
  return redis.call('ZRANGEBYLEX', st.Q, '[' .. p, '(' .. p .. ';', 'LIMIT', 0, 1)[1]
end

local function largest_first(items, space, slots)
  local weights, left, chosen = {}, {}, {}
  for _, it in ipairs(items) do
    if it[2] > 0 then
      weights[#weights + 1] = it[1]
      left[it[1]] = it[2]
    end
  end
  table.sort(weights)
  while slots > 0 and #weights > 0 do
    local idx = 0
    for j = #weights, 1, -1 do
      if weights[j] <= space then
        idx = j
        break
      end
    end
    if idx == 0 then break end
    local w = weights[idx]
    local n = math.min(left[w], slots)
    if w > 0 then n = math.min(n, math.floor(space / w)) end
    chosen[#chosen + 1] = { w, n }
    space = space - w * n
    slots = slots - n
    table.remove(weights, idx)
  end
  return chosen
end

local function live(levels, pr)
  if not levels[pr] then return false end
  for _, n in pairs(levels[pr]) do
    if n > 0 then return true end
  end
  return false
end

local function plan(st)
  local planned = {}
  if now < st.pause or st.cap - st.nfl <= 0 then return planned end
  local space, slots = room(st), st.cap - st.nfl
  local taken, reserved = 0, false
  local levels = nil

  local function admit(m)
    local w, key = unlink(st, m, levels)
    planned[#planned + 1] = { w = w, key = key }
    space = space - w
    slots = slots - 1
    taken = taken + w
  end

  local function reserve(w)
    reserved = true
    local when = earliest_fit(st, w + taken, #planned + 1)
    if when == INF then
      space, slots = 0, 0
      return
    end
    space = math.min(space, room_at(st, when) - taken - w)
    slots = slots - 1
  end

  local claim, fm = first_claim(st)
  if claim and claim <= now then
    local _, w = decode_q(fm)
    if w <= space then admit(fm) else reserve(w) end
  end

  levels = {}
  local prios = {}
  local raw = redis.call('HGETALL', st.C)
  for i = 1, #raw, 2 do
    local pr, w = string.match(raw[i], '^(-?%d+):(%d+)$')
    pr, w = tonumber(pr), tonumber(w)
    if not levels[pr] then
      levels[pr] = {}
      prios[#prios + 1] = pr
    end
    levels[pr][w] = tonumber(raw[i + 1])
  end
  table.sort(prios, function(a, b) return a > b end)
  for idx, pr in ipairs(prios) do
    if slots <= 0 or space < 0 then break end
    if live(levels, pr) then
      local items = {}
      for w, n in pairs(levels[pr]) do items[#items + 1] = { w, n } end
      for _, c in ipairs(largest_first(items, space, slots)) do
        for _ = 1, c[2] do admit(bucket_head(st, pr, c[1])) end
      end
      if not reserved and idx < #prios and live(levels, pr) then
        local oldest = nil
        for w, n in pairs(levels[pr]) do
          if n > 0 then
            local m = bucket_head(st, pr, w)
            if oldest == nil or string.sub(m, 22, 36) < string.sub(oldest, 22, 36) then
              oldest = m
            end
          end
        end
        local _, w = decode_q(oldest)
        reserve(w)
      end
    end
  end
  return planned
end

-- -- the exchange ------------------------------------------------------------------------------

if cold then
  for _, st in ipairs(pools) do
    local least = INF
    for i = 1, st.n do least = math.min(least, st.win[i][1]) end
    add_done(st, now, least, '0')
    for i = 1, st.n do st.u[i] = st.u[i] + least end
    st.pause = math.max(st.pause, now + lease)
  end
end

-- An empty owner only reads (the budget command): it joins nothing and renews nothing.
local rejoined = false
if owner ~= '' then
  rejoined = redis.call('ZSCORE', KEYS[2], owner) == false
  redis.call('ZADD', KEYS[2], fmt(now + lease), owner)
end
for _, o in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', fmt(now), 'LIMIT', 0, 8)) do
  for _, st in ipairs(pools) do
    for _, key in ipairs(redis.call('ZRANGEBYLEX', st.OW, '[' .. o .. ':', '(' .. o .. ';')) do
      local m = redis.call('HGET', st.W, key)
      if m then unlink(st, m, nil) end
    end
  end
  redis.call('ZREM', KEYS[2], o)
  redis.call('HDEL', KEYS[3], o)
end

local deadline = now + lease
for _, st in ipairs(pools) do
  for eid, e in pairs(st.fl) do
    if owner ~= '' and e.o == owner and deadline > e.d then
      e.d = deadline
      put_flight(st, eid, e)
    end
  end
  expire(st)
end

for _, x in ipairs(ch.d or {}) do
  local st, eid = pools[x[1]], tostring(x[2])
  if st.fl[eid] then complete(st, eid, math.max(now, st.last)) end
end
for _, x in ipairs(ch.a or {}) do
  local st, eid = pools[x[1]], tostring(x[2])
  local e = st.fl[eid]
  if e then
    e.o = ''
    put_flight(st, eid, e)
  end
end
for _, x in ipairs(ch.x or {}) do
  local st, eid = pools[x[1]], tostring(x[2])
  local e = st.fl[eid]
  if e and e.o == owner then release(st, eid) end
end
local cancelled = {}
for _, x in ipairs(ch.c or {}) do
  local st = pools[x[1]]
  local m = redis.call('HGET', st.W, owner .. ':' .. x[2])
  if m then
    unlink(st, m, nil)
    cancelled[#cancelled + 1] = x[1] .. ':' .. x[2]
  end
end
for _, x in ipairs(ch.z or {}) do
  local st = pools[x[1]]
  st.pause = math.max(st.pause, now + x[2])
end
for _, x in ipairs(ch.r or {}) do
  register(pools[x[1]], owner, x[2], x[3], x[4])
end
if ch.leaving and owner ~= '' then
  for _, st in ipairs(pools) do
    for _, key in ipairs(redis.call('ZRANGEBYLEX', st.OW, '[' .. owner .. ':', '(' .. owner .. ';')) do
      local m = redis.call('HGET', st.W, key)
      if m then unlink(st, m, nil) end
    end
  end
end

local mine = {}
local others = {}
local wake = INF
for p, st in ipairs(pools) do
  if st.count > 0 then
    -- Claims are set together, a claim delay after the oldest request without one queued.
    local claims_due = INF
    if redis.call('LLEN', st.FR) > 0 then
      claims_due = st.fsince + cfg.claim_delay
      if now >= claims_due then
        local claim = fmt(now + bound + st.backlog * st.drain)
        for _, km in ipairs(redis.call('LRANGE', st.FR, 0, -1)) do
          if redis.call('HEXISTS', st.W, string.match(km, '^%d+|(.*)$')) == 1 then
            redis.call('ZADD', st.K, claim, km)
          end
        end
        redis.call('DEL', st.FR)
        claims_due = INF
      end
    end
    for _, x in ipairs(plan(st)) do
      local o, loc = string.match(x.key, '^(.*):(%d+)$')
      local d = tonumber(redis.call('ZSCORE', KEYS[2], o) or fmt(now))
      local g = p .. ':' .. loc .. ':' .. take(st, x.w, o, d)
      if o == owner then
        mine[#mine + 1] = g
      else
        if not others[o] then others[o] = {} end
        local list = others[o]
        list[#list + 1] = g
      end
    end
    local change = math.min(next_change(st), claims_due)
    local claim = first_claim(st)
    if claim and claim > now then change = math.min(change, claim) end
    wake = math.min(wake, change)
  end
end

-- Grants for other owners: kept until that owner's next exchange, and published at once
-- (with the decision's time, so a receiver can tell how long delivery took).
for o, list in pairs(others) do
  local text = table.concat(list, ',')
  local before = redis.call('HGET', KEYS[3], o)
  if before then
    redis.call('HSET', KEYS[3], o, before .. ',' .. text)
  else
    redis.call('HSET', KEYS[3], o, text)
  end
  redis.call('PUBLISH', chan .. o, fmt(now) .. '|' .. text)
end
local pending = redis.call('HGET', KEYS[3], owner)
if pending then
  mine[#mine + 1] = pending
  redis.call('HDEL', KEYS[3], owner)
end

-- One owner keeps time for the queue: it alone is told to exchange again when time frees
-- room, so N processes do not all wake for the same expiry. A later exchange takes the duty
-- over when it sees an earlier time, or the keeper's time passed or its lease ran out.
local duty = INF
if ch.leaving and owner ~= '' then
  -- The owner detached (its waiters went before the decision): if it kept time, nudge the
  -- others to take over.
  redis.call('ZREM', KEYS[2], owner)
  redis.call('HDEL', KEYS[3], owner)
  if redis.call('HGET', KEYS[1], 'keeper') == owner then
    redis.call('HDEL', KEYS[1], 'keeper', 'wake_at')
    for _, o in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. fmt(now), '+inf', 'LIMIT', 0, 64)) do
      redis.call('PUBLISH', chan .. o, fmt(now) .. '|')
    end
  end
elseif wake < INF and owner ~= '' then
  local kat = tonumber(redis.call('HGET', KEYS[1], 'wake_at') or NEVER)
  local keeper = redis.call('HGET', KEYS[1], 'keeper')
  local alive = keeper and tonumber(redis.call('ZSCORE', KEYS[2], keeper) or NEVER) > now
  if keeper == owner or not alive or kat <= now or wake < kat then
    redis.call('HSET', KEYS[1], 'wake_at', fmt(wake), 'keeper', owner)
    duty = wake
  end
end

local queued = 0
local usage = {}
for p, st in ipairs(pools) do
  local fields = { 'cum', st.cum, 'last', fmt(st.last), 'pause', fmt(st.pause), 'eid', st.eid,
    'count', st.count, 'backlog', st.backlog, 'fsince', fmt(math.min(st.fsince, 1e308)) }
  for i = 1, st.n do
    fields[#fields + 1] = 'u' .. i
    fields[#fields + 1] = st.u[i]
    fields[#fields + 1] = 'h' .. i
    fields[#fields + 1] = st.h[i]
  end
  redis.call('HSET', st.L, unpack(fields))
  queued = queued + st.count
  local used = {}
  for i = 1, st.n do used[i] = tostring(st.u[i]) end
  usage[p] = table.concat(used, ' ') .. '|' .. st.nfl .. '|' .. st.count .. '|'
    .. fmt(math.max(0, st.pause - now))
end
for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ttl) end
local processes = redis.call('ZCOUNT', KEYS[2], '(' .. fmt(now), '+inf')

return {
  table.concat(mine, ','),
  table.concat(cancelled, ','),
  fmt(duty - now),
  queued,
  rejoined and 1 or 0,
  table.concat(usage, ';'),
  processes,
}
