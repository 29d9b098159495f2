-- One exchange with a project's shared budget, atomically (last of the budget scripts): the
-- same steps as amplitude_async.admission.InMemoryBudgetStore.apply. Renew and expire leases,
-- apply the owner's changes, then decide per pool (policy.lua) and answer.
--
-- Faults: everything is read and checked before anything is written. An exchange older than
-- one already applied for its owner is refused (AMPLITUDE_STALE), one run later than its
-- sender waits (AMPLITUDE_LATE), and one made with other limits (AMPLITUDE_LIMITS). A state
-- that cannot be true (a key of the wrong type, a value that is not a number or out of range),
-- a state older than the caller has seen (a restored snapshot), or a state lost while a
-- process was using it, is wiped and started cold, and the reason is returned.

-- -- reading and checking ---------------------------------------------------------------------

local function number(key, field, text, default)
  if text == nil or text == false then return default end
  local x = tonumber(text)
  if not finite(x) then garbage(key, field .. ' is ' .. tostring(text)) end
  return x
end

-- The stored fields of a pool's ledger hash (the storage format: kept as it is, so processes
-- of earlier releases share a budget with this one): cum, u<i> (used), h<i> (head), last
-- (last_done), pause (paused_until), eid (last_entry), count, backlog, fsince (fresh_since).
local function load_pools()
  for p = 1, POOL_COUNT do
    local base = 4 + (p - 1) * 10
    local pool_config = config.pools[p]
    local pool = {
      ledger_key = KEYS[base + 1], flight_key = KEYS[base + 2],
      done_by_weight_key = KEYS[base + 3], done_by_time_key = KEYS[base + 4],
      queue_key = KEYS[base + 5], buckets_key = KEYS[base + 6], claims_key = KEYS[base + 7],
      waiters_key = KEYS[base + 8], by_owner_key = KEYS[base + 9], fresh_key = KEYS[base + 10],
      cap = pool_config.cap, windows = pool_config.windows, drain = pool_config.drain,
      window_count = #pool_config.windows, entries = {}, in_flight = 0,
    }
    local key = pool.ledger_key
    local raw = redis.call('HGETALL', key)
    local h = {}
    for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
    pool.stored = h
    pool.cum = number(key, 'cum', h.cum, 0)
    pool.used, pool.head = {}, {}
    for i = 1, pool.window_count do
      pool.used[i] = number(key, 'u' .. i, h['u' .. i], 0)
      pool.head[i] = number(key, 'h' .. i, h['h' .. i], 0)
      if pool.used[i] < 0 or pool.used[i] > pool.windows[i][1] then
        garbage(key, 'u' .. i .. ' is ' .. pool.used[i])
      end
      if pool.head[i] < 0 or pool.head[i] > pool.cum then
        garbage(key, 'h' .. i .. ' is ' .. pool.head[i])
      end
    end
    pool.last_done = number(key, 'last', h.last, NEVER)
    pool.paused_until = number(key, 'pause', h.pause, NEVER)
    pool.last_entry = number(key, 'eid', h.eid, 0)
    pool.count = number(key, 'count', h.count, 0)
    pool.backlog = number(key, 'backlog', h.backlog, 0)
    pool.fresh_since = number(key, 'fsince', h.fsince, 1e308)
    if pool.cum < 0 or pool.last_entry < 0 or pool.count < 0 or pool.backlog < 0 then
      garbage(key, 'a negative count')
    end
    if pool.paused_until > now + FAR then garbage(key, 'pause is ' .. fmt(pool.paused_until)) end
    raw = redis.call('HGETALL', pool.flight_key)
    local flying = 0
    for i = 1, #raw, 2 do
      local weight, entry_owner, deadline = string.match(raw[i + 1], '^(%d+)|([^|]*)|(.+)$')
      deadline = tonumber(deadline)
      if not weight or not finite(deadline) or deadline > now + FAR or not tonumber(raw[i]) then
        garbage(pool.flight_key, 'entry ' .. raw[i] .. ' is ' .. raw[i + 1])
      end
      pool.entries[raw[i]] = { weight = tonumber(weight), owner = entry_owner, deadline = deadline }
      pool.in_flight = pool.in_flight + 1
      flying = flying + tonumber(weight)
    end
    for i = 1, pool.window_count do
      if pool.used[i] < flying then garbage(key, 'u' .. i .. ' is below the weight in flight') end
    end
    -- The keys known to hold something (see the expiry in prelude.lua): the ledger and the
    -- flight as read; the completions while some window still holds the last one (each
    -- exchange drops only what every window let go); the queue's while anyone waits.
    local low = INF
    for i = 1, pool.window_count do low = math.min(low, pool.head[i]) end
    present[pool.ledger_key] = next(h) ~= nil or nil
    present[pool.flight_key] = pool.in_flight > 0 or nil
    present[pool.done_by_weight_key] = pool.cum > low or nil
    present[pool.done_by_time_key] = pool.cum > low or nil
    for _, queue_key in ipairs({ pool.queue_key, pool.waiters_key, pool.by_owner_key }) do
      present[queue_key] = pool.count > 0 or nil
    end
    present[pool.fresh_key] = pool.fresh_since < NO_FRESH or nil
    pools[p] = pool
  end
end

-- Whether another process that has exchanged with this budget listens now: its state was lost
-- (a flush, a restart without persistence) while in use, although this process is new.
local function others_live()
  for _, channel in ipairs(redis.call('PUBSUB', 'CHANNELS', live_channel .. '*')) do
    if channel ~= live_channel .. owner then return true end
  end
  return false
end

-- The time an entry of `entry_owner` granted now is leased until.
local function deadline_of(entry_owner, deadline)
  if entry_owner == owner then return deadline end
  local info = hash_get(INFO_KEY, entry_owner)
  return tonumber(info and string.match(info, '|(.+)$')) or now
end

-- -- the exchange ------------------------------------------------------------------------------

local function run(forced)
  pools = {}
  forget_writes()
  -- Refused before anything is written: a late copy of an exchange already superseded.
  local seq = tonumber(changes.seq or 0) or 0
  if owner ~= '' then
    local info = hash_get(INFO_KEY, owner)
    if seq > 0 and info then
      local last = tonumber(string.match(info, '^(%d+)|'))
      if last and seq <= last then
        refuse('AMPLITUDE_STALE exchange ' .. seq .. ' after ' .. last)
      end
    end
  end

  -- Refused too: an exchange run later than its sender waits for an answer (a frozen server
  -- thawed); the sender has given up on it, and may be gone.
  if changes.sent_at and now > changes.sent_at + changes.patience then
    refuse('AMPLITUDE_LATE exchange run ' .. fmt(now - changes.sent_at) .. ' s after it was sent')
  end

  local raw = redis.call('HGETALL', CONFIG_KEY)
  local stored = {}
  for i = 1, #raw, 2 do stored[raw[i]] = raw[i + 1] end
  local fresh, cold, reason = false, false, ''
  if not stored.config then
    fresh = true
    if forced then
      cold, reason = true, forced
    elseif warm or others_live() then
      -- Gone while processes were using it (restart, flush, failover): the API still counts
      -- what was admitted, so start as if the last window were full.
      error({ reset = 'the budget was lost while in use' })
    end
  elseif stored.config ~= config_text then
    refuse('AMPLITUDE_LIMITS ' .. stored.config)
  end
  local epoch, generation = stored.epoch, tonumber(stored.gen or '0')
  last_sequence = number(CONFIG_KEY, 'seq', stored.seq, 0)
  local sequence_before = last_sequence
  if not fresh then
    present[CONFIG_KEY] = true
    if not epoch or not finite(generation) then garbage(CONFIG_KEY, 'no epoch') end
    local seen_epoch, seen_generation = string.match(changes.seen or '', '^(.*):(%d+)$')
    if seen_epoch == epoch and tonumber(seen_generation) > generation then
      error({ reset = 'the budget went back in time (generation ' .. fmt(generation)
        .. ', this process had seen ' .. seen_generation .. ')' })
    end
  end
  load_pools()

  -- -- writes from here on --------------------------------------------------------------------

  -- Fields of the config hash to write (name -> value).
  local config_writes = {}
  if fresh then
    -- Strays of an older budget (keys that outlived its config) go with it.
    redis.call('DEL', unpack(KEYS))
    forget_writes()
    epoch, generation = fmt(now), 0
    last_sequence, sequence_before = 0, -1
    config_writes = { config = config_text, epoch = epoch }
    for _, pool in ipairs(pools) do
      pool.stored, pool.buckets = {}, nil
      pool.entries, pool.in_flight = {}, 0
      for i = 1, pool.window_count do pool.used[i], pool.head[i] = 0, 0 end
      pool.cum, pool.last_done, pool.paused_until = 0, NEVER, NEVER
      pool.last_entry, pool.count, pool.backlog, pool.fresh_since = 0, 0, 0, 1e308
    end
  end
  generation = generation + 1
  if cold then
    for _, pool in ipairs(pools) do
      local least = INF
      for i = 1, pool.window_count do least = math.min(least, pool.windows[i][1]) end
      add_done(pool, now, least, '0')
      for i = 1, pool.window_count do pool.used[i] = pool.used[i] + least end
      pool.paused_until = math.max(pool.paused_until, now + lease)
    end
  end

  -- An empty owner only reads (the budget command): it joins nothing and renews nothing.
  local rejoined = false
  local deadline = now + lease
  if owner ~= '' then
    rejoined = redis.call('ZSCORE', OWNERS_KEY, owner) == false
    if not rejoined then present[OWNERS_KEY] = true end
    zset_add(OWNERS_KEY, fmt(now + (tonumber(changes.beat or lease) or lease)), owner)
    hash_set(INFO_KEY, owner, string.format('%d', seq) .. '|' .. fmt(deadline))
  end
  -- Owners whose heartbeat lapsed: their waiters go (their entries keep their own leases).
  sync(OWNERS_KEY)
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', OWNERS_KEY, '-inf', fmt(now), 'LIMIT', 0, 8)) do
    for _, pool in ipairs(pools) do drop_owner(pool, dead) end
    -- Its pending grants stay: it may be alive but slow, and using one it heard of.
    zset_remove(OWNERS_KEY, dead)
  end

  -- Only the entries the owner says it holds are renewed.
  local held = nil
  if changes.held then
    held = {}
    for p = 1, POOL_COUNT do held[p] = {} end
    for _, x in ipairs(changes.held) do held[x[1]][tostring(x[2])] = true end
  end
  for p, pool in ipairs(pools) do
    for id, entry in pairs(pool.entries) do
      if owner ~= '' and entry.owner == owner and deadline > entry.deadline
        and (not held or held[p][id]) then
        entry.deadline = deadline
        put_entry(pool, id, entry)
      end
    end
    expire(pool)
  end

  -- Only the owner's own entries: an id it remembers from a lost state may be another's now.
  for _, x in ipairs(changes.complete or {}) do
    local pool, id = pools[x[1]], tostring(x[2])
    local entry = pool.entries[id]
    if entry and entry.owner == owner then complete(pool, id, math.max(now, pool.last_done)) end
  end
  for _, x in ipairs(changes.abandon or {}) do
    local pool, id = pools[x[1]], tostring(x[2])
    local entry = pool.entries[id]
    if entry and entry.owner == owner then
      entry.owner = ''
      put_entry(pool, id, entry)
    end
  end
  for _, x in ipairs(changes.release or {}) do
    local pool, id = pools[x[1]], tostring(x[2])
    local entry = pool.entries[id]
    if entry and entry.owner == owner then release(pool, id) end
  end
  -- Grants other owners decided for this one stay pending (sent with every answer) until an
  -- exchange of this owner accounts for them (holds, completes, abandons or releases them).
  local pending = {}
  local pending_text = owner ~= '' and hash_get(PENDING_KEY, owner) or false
  if pending_text then
    local acked = {}
    if held then
      for _, list in ipairs({
        changes.held, changes.complete or {}, changes.abandon or {}, changes.release or {},
      }) do
        for _, x in ipairs(list) do acked[x[1] .. ':' .. x[2]] = true end
      end
    end
    for grant in string.gmatch(pending_text, '[^,]+') do
      local p, _, id = string.match(grant, '^(%d+):(%d+):(%d+)$')
      local pool = pools[tonumber(p)]
      local entry = pool and pool.entries[id]
      if held and not acked[p .. ':' .. id] and entry and entry.owner == owner then
        pending[#pending + 1] = grant
        pending[p .. ':' .. id] = true
      elseif not held then
        pending[#pending + 1] = grant
      end
    end
  end
  if held and owner ~= '' then
    -- Granted by an exchange whose answer never arrived: its request was never sent.
    for p, pool in ipairs(pools) do
      for id, entry in pairs(pool.entries) do
        if entry.owner == owner and not held[p][id] and not pending[p .. ':' .. id] then
          release(pool, id)
        end
      end
    end
  end
  -- The waiters named by cancels and registrations, read with one command per pool.
  local named = {}
  for p = 1, POOL_COUNT do named[p] = {} end
  for _, list in ipairs({ changes.cancel or {}, changes.register or {} }) do
    for _, x in ipairs(list) do
      local keys = named[x[1]]
      if not keys then error('no pool ' .. tostring(x[1])) end
      keys[#keys + 1] = owner .. ':' .. x[2]
    end
  end
  for p, pool in ipairs(pools) do hash_fetch(pool.waiters_key, named[p]) end
  local cancelled = {}
  for _, x in ipairs(changes.cancel or {}) do
    local pool = pools[x[1]]
    local member = hash_get(pool.waiters_key, owner .. ':' .. x[2])
    if member then
      unlink(pool, member, nil)
      cancelled[#cancelled + 1] = x[1] .. ':' .. x[2]
    end
  end
  for _, x in ipairs(changes.pause or {}) do
    local pool = pools[x[1]]
    pool.paused_until = math.max(pool.paused_until, now + x[2])
  end
  for _, x in ipairs(changes.register or {}) do
    add(pools[x[1]], owner, x[2], x[3], x[4])
  end
  if changes.leaving and owner ~= '' then
    for _, pool in ipairs(pools) do drop_owner(pool, owner) end
  end

  -- The decision, pool by pool (policy.lua).
  local mine = {}
  local others = {}
  local wake_at = INF
  for p, pool in ipairs(pools) do
    if pool.count > 0 then
      local claims_due = settle_claims(pool)
      for _, chosen in ipairs(plan(pool)) do
        local waiter_owner, local_id = string.match(chosen.key, '^(.*):(%d+)$')
        local entry = take(pool, chosen.weight, waiter_owner, deadline_of(waiter_owner, deadline))
        local grant = p .. ':' .. local_id .. ':' .. entry
        if waiter_owner == owner then
          mine[#mine + 1] = grant
        else
          if not others[waiter_owner] then others[waiter_owner] = {} end
          local list = others[waiter_owner]
          list[#list + 1] = grant
        end
      end
      wake_at = math.min(wake_at, next_decision(pool, claims_due))
    end
  end

  -- Grants for other owners: kept until that owner's next exchange, and published at once
  -- (with the decision's time, so a receiver can tell how long delivery took).
  for other, list in pairs(others) do
    local text = table.concat(list, ',')
    local before = hash_get(PENDING_KEY, other)
    if before then
      hash_set(PENDING_KEY, other, before .. ',' .. text)
    else
      hash_set(PENDING_KEY, other, text)
    end
    redis.call('PUBLISH', grant_channel .. other, fmt(now) .. '|' .. text)
  end
  if #pending > 0 then
    mine[#mine + 1] = table.concat(pending, ',')
    if held then
      local text = table.concat(pending, ',')
      if text ~= pending_text then hash_set(PENDING_KEY, owner, text) end
    else
      hash_delete(PENDING_KEY, owner)
    end
  elseif pending_text then
    hash_delete(PENDING_KEY, owner)
  end

  -- One owner keeps time for the queue: it alone is told to exchange again when time frees
  -- room, so N processes do not all wake for the same expiry. A later exchange takes the duty
  -- over when it sees an earlier time, or the keeper's time passed or its heartbeat lapsed.
  local duty = INF
  if changes.leaving and owner ~= '' then
    -- The owner detached (its waiters went before the decision): if it kept time, nudge the
    -- others to take over.
    -- Its exchange number stays (see the expiry below): a late copy of an earlier exchange,
    -- run after this one, is refused instead of joining it again.
    zset_remove(OWNERS_KEY, owner)
    hash_delete(PENDING_KEY, owner)
    if stored.keeper == owner then
      hash_delete(CONFIG_KEY, 'keeper')
      hash_delete(CONFIG_KEY, 'wake_at')
      sync(OWNERS_KEY)
      local alive = redis.call('ZRANGEBYSCORE', OWNERS_KEY, '(' .. fmt(now), '+inf', 'LIMIT', 0, 64)
      for _, other in ipairs(alive) do
        redis.call('PUBLISH', grant_channel .. other, fmt(now) .. '|')
      end
    end
  elseif wake_at < INF and owner ~= '' then
    local keeper_at = tonumber(stored.wake_at or NEVER) or NEVER
    local keeper = stored.keeper
    sync(OWNERS_KEY)
    local alive = keeper and tonumber(redis.call('ZSCORE', OWNERS_KEY, keeper) or NEVER) > now
    if keeper == owner or not alive or keeper_at <= now or wake_at < keeper_at then
      config_writes.wake_at = fmt(wake_at)
      config_writes.keeper = owner
      duty = wake_at
    end
  end

  local queued = 0
  local usage = {}
  for p, pool in ipairs(pools) do
    local fields = {
      cum = pool.cum, last = fmt(pool.last_done), pause = fmt(pool.paused_until),
      eid = pool.last_entry, count = pool.count, backlog = pool.backlog,
      fsince = fmt(math.min(pool.fresh_since, NO_FRESH)),
    }
    for i = 1, pool.window_count do
      fields['u' .. i] = pool.used[i]
      fields['h' .. i] = pool.head[i]
    end
    -- Only what changed (a pool nobody used this time is not written).
    for field, value in pairs(fields) do
      value = tostring(value)
      if pool.stored[field] ~= value then hash_set(pool.ledger_key, field, value) end
    end
    queued = queued + pool.count
    usage[p] = {
      used = pool.used,
      in_flight = pool.in_flight,
      queued = pool.count,
      paused_for = fmt(math.max(0, pool.paused_until - now)),
    }
  end
  -- Expiry (see prelude.lua): every key a TTL on when the refresh time has passed (or what
  -- is stored is not a time this exchange could have set), else only the keys it created.
  if last_sequence ~= sequence_before then
    config_writes.seq = string.format('%d', last_sequence)
  end
  config_writes.gen = string.format('%d', generation)
  local refresh = tonumber(stored.refresh or '')
  local expires = tonumber(stored.expires or '')
  local renew = fresh or not finite(refresh) or not finite(expires) or now >= refresh
    or refresh > now + ttl / 1000 or expires < now + ttl / 4000 or expires > now + FAR
  if renew then
    expires = now + ttl / 1000
    config_writes.refresh = fmt(now + ttl / 4000)
    config_writes.expires = fmt(expires)
    -- Exchange numbers of owners silent for half the TTL (left or dead) go.
    sync(INFO_KEY)
    local infos = redis.call('HGETALL', INFO_KEY)
    for i = 1, #infos, 2 do
      local last_deadline = tonumber(string.match(infos[i + 1], '|(.+)$'))
      if not last_deadline or last_deadline < now - ttl / 2000 then
        hash_delete(INFO_KEY, infos[i])
        hash_delete(PENDING_KEY, infos[i])
      end
    end
  end
  for field, value in pairs(config_writes) do hash_set(CONFIG_KEY, field, value) end
  sync_all()
  -- The config goes first: a reader that finds it finds the rest.
  local config_early = math.floor(math.min(1000, ttl / 10))
  if renew then
    for _, key in ipairs(KEYS) do
      redis.call('PEXPIRE', key, key == CONFIG_KEY and ttl - config_early or ttl)
    end
  else
    local remaining = math.floor((expires - now) * 1000)
    for _, key in ipairs(KEYS) do
      if created[key] then
        redis.call('PEXPIRE', key, key == CONFIG_KEY and remaining - config_early or remaining)
      end
    end
  end

  -- The answer: one JSON object (see redis_store.py). Times and durations are text (JSON
  -- numbers from Lua keep 14 digits only); grants are "pool:local:entry" items joined by
  -- commas, as in the pending hash and the grant channel's messages.
  return cjson.encode({
    grants = table.concat(mine, ','),
    cancelled = table.concat(cancelled, ','),
    wake_in = fmt(duty - now),
    queued = queued,
    rejoined = rejoined,
    usage = usage,
    processes = redis.call('ZCOUNT', OWNERS_KEY, '(' .. fmt(now), '+inf'),
    seen = epoch .. ':' .. string.format('%d', generation),
    reset = reason,
    now = fmt(now),
  })
end

-- Which key is not of its type (only looked for when an exchange failed).
local function wrong_key()
  for i, key in ipairs(KEYS) do
    local found = redis.call('TYPE', key)
    found = type(found) == 'table' and found.ok or found
    if found ~= 'none' and found ~= expected_type(i) then
      return 'key ' .. key .. ' is a ' .. found .. ', not a ' .. expected_type(i)
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
local text = type(result) == 'table' and (result.err or result.reset or 'an error')
  or tostring(result)
return redis.error_reply('AMPLITUDE_CORRUPT ' .. text)
