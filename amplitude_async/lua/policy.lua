-- The admission policy (amplitude_async.policy), name for name: the rules are stated there,
-- once. What differs is only how the state is read: a pool's ledger and queue live in Redis
-- (ledger.lua, waiters.lua) instead of a PoolSnapshot and a PoolQueue.

-- How many of each weight to admit: repeatedly the heaviest that still fits
-- (amplitude_async.budget.largest_first). `choices` are {weight, available}; returns a list
-- of {weight, count}.
local function largest_first(choices, room, slots)
  local weights, left, chosen = {}, {}, {}
  for _, choice in ipairs(choices) do
    if choice[2] > 0 then
      weights[#weights + 1] = choice[1]
      left[choice[1]] = choice[2]
    end
  end
  table.sort(weights)
  while slots > 0 and #weights > 0 do
    local index = 0
    for j = #weights, 1, -1 do
      if weights[j] <= room then
        index = j
        break
      end
    end
    if index == 0 then break end
    local weight = weights[index]
    local count = math.min(left[weight], slots)
    if weight > 0 then count = math.min(count, math.floor(room / weight)) end
    chosen[#chosen + 1] = { weight, count }
    room = room - weight * count
    slots = slots - count
    table.remove(weights, index)
  end
  return chosen
end

-- Give the waiters queued without a claim their claim time once the claim delay has passed
-- since the oldest of them queued; return when their claims fall due (INF: none to set).
local function settle_claims(pool)
  if pool.fresh_since >= NO_FRESH then return INF end
  local due = pool.fresh_since + config.claim_delay
  if now < due then return due end
  local claim_at = fmt(now + starvation_bound + pool.backlog * pool.drain)
  sync(pool.fresh_key)
  local claims, keys = redis.call('LRANGE', pool.fresh_key, 0, -1), {}
  for i, claim in ipairs(claims) do
    keys[i] = string.match(claim, '^%d+|(.*)$')
    if not keys[i] then garbage(pool.fresh_key, 'item ' .. claim) end
  end
  -- Those still waiting (others were cancelled, dropped or admitted meanwhile).
  hash_fetch(pool.waiters_key, keys)
  for i, claim in ipairs(claims) do
    if hash_get(pool.waiters_key, keys[i]) then zset_add(pool.claims_key, claim_at, claim) end
  end
  remove_now(false, 'DEL', pool.fresh_key)
  pool.fresh_since = NO_FRESH
  return INF
end

-- Choose the waiters to admit now and take them out of the queue: a list of {weight, key}.
local function plan(pool)
  local planned = {}
  if paused(pool) or slots(pool) <= 0 then return planned end
  -- (These locals shadow the ledger's functions of the same name, as in policy.plan.)
  local room, slots = room(pool), slots(pool)
  local taken, reserved = 0, false
  local levels, priorities = nil, nil

  local function admit(member)
    local weight, key = unlink(pool, member, levels)
    planned[#planned + 1] = { weight = weight, key = key }
    room = room - weight
    slots = slots - 1
    taken = taken + weight
  end

  -- Others may only use room the reserved waiter will not need, and must leave it a slot.
  local function reserve(weight)
    reserved = true
    local when = earliest_fit(pool, weight + taken, #planned + 1)
    if when == INF then
      room, slots = 0, 0
      return
    end
    room = math.min(room, room_at(pool, when) - taken - weight)
    slots = slots - 1
  end

  -- Only the first starved waiter claims.
  local claim_at, member = first_claim(pool)
  if claim_at and claim_at <= now then
    local _, weight = decode_member(member)
    if weight <= room then admit(member) else reserve(weight) end
  end

  levels, priorities = load_levels(pool)
  table.sort(priorities, function(a, b) return a > b end)
  for index, priority in ipairs(priorities) do
    if slots <= 0 or room < 0 then break end
    if waiting_at(levels, priority) then
      for _, choice in ipairs(largest_first(items(levels, priority), room, slots)) do
        local members = bucket_heads(pool, priority, choice[1], choice[2])
        if #members < choice[2] then garbage(pool.queue_key, 'fewer waiters than counted') end
        for _, member in ipairs(members) do admit(member) end
      end
      -- A reservation only restrains the lower priorities still to come.
      if not reserved and index < #priorities and waiting_at(levels, priority) then
        local _, weight = decode_member(oldest_at(pool, levels, priority))
        reserve(weight)
      end
    end
  end
  return planned
end

-- When time alone could next change this pool's decision, after its admissions (INF: only an
-- exchange can). `claims_due` is what settle_claims said.
local function next_decision(pool, claims_due)
  if pool.count == 0 then return INF end
  if pool.in_flight >= pool.cap then return math.min(lease_until(pool), claims_due) end
  local change = math.min(lease_until(pool), claims_due)
  for i = 1, pool.window_count do change = math.min(change, freed_at(pool, i, 1)) end
  if paused(pool) then change = math.min(change, pool.paused_until) end
  local claim_at = first_claim(pool)
  if claim_at and claim_at > now then change = math.min(change, claim_at) end
  return change
end
