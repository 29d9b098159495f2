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
-- without a claim queued).

local PRIORITY_OFFSET = 10000000000

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
  write('ZREM', pool.queue_key, member)
  write('ZREM', pool.claims_key, sequence .. '|' .. key)
  write('HDEL', pool.waiters_key, key)
  write('ZREM', pool.by_owner_key, key)
  local bucket = string.format('%d:%d', priority, weight)
  if write('HINCRBY', pool.buckets_key, bucket, -1) <= 0 then
    write('HDEL', pool.buckets_key, bucket)
  end
  pool.count = pool.count - 1
  pool.backlog = pool.backlog - weight
  if levels and levels[priority] and levels[priority][weight] then
    levels[priority][weight] = levels[priority][weight] - 1
  end
  return weight, key
end

-- Queue a waiter (PoolQueue.add); one already queued under its key stays as it is.
local function add(pool, waiter_owner, local_id, weight, priority)
  local key = waiter_owner .. ':' .. local_id
  if redis.call('HEXISTS', pool.waiters_key, key) == 1 then return end
  local sequence = string.format('%015d', write('HINCRBY', CONFIG_KEY, 'seq', 1))
  local member = bucket_prefix(priority, weight) .. sequence .. '|' .. key
  write('ZADD', pool.queue_key, 0, member)
  write('HSET', pool.waiters_key, key, member)
  write('ZADD', pool.by_owner_key, 0, key)
  write('HINCRBY', pool.buckets_key, string.format('%d:%d', priority, weight), 1)
  pool.count = pool.count + 1
  pool.backlog = pool.backlog + weight
  if write('RPUSH', pool.fresh_key, sequence .. '|' .. key) == 1 then pool.fresh_since = now end
end

-- Drop every waiter of `waiter_owner` (it left, or its heartbeat lapsed).
local function drop_owner(pool, waiter_owner)
  local keys = redis.call('ZRANGEBYLEX', pool.by_owner_key,
    '[' .. waiter_owner .. ':', '(' .. waiter_owner .. ';')
  for _, key in ipairs(keys) do
    local member = redis.call('HGET', pool.waiters_key, key)
    if member then unlink(pool, member, nil) end
  end
end

-- The earliest claim time and the member of its waiter, or nil.
local function first_claim(pool)
  local r = redis.call('ZRANGE', pool.claims_key, 0, 0, 'WITHSCORES')
  if #r == 0 then return nil end
  local key = string.match(r[1], '^%d+|(.*)$')
  return tonumber(r[2]), redis.call('HGET', pool.waiters_key, key)
end

-- The member of the first waiter to arrive of a (priority, weight).
local function bucket_head(pool, priority, weight)
  local prefix = bucket_prefix(priority, weight)
  return redis.call('ZRANGEBYLEX', pool.queue_key,
    '[' .. prefix, '(' .. prefix .. ';', 'LIMIT', 0, 1)[1]
end

-- How many wait, by priority and weight: levels[priority][weight], and the priorities.
local function load_levels(pool)
  local levels, priorities = {}, {}
  local raw = redis.call('HGETALL', pool.buckets_key)
  for i = 1, #raw, 2 do
    local priority, weight = string.match(raw[i], '^(-?%d+):(%d+)$')
    priority, weight = tonumber(priority), tonumber(weight)
    if not levels[priority] then
      levels[priority] = {}
      priorities[#priorities + 1] = priority
    end
    levels[priority][weight] = tonumber(raw[i + 1])
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
      local member = bucket_head(pool, priority, weight)
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
