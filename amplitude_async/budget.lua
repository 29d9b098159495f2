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
-- Faults: everything is read and checked before anything is written. An exchange older than
-- one already applied for its owner is refused (AMPLITUDE_STALE), and one made with other limits
-- (AMPLITUDE_LIMITS). A state that cannot be true (a key of the wrong type, a value that is not
-- a number or out of range), a state older than the caller has seen (a restored snapshot), or a
-- state lost while a process was using it, is wiped and started cold, and the reason is
-- returned.
--
-- KEYS: 1 config (hash: config, epoch, gen, seq, keeper, wake_at, refresh), 2 owners (zset:
-- owner -> heartbeat deadline), 3 pending grants (hash: owner -> "pool:local:entry,..."), 4 owner
-- info (hash: owner -> "exchange number|lease deadline"), then per pool 10 keys: ledger (hash),
-- in flight (hash: entry -> "weight|owner|deadline"), done by cumulative weight (zset), done by
-- time (zset), queue (zset, by lexical member: priority, weight, sequence, owner:local), bucket
-- counts (hash: "priority:weight" -> n), claims (zset: claim time -> sequence|owner:local),
-- waiters (hash: owner:local -> queue member), waiters by owner (zset, lexical), waiters without
-- a claim yet (list of sequence|owner:local).
-- ARGV: 1 owner, 2 lease term (s), 3 warm (0/1), 4 time override ("" = TIME), 5 config (JSON),
-- 6 changes (JSON: r register, c cancel, d complete, a abandon, x release, z pause, h held,
-- n exchange number, s version seen, b heartbeat term, t the store's time at sending as the
-- sender reckons it and w how long it waits for the answer, leaving), 7 key TTL (ms), 8 grant
-- channel prefix, 9 live channel prefix (a process that has exchanged listens on one).

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
local ttl = tonumber(ARGV[7])
local chan = ARGV[8]
local livechan = ARGV[9]
local cfg = cjson.decode(cfgtext)
local bound = cfg.bound
if bound < 0 then bound = math.huge end
local INF = math.huge
local NEVER = -1e308
-- No lease, pause or deadline is longer than this: a later one is garbage.
local FAR = 86400 * 7

local function fmt(x) return string.format('%.17g', x) end

-- Keys written by this exchange, to have their expiry set.
local touched = {}
local function wr(cmd, key, ...)
  touched[key] = true
  return redis.call(cmd, key, ...)
end

-- Thrown (as a table) to refuse an exchange without writing anything.
local function refuse(text) error({ typed = text }) end
-- Thrown (as a table) to wipe the budget's state and start cold.
local function garbage(key, what) error({ reset = 'key ' .. key .. ': ' .. what }) end

local function finite(x) return x ~= nil and x == x and x > -INF and x < INF end

local EXPECTED = { 'hash', 'zset', 'hash', 'hash' }
local POOL_TYPES = { 'hash', 'hash', 'zset', 'zset', 'zset', 'hash', 'zset', 'hash', 'zset', 'list' }
local function expected_type(i)
  if i <= 4 then return EXPECTED[i] end
  return POOL_TYPES[(i - 5) % 10 + 1]
end

local pools = {}
local NPOOLS = #cfg.pools

-- -- the ledger --------------------------------------------------------------------------------

local function parse_done(m)
  local c, t = string.match(m, '^(%d+):([^:]+):')
  return tonumber(c), tonumber(t)
end

local function put_flight(st, eid, e)
  wr('HSET', st.F, eid, e.w .. '|' .. e.o .. '|' .. fmt(e.d))
end

local function add_done(st, t, w, eid)
  st.cum = st.cum + w
  local m = string.format('%015d:%s:%s', st.cum, fmt(t), eid)
  wr('ZADD', st.DC, st.cum, m)
  wr('ZADD', st.DT, fmt(t), m)
  if t > st.last then st.last = t end
end

local function complete(st, eid, t)
  local e = st.fl[eid]
  st.fl[eid] = nil
  st.nfl = st.nfl - 1
  wr('HDEL', st.F, eid)
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
  wr('HDEL', st.F, eid)
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
    wr('ZREMRANGEBYSCORE', st.DC, '-inf', low)
  end
  local longest = 0
  for i = 1, st.n do if st.win[i][2] > longest then longest = st.win[i][2] end end
  wr('ZREMRANGEBYSCORE', st.DT, '-inf', '(' .. fmt(now - longest - 1))
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
  wr('ZREM', st.Q, m)
  wr('ZREM', st.K, s .. '|' .. key)
  wr('HDEL', st.W, key)
  wr('ZREM', st.OW, key)
  local f = string.format('%d:%d', pr, w)
  if wr('HINCRBY', st.C, f, -1) <= 0 then wr('HDEL', st.C, f) end
  st.count = st.count - 1
  st.backlog = st.backlog - w
  if levels and levels[pr] and levels[pr][w] then levels[pr][w] = levels[pr][w] - 1 end
  return w, key
end

local function register(st, o, loc, w, pr)
  local key = o .. ':' .. loc
  if redis.call('HEXISTS', st.W, key) == 1 then return end
  local seq = wr('HINCRBY', KEYS[1], 'seq', 1)
  local s = string.format('%015d', seq)
  local m = qprefix(pr, w) .. s .. '|' .. key
  wr('ZADD', st.Q, 0, m)
  wr('HSET', st.W, key, m)
  wr('ZADD', st.OW, 0, key)
  wr('HINCRBY', st.C, string.format('%d:%d', pr, w), 1)
  st.count = st.count + 1
  st.backlog = st.backlog + w
  if wr('RPUSH', st.FR, s .. '|' .. key) == 1 then st.fsince = now end
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

-- -- reading and checking ---------------------------------------------------------------------

local function number(key, field, text, default)
  if text == nil or text == false then return default end
  local x = tonumber(text)
  if not finite(x) then garbage(key, field .. ' is ' .. tostring(text)) end
  return x
end

local function load_pools()
  for p = 1, NPOOLS do
    local base = 4 + (p - 1) * 10
    local pc = cfg.pools[p]
    local st = {
      L = KEYS[base + 1], F = KEYS[base + 2], DC = KEYS[base + 3], DT = KEYS[base + 4],
      Q = KEYS[base + 5], C = KEYS[base + 6], K = KEYS[base + 7], W = KEYS[base + 8],
      OW = KEYS[base + 9], FR = KEYS[base + 10], cap = pc.cap, win = pc.windows, drain = pc.drain,
      n = #pc.windows, fl = {}, nfl = 0,
    }
    local L = st.L
    local raw = redis.call('HGETALL', L)
    local h = {}
    for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
    st.cum = number(L, 'cum', h.cum, 0)
    st.u, st.h = {}, {}
    for i = 1, st.n do
      st.u[i] = number(L, 'u' .. i, h['u' .. i], 0)
      st.h[i] = number(L, 'h' .. i, h['h' .. i], 0)
      if st.u[i] < 0 or st.u[i] > st.win[i][1] then garbage(L, 'u' .. i .. ' is ' .. st.u[i]) end
      if st.h[i] < 0 or st.h[i] > st.cum then garbage(L, 'h' .. i .. ' is ' .. st.h[i]) end
    end
    st.last = number(L, 'last', h.last, NEVER)
    st.pause = number(L, 'pause', h.pause, NEVER)
    st.eid = number(L, 'eid', h.eid, 0)
    st.count = number(L, 'count', h.count, 0)
    st.backlog = number(L, 'backlog', h.backlog, 0)
    st.fsince = number(L, 'fsince', h.fsince, 1e308)
    if st.cum < 0 or st.eid < 0 or st.count < 0 or st.backlog < 0 then
      garbage(L, 'a negative count')
    end
    if st.pause > now + FAR then garbage(L, 'pause is ' .. fmt(st.pause)) end
    raw = redis.call('HGETALL', st.F)
    local flying = 0
    for i = 1, #raw, 2 do
      local w, o, d = string.match(raw[i + 1], '^(%d+)|([^|]*)|(.+)$')
      d = tonumber(d)
      if not w or not finite(d) or d > now + FAR or not tonumber(raw[i]) then
        garbage(st.F, 'entry ' .. raw[i] .. ' is ' .. raw[i + 1])
      end
      st.fl[raw[i]] = { w = tonumber(w), o = o, d = d }
      st.nfl = st.nfl + 1
      flying = flying + tonumber(w)
    end
    for i = 1, st.n do
      if st.u[i] < flying then garbage(L, 'u' .. i .. ' is below the weight in flight') end
    end
    pools[p] = st
  end
end

-- Whether another process that has exchanged with this budget listens now: its state was lost
-- (a flush, a restart without persistence) while in use, although this process is new.
local function others_live()
  for _, c in ipairs(redis.call('PUBSUB', 'CHANNELS', livechan .. '*')) do
    if c ~= livechan .. owner then return true end
  end
  return false
end

-- -- the exchange ------------------------------------------------------------------------------

local function run(forced)
  pools = {}
  touched = {}
  -- Refused before anything is written: a late copy of an exchange already superseded.
  local number_in = tonumber(ch.n or 0) or 0
  local info = nil
  if owner ~= '' then
    info = redis.call('HGET', KEYS[4], owner)
    if number_in > 0 and info then
      local last = tonumber(string.match(info, '^(%d+)|'))
      if last and number_in <= last then
        refuse('AMPLITUDE_STALE exchange ' .. number_in .. ' after ' .. last)
      end
    end
  end

  -- Refused too: an exchange run later than its sender waits for an answer (a frozen server
  -- thawed); the sender has given up on it, and may be gone.
  if ch.t and now > ch.t + ch.w then
    refuse('AMPLITUDE_LATE exchange run ' .. fmt(now - ch.t) .. ' s after it was sent')
  end

  local raw = redis.call('HGETALL', KEYS[1])
  local conf = {}
  for i = 1, #raw, 2 do conf[raw[i]] = raw[i + 1] end
  local fresh, cold, reason = false, false, ''
  if not conf.config then
    fresh = true
    if forced then
      cold, reason = true, forced
    elseif warm or others_live() then
      -- Gone while processes were using it (restart, flush, failover): the API still counts
      -- what was admitted, so start as if the last window were full.
      error({ reset = 'the budget was lost while in use' })
    end
  elseif conf.config ~= cfgtext then
    refuse('AMPLITUDE_LIMITS ' .. conf.config)
  end
  local epoch, gen = conf.epoch, tonumber(conf.gen or '0')
  if not fresh then
    if not epoch or not finite(gen) then garbage(KEYS[1], 'no epoch') end
    local seen_epoch, seen_gen = string.match(ch.s or '', '^(.*):(%d+)$')
    if seen_epoch == epoch and tonumber(seen_gen) > gen then
      error({ reset = 'the budget went back in time (generation ' .. fmt(gen)
        .. ', this process had seen ' .. seen_gen .. ')' })
    end
  end
  load_pools()

  -- -- writes from here on --------------------------------------------------------------------

  local confw = {}
  if fresh then
    -- Strays of an older budget (keys that outlived its config) go with it.
    redis.call('DEL', unpack(KEYS))
    epoch, gen = fmt(now), 0
    confw = { 'config', cfgtext, 'epoch', epoch }
    for _, st in ipairs(pools) do
      st.fl, st.nfl = {}, 0
      for i = 1, st.n do st.u[i], st.h[i] = 0, 0 end
      st.cum, st.last, st.pause, st.eid, st.count, st.backlog = 0, NEVER, NEVER, 0, 0, 0
      st.fsince = 1e308
    end
  end
  gen = gen + 1
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
  local deadline = now + lease
  if owner ~= '' then
    rejoined = redis.call('ZSCORE', KEYS[2], owner) == false
    wr('ZADD', KEYS[2], fmt(now + (tonumber(ch.b or lease) or lease)), owner)
    wr('HSET', KEYS[4], owner, string.format('%d', number_in) .. '|' .. fmt(deadline))
  end
  -- Owners whose heartbeat lapsed: their waiters go (their entries keep their own leases).
  for _, o in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', fmt(now), 'LIMIT', 0, 8)) do
    for _, st in ipairs(pools) do
      for _, key in ipairs(redis.call('ZRANGEBYLEX', st.OW, '[' .. o .. ':', '(' .. o .. ';')) do
        local m = redis.call('HGET', st.W, key)
        if m then unlink(st, m, nil) end
      end
    end
    -- Its pending grants stay: it may be alive but slow, and using one it heard of.
    wr('ZREM', KEYS[2], o)
  end

  -- Only the entries the owner says it holds are renewed.
  local held = nil
  if ch.h then
    held = {}
    for p = 1, NPOOLS do held[p] = {} end
    for _, x in ipairs(ch.h) do held[x[1]][tostring(x[2])] = true end
  end
  for p, st in ipairs(pools) do
    for eid, e in pairs(st.fl) do
      if owner ~= '' and e.o == owner and deadline > e.d and (not held or held[p][eid]) then
        e.d = deadline
        put_flight(st, eid, e)
      end
    end
    expire(st)
  end

  -- Only the owner's own entries: an id it remembers from a lost state may be another's now.
  for _, x in ipairs(ch.d or {}) do
    local st, eid = pools[x[1]], tostring(x[2])
    local e = st.fl[eid]
    if e and e.o == owner then complete(st, eid, math.max(now, st.last)) end
  end
  for _, x in ipairs(ch.a or {}) do
    local st, eid = pools[x[1]], tostring(x[2])
    local e = st.fl[eid]
    if e and e.o == owner then
      e.o = ''
      put_flight(st, eid, e)
    end
  end
  for _, x in ipairs(ch.x or {}) do
    local st, eid = pools[x[1]], tostring(x[2])
    local e = st.fl[eid]
    if e and e.o == owner then release(st, eid) end
  end
  -- Grants other owners decided for this one stay pending (sent with every answer) until an
  -- exchange of this owner accounts for them (holds, completes, abandons or releases them).
  local pending = {}
  local pending_text = owner ~= '' and redis.call('HGET', KEYS[3], owner) or false
  if pending_text then
    local acked = {}
    if held then
      for _, list in ipairs({ ch.h, ch.d or {}, ch.a or {}, ch.x or {} }) do
        for _, x in ipairs(list) do acked[x[1] .. ':' .. x[2]] = true end
      end
    end
    for item in string.gmatch(pending_text, '[^,]+') do
      local p, _, eid = string.match(item, '^(%d+):(%d+):(%d+)$')
      local st = pools[tonumber(p)]
      local e = st and st.fl[eid]
      if held and not acked[p .. ':' .. eid] and e and e.o == owner then
        pending[#pending + 1] = item
        pending[p .. ':' .. eid] = true
      elseif not held then
        pending[#pending + 1] = item
      end
    end
  end
  if held and owner ~= '' then
    -- Granted by an exchange whose answer never arrived: its request was never sent.
    for p, st in ipairs(pools) do
      for eid, e in pairs(st.fl) do
        if e.o == owner and not held[p][eid] and not pending[p .. ':' .. eid] then
          release(st, eid)
        end
      end
    end
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
              wr('ZADD', st.K, claim, km)
            end
          end
          wr('DEL', st.FR)
          claims_due = INF
        end
      end
      for _, x in ipairs(plan(st)) do
        local o, loc = string.match(x.key, '^(.*):(%d+)$')
        local d = now
        if o == owner then
          d = deadline
        else
          local oi = redis.call('HGET', KEYS[4], o)
          d = tonumber(oi and string.match(oi, '|(.+)$')) or now
        end
        local g = p .. ':' .. loc .. ':' .. take(st, x.w, o, d)
        if o == owner then
          mine[#mine + 1] = g
        else
          if not others[o] then others[o] = {} end
          local list = others[o]
          list[#list + 1] = g
        end
      end
      -- When time alone could next change this pool's decision (admission.next_decision):
      -- never if nobody waits; with every slot taken, a lease running out or the claims
      -- falling due; else also an expiry that frees weight, a pause ending, a claim to come.
      local change = INF
      if st.count > 0 and st.nfl >= st.cap then
        change = claims_due
        for _, e in pairs(st.fl) do change = math.min(change, e.d) end
      elseif st.count > 0 then
        change = math.min(next_change(st), claims_due)
        local claim = first_claim(st)
        if claim and claim > now then change = math.min(change, claim) end
      end
      wake = math.min(wake, change)
    end
  end

  -- Grants for other owners: kept until that owner's next exchange, and published at once
  -- (with the decision's time, so a receiver can tell how long delivery took).
  for o, list in pairs(others) do
    local text = table.concat(list, ',')
    local before = redis.call('HGET', KEYS[3], o)
    if before then
      wr('HSET', KEYS[3], o, before .. ',' .. text)
    else
      wr('HSET', KEYS[3], o, text)
    end
    redis.call('PUBLISH', chan .. o, fmt(now) .. '|' .. text)
  end
  if #pending > 0 then
    mine[#mine + 1] = table.concat(pending, ',')
    if held then
      local text = table.concat(pending, ',')
      if text ~= pending_text then wr('HSET', KEYS[3], owner, text) end
    else
      wr('HDEL', KEYS[3], owner)
    end
  elseif pending_text then
    wr('HDEL', KEYS[3], owner)
  end

  -- One owner keeps time for the queue: it alone is told to exchange again when time frees
  -- room, so N processes do not all wake for the same expiry. A later exchange takes the duty
  -- over when it sees an earlier time, or the keeper's time passed or its heartbeat lapsed.
  local duty = INF
  if ch.leaving and owner ~= '' then
    -- The owner detached (its waiters went before the decision): if it kept time, nudge the
    -- others to take over.
    -- Its exchange number stays (see the expiry below): a late copy of an earlier exchange,
    -- run after this one, is refused instead of joining it again.
    wr('ZREM', KEYS[2], owner)
    wr('HDEL', KEYS[3], owner)
    if conf.keeper == owner then
      wr('HDEL', KEYS[1], 'keeper', 'wake_at')
      for _, o in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. fmt(now), '+inf', 'LIMIT', 0, 64)) do
        redis.call('PUBLISH', chan .. o, fmt(now) .. '|')
      end
    end
  elseif wake < INF and owner ~= '' then
    local kat = tonumber(conf.wake_at or NEVER) or NEVER
    local keeper = conf.keeper
    local alive = keeper and tonumber(redis.call('ZSCORE', KEYS[2], keeper) or NEVER) > now
    if keeper == owner or not alive or kat <= now or wake < kat then
      confw[#confw + 1] = 'wake_at'
      confw[#confw + 1] = fmt(wake)
      confw[#confw + 1] = 'keeper'
      confw[#confw + 1] = owner
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
    wr('HSET', st.L, unpack(fields))
    queued = queued + st.count
    local used = {}
    for i = 1, st.n do used[i] = tostring(st.u[i]) end
    usage[p] = table.concat(used, ' ') .. '|' .. st.nfl .. '|' .. st.count .. '|'
      .. fmt(math.max(0, st.pause - now))
  end
  -- Expiry: set on the keys this exchange wrote, and on every key a few times per TTL (keys
  -- only read stay alive as long as the budget is used).
  confw[#confw + 1] = 'gen'
  confw[#confw + 1] = gen
  local refresh = tonumber(conf.refresh or NEVER) or NEVER
  if fresh or now >= refresh or refresh > now + ttl / 1000 then
    confw[#confw + 1] = 'refresh'
    confw[#confw + 1] = fmt(now + ttl / 4000)
    wr('HSET', KEYS[1], unpack(confw))
    -- Exchange numbers of owners silent for half the TTL (left or dead) go.
    local infos = redis.call('HGETALL', KEYS[4])
    for i = 1, #infos, 2 do
      local d = tonumber(string.match(infos[i + 1], '|(.+)$'))
      if not d or d < now - ttl / 2000 then
        redis.call('HDEL', KEYS[4], infos[i])
        redis.call('HDEL', KEYS[3], infos[i])
      end
    end
    for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ttl) end
  else
    wr('HSET', KEYS[1], unpack(confw))
    for k in pairs(touched) do redis.call('PEXPIRE', k, ttl) end
  end
  local processes = redis.call('ZCOUNT', KEYS[2], '(' .. fmt(now), '+inf')

  return {
    table.concat(mine, ','),
    table.concat(cancelled, ','),
    fmt(duty - now),
    queued,
    rejoined and 1 or 0,
    table.concat(usage, ';'),
    processes,
    epoch .. ':' .. string.format('%d', gen),
    reason,
    fmt(now),
  }
end

-- Which key is not of its type (only looked for when an exchange failed).
local function wrong_key()
  for i, k in ipairs(KEYS) do
    local t = redis.call('TYPE', k)
    t = type(t) == 'table' and t.ok or t
    if t ~= 'none' and t ~= expected_type(i) then
      return 'key ' .. k .. ' is a ' .. t .. ', not a ' .. expected_type(i)
    end
  end
  return nil
end

local ok, result = pcall(run, nil)
if ok then return result end
if type(result) == 'table' and result.typed then return redis.error_reply(result.typed) end
local reason
if type(result) == 'table' and result.reset then
  reason = result.reset
else
  local text = type(result) == 'table' and (result.err or 'an error') or tostring(result)
  reason = wrong_key() or ('unreadable state: ' .. text)
end
-- Wipe what is there (half an exchange included) and start cold.
redis.call('DEL', unpack(KEYS))
ok, result = pcall(run, reason)
if ok then return result end
if type(result) == 'table' and result.typed then return redis.error_reply(result.typed) end
local text = type(result) == 'table' and (result.err or result.reset or 'an error') or tostring(result)
return redis.error_reply('AMPLITUDE_CORRUPT ' .. text)
