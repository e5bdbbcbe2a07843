-- smsgw anti-fraud: one fraud check in one round trip. Semantics: antifraud/limits.py; the Python
-- memory backend (antifraud/limits_memory.py) is the reference implementation: keep them in step.
--
-- The per-position decay constants of each record layout are compiled into the script when it is
-- loaded (limits_redis.script_for), so they do not travel with every call:
local schemas = {} --@SCHEMAS@--
--
-- KEYS: every key the plan touches, deduplicated; operations refer to them by 1-based index.
-- ARGV[1]: the plan's numbers, little-endian doubles (struct; cmsgpack is 5-15x slower on nested
-- tables); ARGV[2]: its strings, concatenated; ARGV[3]: their byte lengths, as doubles. Strings are
-- referred to by 0-based index (one argument each would cost the client more than the script).
-- The numbers, in order, each section starting with its count n:
--   now, count(0|1)
--   templates : n, then each: m, pos, delta, ... (m pairs)   deltas shared by the add operations
--   fieldsets : n, then each: m, string index ...            field lists shared by flag reads
--   adds      : n, then each: key, schema, at, ttl, template  (settle)
--   undos     : n, then each: key, m, window ..., at
--   logs      : n, then each: key, string, maxlen, ttl        a Redis list (LPUSH, LTRIM)
--   limits    : n, then each: key, m, window, limit, ..., ttl
--   reads     : n, then each: key, schema
--   recents   : n, then each: key, count                      a short list kept as one value
--   flags     : n, then each: key, fieldset
--   writes    : as adds
--   rpushes   : n, then each: key, string, maxlen, ttl
-- Records are stored as packed doubles {t, v0, v1, ...} and short lists as MessagePack arrays of
-- strings, each one value (GET / SET PX). A rate-limit window has two slots (bucket parity) holding
-- bucket * 2^20 + count. Returns ONE string (one bulk reply is far cheaper for the client to parse
-- than an array): a double N, then N doubles [nhits, (limit index, window, limit, wait)*, reads in
-- order, then per recent list its length m and its m entries' byte lengths, then every flag
-- value's byte length ('' when missing)], then the entries and flag values, concatenated.

local exp, floor, call = math.exp, math.floor, redis.call
local spack, sunpack, srep = struct.pack, struct.unpack, string.rep
local SHIFT = 1048576

local raw = ARGV[1]
local nums = {sunpack('<' .. srep('d', #raw / 8), raw)}
local i = 0
local function num() i = i + 1; return nums[i] end
local strs = {}
do
  local lens, blob = ARGV[3], ARGV[2]
  if #lens > 0 then
    local ls = {sunpack('<' .. srep('d', #lens / 8), lens)}
    local pos = 1
    for j = 1, #ls - 1 do  -- struct.unpack returns the next position last
      strs[j] = string.sub(blob, pos, pos + ls[j] - 1)
      pos = pos + ls[j]
    end
  end
end
local function str(ix) return strs[ix + 1] end

local now, count = num(), num() == 1

local function slot(window, b) return string.format('%d:%d', window, b % 2) end
local function count_in(v, b)
  v = tonumber(v)
  if v ~= nil and floor(v / SHIFT) == b then return v - b * SHIFT end
  return 0
end

local templates = {}
for t = 1, num() do
  local d = {}
  for j = 1, 2 * num() do d[j] = num() end
  templates[t] = d
end
local fieldsets = {}
for f = 1, num() do
  local names = {}
  for j = 1, num() do names[j] = str(num()) end
  fieldsets[f] = names
end

local cache, dirty, order = {}, {}, {}

local function load(k, schema)
  local st = cache[k]
  if st then return st end
  local taus = schemas[schema + 1]
  local size = #taus
  local got = call('GET', KEYS[k])
  if got then
    st = {sunpack('<' .. srep('d', #got / 8), got)}
    st[#st] = nil  -- struct.unpack returns the next position last
    for j = #st + 1, size + 1 do st[j] = 0 end
    local dt = now - st[1]
    if dt > 0 then
      local f = {}
      for j = 1, size do
        local tau = taus[j]
        local m = f[tau]
        if m == nil then m = exp(-dt / tau); f[tau] = m end
        st[j + 1] = st[j + 1] * m
      end
      st[1] = now
    end
  else
    st = {now}
    for j = 2, size + 1 do st[j] = 0 end
  end
  cache[k] = st
  return st
end

local function add(k, schema, at, ttl, d)
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

local function read_adds(apply)
  for _ = 1, num() do
    local k, schema, at, ttl, t = num(), num(), num(), num(), num()
    if apply then add(k, schema, at, ttl, templates[t + 1]) end
  end
end

local function flush()
  for _, k in ipairs(order) do
    local st = cache[k]
    call('SET', KEYS[k], spack('<' .. srep('d', #st), unpack(st)), 'PX', floor((dirty[k] - now) * 1000))
  end
  dirty, order = {}, {}
end

local recent = {}
local function recent_list(k)
  local got = recent[k]
  if got == nil then
    local v = call('GET', KEYS[k])
    got = v and cmsgpack.unpack(v) or {}
    recent[k] = got
  end
  return got
end

-- 1. settle operations from earlier checks (records are written once, at the end)
read_adds(true)
for _ = 1, num() do
  local key, fields, bs = KEYS[num()], {}, {}
  local windows = {}
  for j = 1, num() do windows[j] = num() end
  local at = num()
  for j, window in ipairs(windows) do
    bs[j] = floor(at / window)
    fields[j] = slot(window, bs[j])
  end
  local v = call('HMGET', key, unpack(fields))
  local args = {}
  for j = 1, #fields do
    if count_in(v[j], bs[j]) > 0 then
      args[#args + 1] = fields[j]
      args[#args + 1] = string.format('%d', tonumber(v[j]) - 1)
    end
  end
  if #args > 0 then call('HSET', key, unpack(args)) end
end
for _ = 1, num() do
  local key, value, maxlen, ttl = KEYS[num()], str(num()), num(), num()
  call('LPUSH', key, value)
  call('LTRIM', key, 0, maxlen - 1)
  call('PEXPIRE', key, floor(ttl * 1000))
end

-- 2. rate limits (sliding window approximated by two fixed windows)
local out = {0}
local limits = {}
for li = 1, num() do
  local k = num()
  local wl = {}
  for j = 1, 2 * num() do wl[j] = num() end
  local ttl = num()
  local fields = {}
  for j = 1, #wl, 2 do
    local b = floor(now / wl[j])
    fields[#fields + 1] = slot(wl[j], b)
    fields[#fields + 1] = slot(wl[j], b - 1)
  end
  local v = call('HMGET', KEYS[k], unpack(fields))
  limits[li] = {k, wl, ttl, v}
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
      out[1] = out[1] + 1
      out[#out + 1] = li - 1
      out[#out + 1] = window
      out[#out + 1] = limit
      out[#out + 1] = wait
    end
  end
end
local function packed(nums, texts)
  return spack('<d', #nums) .. spack('<' .. srep('d', #nums), unpack(nums)) .. table.concat(texts)
end
if out[1] > 0 then
  flush()
  return packed(out, {})
end

-- 3. reads (the state before this request)
for _ = 1, num() do
  local k, schema = num(), num()
  local st = load(k, schema)
  for j = 2, #schemas[schema + 1] + 1 do out[#out + 1] = st[j] end
end
local texts = {}
for _ = 1, num() do
  local k, n = num(), num()
  local got = recent_list(k)
  local m = math.min(n, #got)
  out[#out + 1] = m
  for j = 1, m do
    out[#out + 1] = #got[j]
    texts[#texts + 1] = got[j]
  end
end
for _ = 1, num() do
  local k, names = num(), fieldsets[num() + 1]
  local v = call('HMGET', KEYS[k], unpack(names))
  for j = 1, #names do
    local x = v[j] or ''
    out[#out + 1] = #x
    texts[#texts + 1] = x
  end
end

-- 4. count this request
read_adds(count)
flush()
if count then
  for _ = 1, num() do
    local k, value, maxlen, ttl = num(), str(num()), num(), num()
    local old, new = recent_list(k), {value}
    for j = 1, math.min(#old, maxlen - 1) do new[j + 1] = old[j] end
    recent[k] = new
    call('SET', KEYS[k], cmsgpack.pack(new), 'PX', floor(ttl * 1000))
  end
  for _, l in ipairs(limits) do
    local k, wl, ttl, v = l[1], l[2], l[3], l[4]
    local args = {}
    for j = 1, #wl, 2 do
      local b = floor(now / wl[j])
      args[#args + 1] = slot(wl[j], b)
      if count_in(v[j], b) > 0 then
        args[#args + 1] = string.format('%d', tonumber(v[j]) + 1)
      else
        args[#args + 1] = string.format('%d', b * SHIFT + 1)
      end
    end
    call('HSET', KEYS[k], unpack(args))
    call('PEXPIRE', KEYS[k], floor(ttl * 1000))
  end
end
return packed(out, texts)
