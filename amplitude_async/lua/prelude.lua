-- The budget script: one exchange with a project's shared budget, run atomically by
-- amplitude_async.redis_store.RedisBudgetStore. It is these files joined in this order
-- (redis_store.SCRIPT_PARTS), each using the locals of those before it:
--   prelude.lua   the arguments, constants and write helpers (this file)
--   ledger.lua    a pool's ledger (amplitude_async.budget.PoolLedger and PoolSnapshot)
--   waiters.lua   a pool's queue (amplitude_async.waiters.PoolQueue), its member encoding
--   policy.lua    the admission decision (amplitude_async.policy), name for name
--   exchange.lua  reading and checking the state, the exchange, the answer
--
-- KEYS: 1 config (hash: config, epoch, gen, seq, keeper, wake_at, refresh), 2 owners (zset:
-- owner -> heartbeat deadline), 3 pending grants (hash: owner -> "pool:local:entry,..."),
-- 4 owner info (hash: owner -> "exchange number|lease deadline"), then per pool ten keys:
-- ledger, flight, done by weight, done by time (ledger.lua), queue, buckets, claims, waiters,
-- waiters by owner, fresh (waiters.lua). Pools are numbered from 1 in the config's order.
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

-- Keys written by this exchange, to have their expiry set.
local touched = {}
local function write(command, key, ...)
  touched[key] = true
  return redis.call(command, key, ...)
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
