-- A pool's queue (amplitude_async.waiters.PoolQueue, kept in Redis): every owner's waiting
-- requests, bucketed by (priority, weight).
--
-- A waiter is named by its key, "owner:local" (its owner and its id there), and numbered in
-- arrival order by a sequence (the config hash's "seq", shared by the pools). Its member in
-- the queue spells, in this order, so that members sort as (priority, weight, arrival):
--   priority + 10^10, zero-padded to 11 digits (priorities are within +-10^9),
--   weight, zero-padded to 10 digits,
--   sequence, zero-padded to 15 digits,
--   '|', then the waiter's key.
-- Its claim, once set, is "sequence|key" in the claims zset, scored by the claim time.
--
-- The queue's keys in a pool's state (see ledger.lua): queue_key (zset of members, all
-- scored 0, read in lexical order), buckets_key (hash: "priority:weight" -> how many wait),
-- claims_key (zset: "sequence|key" by claim time), waiters_key (hash: key -> member),
-- by_owner_key (zset of keys, lexical, to find an owner's waiters), fresh_key (list of
-- "sequence|key" of the waiters queued without a claim yet). Its numbers, kept in the ledger
-- hash: count (waiters), backlog (their total weight), fresh_since (when the oldest waiter
-- without a claim queued; NO_FRESH while none is). The buckets' counts are read once
-- (buckets_of) and kept in pool.buckets ("priority:weight" -> count); the sequence's last
-- number in last_sequence (set by the exchange from the config hash, written back with it).

local PRIORITY_OFFSET = 10000000000
local NO_FRESH = 1e308
local last_sequence = 0

-- How many wait in each bucket ("priority:weight" -> count), read on first use.
local function buckets_of(pool)
  if pool.buckets then return pool.buckets end
  pool.buckets = {}
  local raw = redis.call('HGETALL', pool.buckets_key)
  for i = 1, #raw, 2 do
    local count = tonumber(raw[i + 1])
    if not string.match(raw[i], '^-?%d+:%d+$') or not finite(count) then
      garbage(pool.buckets_key, 'bucket ' .. raw[i] .. ' is ' .. raw[i + 1])
    end
    pool.buckets[raw[i]] = count
    present[pool.buckets_key] = true
  end
  return pool.buckets
end

local function count_in_bucket(pool, priority, weight, change)
  local buckets = buckets_of(pool)
  local bucket = string.format('%d:%d', priority, weight)
  local count = (buckets[bucket] or 0) + change
  if count > 0 then
    buckets[bucket] = count
    hash_set(pool.buckets_key, bucket, tostring(count))
  else
    buckets[bucket] = nil
    hash_delete(pool.buckets_key, bucket)
  end
end

local function bucket_prefix(priority, weight)
  return string.format('%011d%010d', priority + PRIORITY_OFFSET, weight)
end

-- priority, weight, sequence (the 15 digits, as text) and key of a member.
local function decode_member(member)
  local priority = tonumber(string.sub(member, 1, 11)) - PRIORITY_OFFSET
  local weight = tonumber(string.sub(member, 12, 21))
  local sequence = string.sub(member, 22, 36)
  local key = string.sub(member, 38)
  return priority, weight, sequence, key
end

-- Take a waiter out of the queue (cancelled, dropped, or chosen by a decision); `levels`
-- (plan's counts by priority and weight) is kept up to date if given.
local function unlink(pool, member, levels)
  local priority, weight, sequence, key = decode_member(member)
  zset_remove(pool.queue_key, member)
  zset_remove(pool.claims_key, sequence .. '|' .. key)
  hash_delete(pool.waiters_key, key)
  zset_remove(pool.by_owner_key, key)
  count_in_bucket(pool, priority, weight, -1)
  pool.count = pool.count - 1
  pool.backlog = pool.backlog - weight
  if levels and levels[priority] and levels[priority][weight] then
    levels[priority][weight] = levels[priority][weight] - 1
  end
  return weight, key
end

-- Queue a waiter (PoolQueue.add); one already queued under its key stays as it is (see
-- hash_fetch to read many keys' waiters at once).
local function add(pool, waiter_owner, local_id, weight, priority)
  local key = waiter_owner .. ':' .. local_id
  if hash_get(pool.waiters_key, key) then return end
  last_sequence = last_sequence + 1
  local sequence = string.format('%015d', last_sequence)
  local member = bucket_prefix(priority, weight) .. sequence .. '|' .. key
  zset_add(pool.queue_key, 0, member)
  hash_set(pool.waiters_key, key, member)
  zset_add(pool.by_owner_key, 0, key)
  count_in_bucket(pool, priority, weight, 1)
  pool.count = pool.count + 1
  pool.backlog = pool.backlog + weight
  list_append(pool.fresh_key, sequence .. '|' .. key)
  if pool.fresh_since >= NO_FRESH then pool.fresh_since = now end
end

-- Drop every waiter of `waiter_owner` (it left, or its heartbeat lapsed).
local function drop_owner(pool, waiter_owner)
  sync(pool.by_owner_key)
  local keys = redis.call('ZRANGEBYLEX', pool.by_owner_key,
    '[' .. waiter_owner .. ':', '(' .. waiter_owner .. ';')
  hash_fetch(pool.waiters_key, keys)
  for _, key in ipairs(keys) do
    local member = hash_get(pool.waiters_key, key)
    if member then unlink(pool, member, nil) end
  end
end

-- The earliest claim time and the member of its waiter, or nil.
local function first_claim(pool)
  sync(pool.claims_key)
  local r = redis.call('ZRANGE', pool.claims_key, 0, 0, 'WITHSCORES')
  if #r == 0 then return nil end
  local key = string.match(r[1], '^%d+|(.*)$')
  if not key then garbage(pool.claims_key, 'member ' .. r[1]) end
  return tonumber(r[2]), hash_get(pool.waiters_key, key)
end

-- The members of the first `count` waiters to arrive of a (priority, weight).
local function bucket_heads(pool, priority, weight, count)
  local prefix = bucket_prefix(priority, weight)
  sync(pool.queue_key)
  return redis.call('ZRANGEBYLEX', pool.queue_key,
    '[' .. prefix, '(' .. prefix .. ';', 'LIMIT', 0, count)
end

-- How many wait, by priority and weight: levels[priority][weight], and the priorities.
local function load_levels(pool)
  local levels, priorities = {}, {}
  for bucket, count in pairs(buckets_of(pool)) do
    local priority, weight = string.match(bucket, '^(-?%d+):(%d+)$')
    priority, weight = tonumber(priority), tonumber(weight)
    if not levels[priority] then
      levels[priority] = {}
      priorities[#priorities + 1] = priority
    end
    levels[priority][weight] = count
  end
  return levels, priorities
end

local function waiting_at(levels, priority)
  if not levels[priority] then return false end
  for _, n in pairs(levels[priority]) do
    if n > 0 then return true end
  end
  return false
end

-- The member of the waiter of `priority` that arrived first (PoolQueue.oldest_at).
local function oldest_at(pool, levels, priority)
  local oldest = nil
  for weight, n in pairs(levels[priority]) do
    if n > 0 then
      local member = bucket_heads(pool, priority, weight, 1)[1]
      if oldest == nil or string.sub(member, 22, 36) < string.sub(oldest, 22, 36) then
        oldest = member
      end
    end
  end
  return oldest
end

-- ``(weight, how many wait)`` for each weight waiting at `priority` (PoolQueue.items).
local function items(levels, priority)
  local list = {}
  for weight, n in pairs(levels[priority]) do list[#list + 1] = { weight, n } end
  return list
end
