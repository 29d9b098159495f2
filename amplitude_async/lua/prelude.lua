-- The budget script: one exchange with a project's shared budget, run atomically by
-- amplitude_async.redis_store.RedisBudgetStore. It is these files joined in this order
-- (redis_store.SCRIPT_PARTS), each using the locals of those before it:
--   prelude.lua   the arguments, constants and write helpers (this file)
--   ledger.lua    a pool's ledger (amplitude_async.budget.PoolLedger and PoolSnapshot)
--   waiters.lua   a pool's queue (amplitude_async.waiters.PoolQueue), its member encoding
--   policy.lua    the admission decision (amplitude_async.policy), name for name
--   exchange.lua  reading and checking the state, the exchange, the answer
--
-- KEYS: 1 config (hash: config, epoch, gen, seq, keeper, wake_at, refresh, expires; see
-- the expiry below), 2 owners (zset: owner -> heartbeat deadline), 3 pending grants (hash:
-- owner -> "pool:local:entry,..."), 4 owner info (hash: owner -> "exchange number|lease
-- deadline"), then per pool ten keys: ledger, flight, done by weight, done by time
-- (ledger.lua), queue, buckets, claims, waiters, waiters by owner, fresh (waiters.lua).
-- Pools are numbered from 1 in the config's order.
--
-- ARGV: 1 owner ('' only reads), 2 lease term (s), 3 warm (0/1), 4 time override ('' =
-- the server's TIME; see RedisBudgetStore.exchange_at), 5 config (JSON: pools with cap,
-- windows [budget, length] and drain; bound, the starvation bound, -1 for none; claim_delay;
-- cohort_month), 6 changes (JSON, below), 7 key TTL (ms), 8 grant channel prefix, 9 live
-- channel prefix (a process that has exchanged listens on one).
--
-- Changes (admission.Changes), each list of [pool, ...] arrays: register [pool, local,
-- weight, priority], cancel [pool, local], complete, abandon, release and held [pool, entry],
-- pause [pool, seconds]; held absent = no reconciliation; leaving (true: the owner detaches),
-- seq (its exchange number, 0: none), seen (the version it last saw), beat (its heartbeat
-- term), sent_at and patience (the server's time at sending, as the sender reckons it, and
-- how long it waits for the answer; absent before its first answer).
--
-- The answer is one JSON object (admission.Outcome): grants ("pool:local:entry" items joined
-- by commas, as in the pending hash and on the grant channel, whose messages are
-- "decision time|grants"), cancelled ("pool:local" items), wake_in, queued, rejoined, usage
-- (per pool: used per window, in_flight, queued, paused_for), processes, seen, reset, and
-- now (the server's time); times and durations as text of 17 significant digits. Or an error
-- reply: AMPLITUDE_STALE, AMPLITUDE_LATE, AMPLITUDE_LIMITS, AMPLITUDE_CORRUPT.

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
local config_text = ARGV[5]
local changes = cjson.decode(ARGV[6])
local ttl = tonumber(ARGV[7])
local grant_channel = ARGV[8]
local live_channel = ARGV[9]
local config = cjson.decode(config_text)
local starvation_bound = config.bound
if starvation_bound < 0 then starvation_bound = math.huge end

-- The budget's own keys (each pool's ten follow them, see load_pools).
local CONFIG_KEY, OWNERS_KEY, PENDING_KEY, INFO_KEY = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local INF = math.huge
local NEVER = -1e308
-- No lease, pause or deadline is longer than this: a later one is garbage.
local FAR = 86400 * 7

-- Every time and duration leaves the script as 17 significant digits: a double, exactly.
local function fmt(x) return string.format('%.17g', x) end

-- -- writes, gathered per key -------------------------------------------------------------
-- A hash field or a sorted set's member written by the exchange is kept here and sent when
-- the key is next read by a range (sync) or the exchange ends (sync_all): one command per key
-- and kind, however many fields or members changed (HSET, HDEL, ZADD, ZREM, RPUSH), additions
-- before removals, so a key that keeps something never empties on the way. A hash field read
-- goes through hash_get, which sees what is not sent yet and keeps what it read.
--
-- Expiry: every key of the budget expires at one time, `expires` in the config hash (the
-- config a second before the others, a tenth of the TTL if that is shorter, so a reader never
-- finds the config without the rest).
-- It is set on every key when the exchange that finds the refresh time passed (`refresh` in
-- the config hash, a quarter of the TTL after the last) moves it a TTL on; otherwise only on
-- the keys this exchange may have created (sent an addition to while not known to hold
-- anything): a write never resets a key's expiry, and an empty key has none.
local hash_writes = {}   -- key -> field -> value, or false to delete it
local zset_writes = {}   -- key -> member -> score, or false to remove it
local list_writes = {}   -- key -> values to append
local hash_read = {}     -- key -> field -> value, or false: as it is now (sent or not)
local present = {}       -- key -> true: certainly holds something (what is sent counted)
local created = {}       -- key -> true: an addition was sent while it may have been empty

-- Forget every write not sent and everything known (a new run of the exchange).
local function forget_writes()
  hash_writes, zset_writes, list_writes, hash_read, present, created = {}, {}, {}, {}, {}, {}
end

-- Sent in parts: a Lua call takes a few thousand arguments at most.
local CHUNK = 1000
local function send(command, key, args)
  local result = 0
  for first = 1, #args, CHUNK do
    result = redis.call(command, key, unpack(args, first, math.min(#args, first + CHUNK - 1)))
  end
  return result
end

local function mark_added(key)
  if not present[key] then created[key] = true end
  present[key] = true
end

-- Send `changes` to `key` (name -> value, or false to remove it) as one `add` and one
-- `remove` command; `value_first`: the addition's arguments are value, name (ZADD's score,
-- member) rather than name, value (HSET's field, value).
local function send_changes(key, changes, add, remove, value_first)
  local added, removed = {}, {}
  for name, value in pairs(changes) do
    if not value then
      removed[#removed + 1] = name
    elseif value_first then
      added[#added + 1] = value
      added[#added + 1] = name
    else
      added[#added + 1] = name
      added[#added + 1] = value
    end
  end
  if #added > 0 then
    mark_added(key)
    send(add, key, added)
  end
  if #removed > 0 then
    send(remove, key, removed)
    present[key] = nil
  end
end

-- Send what is gathered for `key`.
local function sync(key)
  local fields = hash_writes[key]
  if fields then
    hash_writes[key] = nil
    send_changes(key, fields, 'HSET', 'HDEL', false)
  end
  local members = zset_writes[key]
  if members then
    zset_writes[key] = nil
    send_changes(key, members, 'ZADD', 'ZREM', true)
  end
  local values = list_writes[key]
  if values then
    list_writes[key] = nil
    mark_added(key)
    send('RPUSH', key, values)
  end
end

local function sync_all()
  for _, key in ipairs(KEYS) do sync(key) end
end

local function hash_set(key, field, value)
  if not hash_writes[key] then hash_writes[key] = {} end
  if not hash_read[key] then hash_read[key] = {} end
  hash_writes[key][field] = value
  hash_read[key][field] = value
end

local function hash_delete(key, field) hash_set(key, field, false) end

-- Read these fields of a hash with one command (the ones not known yet), for hash_get.
local function hash_fetch(key, fields)
  local known = hash_read[key] or {}
  hash_read[key] = known
  local missing = {}
  for _, field in ipairs(fields) do
    if known[field] == nil then missing[#missing + 1] = field end
  end
  for first = 1, #missing, CHUNK do
    local part = { unpack(missing, first, math.min(#missing, first + CHUNK - 1)) }
    local values = redis.call('HMGET', key, unpack(part))
    for i, field in ipairs(part) do
      known[field] = values[i] or false
      if values[i] then present[key] = true end
    end
  end
end

-- A hash field as it is now (nil if absent).
local function hash_get(key, field)
  hash_fetch(key, { field })
  return hash_read[key][field] or nil
end

local function zset_add(key, score, member)
  if not zset_writes[key] then zset_writes[key] = {} end
  zset_writes[key][member] = score
end

local function zset_remove(key, member) zset_add(key, false, member) end

local function list_append(key, value)
  if not list_writes[key] then list_writes[key] = {} end
  local values = list_writes[key]
  values[#values + 1] = value
end

-- A command that removes from `key` at once (after what is gathered for it): whether the key
-- still holds something afterwards, if the caller knows (true), or not.
local function remove_now(still_present, command, key, ...)
  sync(key)
  local result = redis.call(command, key, ...)
  present[key] = still_present or nil
  return result
end

-- Thrown (as a table) to refuse an exchange without writing anything.
local function refuse(text) error({ typed = text }) end
-- Thrown (as a table) to wipe the budget's state and start cold.
local function garbage(key, what) error({ reset = 'key ' .. key .. ': ' .. what }) end

local function finite(x) return x ~= nil and x == x and x > -INF and x < INF end

local BUDGET_KEY_TYPES = { 'hash', 'zset', 'hash', 'hash' }
local POOL_KEY_TYPES = {
  'hash', 'hash', 'zset', 'zset', 'zset', 'hash', 'zset', 'hash', 'zset', 'list',
}
local function expected_type(i)
  if i <= 4 then return BUDGET_KEY_TYPES[i] end
  return POOL_KEY_TYPES[(i - 5) % 10 + 1]
end

-- Each pool's state, read by load_pools (exchange.lua), in the order of config.pools.
local pools = {}
local POOL_COUNT = #config.pools
