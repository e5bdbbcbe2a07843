-- smsgw anti-fraud: one fraud check in one round trip. Semantics: antifraud/limits.py; the Python
-- memory backend (antifraud/limits_memory.py) is the reference implementation: keep them in step.
--
-- KEYS: every key the plan touches, deduplicated; operations refer to them by 1-based index.
-- ARGV[1]: the plan as one MessagePack array (built by limits_redis.encode):
--   [now, count, schemas, adds, undos, pushes, limits, reads, lists, flags, writes, wpushes]
--   schemas : per record layout, the tau of each position
--   adds    : {key, schema, at, ttl, {pos, delta, pos, delta, ...}}   (settle, then writes)
--   undos   : {key, {window, ...}, at}
--   pushes  : {key, value, maxlen, ttl}
--   limits  : {key, {window, limit, window, limit, ...}, ttl}
--   reads   : {key, schema}
--   lists   : {key, count}
--   flags   : {key, {field, ...}}
-- Decayed records are stored as MessagePack arrays {t, v0, v1, ...} (GET / SET PX).
-- A rate-limit window has two slots (bucket parity), each holding bucket * 2^20 + count (HSET).
-- Returns one MessagePack array {hits, reads, lists, flags},
-- hits = {{limit index (0-based), window, limit, wait}, ...}.

local p = cmsgpack.unpack(ARGV[1])
local now, count, schemas = p[1], p[2], p[3]
local exp, floor = math.exp, math.floor
local SHIFT = 1048576

local function slot(window, b) return string.format('%d:%d', window, b % 2) end
local function count_in(v, b)
  v = tonumber(v)
  if v ~= nil and floor(v / SHIFT) == b then return v - b * SHIFT end
  return 0
end

local cache, dirty, order = {}, {}, {}

local function load(k, schema)
  local st = cache[k]
  if st then return st end
  local taus = schemas[schema + 1]
  local size = #taus
  local raw = redis.call('GET', KEYS[k])
  if raw then
    st = cmsgpack.unpack(raw)
    for i = #st + 1, size + 1 do st[i] = 0 end
    local dt = now - st[1]
    if dt > 0 then
      local f = {}
      for i = 1, size do
        local tau = taus[i]
        local m = f[tau]
        if m == nil then m = exp(-dt / tau); f[tau] = m end
        st[i + 1] = st[i + 1] * m
      end
      st[1] = now
    end
  else
    st = {now}
    for i = 2, size + 1 do st[i] = 0 end
  end
  cache[k] = st
  return st
end

local function add(a)
  local k, schema, at, ttl, d = a[1], a[2], a[3], a[4], a[5]
  local taus = schemas[schema + 1]
  local st = load(k, schema)
  local age = st[1] - at
  for j = 1, #d, 2 do
    local pos = d[j]
    if age > 0 then
      st[pos + 2] = st[pos + 2] + d[j + 1] * exp(-age / taus[pos + 1])
    else
      st[pos + 2] = st[pos + 2] + d[j + 1]
    end
  end
  if dirty[k] == nil then order[#order + 1] = k end
  dirty[k] = now + ttl
end

local function flush()
  for _, k in ipairs(order) do
    redis.call('SET', KEYS[k], cmsgpack.pack(cache[k]), 'PX', floor((dirty[k] - now) * 1000))
  end
  dirty, order = {}, {}
end

local function push(q)
  local key = KEYS[q[1]]
  redis.call('LPUSH', key, q[2])
  redis.call('LTRIM', key, 0, q[3] - 1)
  redis.call('PEXPIRE', key, floor(q[4] * 1000))
end

-- 1. settle operations from earlier checks
for _, a in ipairs(p[4]) do add(a) end
flush()
for _, u in ipairs(p[5]) do
  for _, window in ipairs(u[2]) do
    local b = floor(u[3] / window)
    local f = slot(window, b)
    if count_in(redis.call('HGET', KEYS[u[1]], f), b) > 0 then redis.call('HINCRBY', KEYS[u[1]], f, -1) end
  end
end
for _, q in ipairs(p[6]) do push(q) end

-- 2. rate limits (sliding window approximated by two fixed windows)
local hits = {}
for li, l in ipairs(p[7]) do
  local key, wl = KEYS[l[1]], l[2]
  local fields = {}
  for j = 1, #wl, 2 do
    local b = floor(now / wl[j])
    fields[#fields + 1] = slot(wl[j], b)
    fields[#fields + 1] = slot(wl[j], b - 1)
  end
  local v = redis.call('HMGET', key, unpack(fields))
  for j = 1, #wl, 2 do
    local window, limit = wl[j], wl[j + 1]
    local b = floor(now / window)
    local cur, prev = count_in(v[j], b), count_in(v[j + 1], b - 1)
    local frac = (now - b * window) / window
    if prev * (1.0 - frac) + cur + 1 > limit then
      local wait
      if limit <= 0 then
        wait = window
      elseif cur + 1 <= limit then
        local need = frac
        if prev > 0 then need = 1.0 - (limit - 1 - cur) / prev end
        wait = math.max((need - frac) * window, 0.0)
      else
        wait = (b + 1) * window - now + window * (1.0 - (limit - 1) / cur)
      end
      hits[#hits + 1] = {li - 1, window, limit, wait}
    end
  end
end
if #hits > 0 then return cmsgpack.pack({hits, {}, {}, {}}) end

-- 3. reads (the state before this request)
local reads = {}
for _, r in ipairs(p[8]) do
  local st = load(r[1], r[2])
  local row = {}
  for i = 2, #schemas[r[2] + 1] + 1 do row[i - 1] = st[i] end
  reads[#reads + 1] = row
end
local lists = {}
for _, l in ipairs(p[9]) do lists[#lists + 1] = redis.call('LRANGE', KEYS[l[1]], 0, l[2] - 1) end
local flags = {}
for _, f in ipairs(p[10]) do
  local v = redis.call('HMGET', KEYS[f[1]], unpack(f[2]))
  local row = {}
  for j = 1, #f[2] do row[j] = v[j] or '' end
  flags[#flags + 1] = row
end

-- 4. count this request
if count then
  for _, a in ipairs(p[11]) do add(a) end
  flush()
  for _, q in ipairs(p[12]) do push(q) end
  for _, l in ipairs(p[7]) do
    local key, wl = KEYS[l[1]], l[2]
    for j = 1, #wl, 2 do
      local b = floor(now / wl[j])
      local f = slot(wl[j], b)
      if count_in(redis.call('HGET', key, f), b) > 0 then
        redis.call('HINCRBY', key, f, 1)
      else
        redis.call('HSET', key, f, string.format('%d', b * SHIFT + 1))
      end
    end
    redis.call('PEXPIRE', key, floor(l[3] * 1000))
  end
end
return cmsgpack.pack({hits, reads, lists, flags})
