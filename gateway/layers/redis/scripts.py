"""The Lua scripts behind each operation, run with EVALSHA (EVAL once after a NOSCRIPT).

Every write is one script, so each operation is one round trip and atomic on its shard. Scores
are send / join times in Unix seconds, as channels_redis writes them, so both layers expire each
other's messages and memberships the same way.
"""

from __future__ import annotations

import hashlib

__all__ = ["COMMAND_SCRIPTS", "DELIVER", "DRAIN", "EPOCH", "FLUSH", "GROUP_ADD", "GROUP_READ", "GROUP_SEND", "SEND",
           "Script"]


class Script:
    """A Lua script and its SHA1."""

    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source.encode("utf-8")
        self.sha = hashlib.sha1(self.source).hexdigest()

    def __repr__(self) -> str:
        return f"<Script {self.name} {self.sha[:8]}>"


# KEYS[1] channel key. ARGV: member, now, expiry cutoff, capacity, key ttl (ms).
# Expired messages are purged (and counted) only when they would make the channel look full;
# otherwise receivers drop them when they pop them (and count them there).
# Returns {queued (1/0), expired messages removed, messages in the key now} (the last one tells
# the sender how many more sends may go out before a reply: see sending.py).
SEND = Script("send", """
local expired = 0
local capacity = tonumber(ARGV[4])
local size = redis.call('ZCARD', KEYS[1])
if size >= capacity then
  expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
  size = size - expired
  if expired == 0 or size >= capacity then return {0, expired, size} end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, expired, size + 1}
""")

# KEYS[1] group key. ARGV: now, channel, key ttl (ms: group_expiry).
GROUP_ADD = Script("group_add", """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
""")

# KEYS[1] group key. ARGV: membership cutoff. Returns the live members.
GROUP_READ = Script("group_read", """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
""")

# KEYS: channel keys. ARGV: now, expiry cutoff, key ttl (ms), member_1..member_n, capacity_1..n.
# As SEND: a full key is purged of expired messages before it counts as full.
# Returns {expired messages removed, index of each full key...}.
DELIVER = Script("deliver", """
local n = #KEYS
local out = {0}
for i = 1, n do
  local cap = tonumber(ARGV[3 + n + i])
  local room = redis.call('ZCARD', KEYS[i]) < cap
  if not room then
    out[1] = out[1] + redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[2])
    room = redis.call('ZCARD', KEYS[i]) < cap
  end
  if room then
    redis.call('ZADD', KEYS[i], ARGV[1], ARGV[3 + i])
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
  else
    out[#out + 1] = i
  end
end
return out
""")

# group_send in one round trip (plain msgpack, one capacity for every channel).
# KEYS[1] group key. ARGV: 1 now, 2 membership cutoff, 3 expiry cutoff, 4 key ttl (ms),
# 5 key prefix, 6 random prefix, 7 entries in the message map, 8 the map's encoded entries,
# 9 this process's suffix ".<client prefix>!", 10 ring size, 11 this shard's index, 12 capacity.
# Members are bucketed by Redis key; each key gets the message plus "__asgi_channel__": [names]
# (the msgpack map is rebuilt around the caller's encoded entries). Members in this process and
# members whose key lives on another shard are returned instead of written.
# Returns {members queued, members skipped at capacity, expired messages removed, local members,
# other-shard members}; each list as newline-separated strings of up to 32 names (names have no
# newline), cheaper to return and split than one bulk string per member, and much cheaper to
# build than one long string (Lua's table.concat slows down past a few KB: 1 000 names took
# ~0.3 ms more as one string).
GROUP_SEND = Script("group_send", """
local gkey = KEYS[1]
redis.call('ZREMRANGEBYSCORE', gkey, '-inf', ARGV[2])
local members = redis.call('ZRANGE', gkey, 0, -1)
local locals, others = {}, {}
if #members == 0 then return {0, 0, 0, {}, {}} end
local prefix, rp, nentries, entries = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8]
local suffix, ring, shard, cap = ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local function be16(x) return string.char(math.floor(x / 256) % 256, x % 256) end
local function be32(x) return string.char(math.floor(x / 16777216) % 256, math.floor(x / 65536) % 256, math.floor(x / 256) % 256, x % 256) end
local function maphdr(k) if k < 16 then return string.char(128 + k) elseif k < 65536 then return '\\222' .. be16(k) else return '\\223' .. be32(k) end end
local function arrhdr(k) if k < 16 then return string.char(144 + k) elseif k < 65536 then return '\\220' .. be16(k) else return '\\221' .. be32(k) end end
local function strhdr(k) if k < 32 then return string.char(160 + k) elseif k < 256 then return '\\217' .. string.char(k) elseif k < 65536 then return '\\218' .. be16(k) else return '\\219' .. be32(k) end end
local crc
if ring > 1 then
  crc = {}
  for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
      if bit.band(c, 1) == 1 then c = bit.bxor(bit.rshift(c, 1), 3988292384) else c = bit.rshift(c, 1) end
    end
    crc[i] = c
  end
end
local function shard_of(s)
  local c = -1
  for i = 1, #s do c = bit.bxor(bit.rshift(c, 8), crc[bit.band(bit.bxor(c, string.byte(s, i)), 255)]) end
  return math.floor(bit.band(bit.bnot(c), 4095) / (4096 / ring))
end
local order, buckets = {}, {}
local sl = #suffix
local find, sub = string.find, string.sub
local last_nl
for i = 1, #members do
  local m = members[i]
  -- the suffix ends with the name's only '!': found anywhere means the name is ours
  if sl > 0 and find(m, suffix, 1, true) then
    locals[#locals + 1] = m
  else
  local nl
  if last_nl and find(m, last_nl, 1, true) == 1 then
    nl = last_nl  -- same process as the previous member (they usually come in runs)
  else
    local bang = find(m, '!', 1, true)
    nl = m
    if bang then nl = sub(m, 1, bang); last_nl = nl else last_nl = nil end
  end
  if ring > 1 and shard_of(nl) ~= shard then
    others[#others + 1] = m
  else
    local b = buckets[nl]
    if b == nil then b = {}; buckets[nl] = b; order[#order + 1] = nl end
    b[#b + 1] = m
  end
  end
end
local queued, full, expired = 0, 0, 0
local head = rp .. maphdr(nentries + 1) .. entries .. '\\176__asgi_channel__'
for _, nl in ipairs(order) do
  local key = prefix .. nl
  local b = buckets[nl]
  local room = redis.call('ZCARD', key) < cap
  if not room then
    expired = expired + redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[3])
    room = redis.call('ZCARD', key) < cap
  end
  if room then
    local len, same = #b[1], true
    for j = 2, #b do
      if #b[j] ~= len then same = false; break end
    end
    local body
    if same then  -- names of one length (the usual): their common header is the separator
      local h = strhdr(len)
      b[1] = head .. arrhdr(#b) .. h .. b[1]  -- one long string built, not two
      body = table.concat(b, h)
    else
      local parts, hdrs, n = {head, arrhdr(#b)}, {}, 2
      for j = 1, #b do
        local name = b[j]
        local h = hdrs[#name]
        if h == nil then h = strhdr(#name); hdrs[#name] = h end
        parts[n + 1] = h
        parts[n + 2] = name
        n = n + 2
      end
      body = table.concat(parts)
    end
    redis.call('ZADD', key, ARGV[1], body)
    redis.call('PEXPIRE', key, ARGV[4])
    queued = queued + #b
  else
    full = full + #b
  end
end
local function chunks(t)
  local out, concat = {}, table.concat
  for i = 1, #t, 32 do out[#out + 1] = concat(t, '\\n', i, math.min(i + 31, #t)) end
  return out
end
return {queued, full, expired, chunks(locals), chunks(others)}
""")

# Non-blocking pop of up to ARGV[i] members from each KEYS[i].
# Returns {key, {member, score, ...}, key, {...}, ...} for the keys that had any.
DRAIN = Script("drain", """
local out = {}
for i = 1, #KEYS do
  local c = tonumber(ARGV[i])
  if c > 0 then
    local got = redis.call('ZPOPMIN', KEYS[i], c)
    if #got > 0 then out[#out + 1] = KEYS[i]; out[#out + 1] = got end
  end
end
return out
""")

# ARGV[1]: a KEYS pattern (the layer's escaped prefix + '*'). Returns the number of keys deleted.
FLUSH = Script("flush", """
local keys = redis.call('KEYS', ARGV[1])
for i = 1, #keys, 5000 do
  redis.call('DEL', unpack(keys, i, math.min(i + 4999, #keys)))
end
return #keys
""")

# KEYS[1]: the layer's marker key (outside the prefix: flush() leaves it). ARGV[1]: the value to
# store when it is missing ("fresh:<time>" on a process's first connection, "lost:<time>" on a
# reconnection: the server lost its data). Returns the value stored now.
EPOCH = Script("epoch", """
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
""")

#: The scripts every command connection loads when it connects.
COMMAND_SCRIPTS = (SEND, GROUP_ADD, GROUP_READ, GROUP_SEND, DELIVER, FLUSH, EPOCH)
