"""The Lua scripts of the store, each one step that must not be split.

Redis runs a script atomically, so every invariant that spans several keys lives here: a
row's outcome and its counters move together (first final outcome wins), exactly one writer
stamps a batch finished, a claim is released only by its owner, and the create claim is
fenced against a stale "not found". Both stores register the same texts, so the sync and
async paths cannot drift apart.
"""

from __future__ import annotations

# KEYS: rows, counts, meta. ARGV: ttl, now, then (row_number, json, outcome) triples.
# Returns {done, newly recorded flag per row}. The meta's finished_at is stamped in the same
# step that makes done reach total_rows, so exactly one writer finishes a batch.
RECORD_LUA = """
local ttl = tonumber(ARGV[1])
local flags = {}
local added = 0
for i = 3, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[i + 2], 1)
    added = added + 1
    flags[#flags + 1] = 1
  else
    flags[#flags + 1] = 0
  end
end
local done = redis.call('HINCRBY', KEYS[2], 'done', added)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
local total = tonumber(redis.call('HGET', KEYS[3], 'total_rows') or '0')
if added > 0 and total and total > 0 and done >= total then
  redis.call('HSETNX', KEYS[3], 'finished_at', ARGV[2])
end
return {done, flags}
"""

# KEYS: meta, counts. ARGV: total, now, ttl. Covers batches whose rows all finished before
# the total was known (for example, every row invalid).
SET_TOTAL_LUA = """
redis.call('HSET', KEYS[1], 'total_rows', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
local done = tonumber(redis.call('HGET', KEYS[2], 'done') or '0')
if tonumber(ARGV[1]) <= done then
  redis.call('HSETNX', KEYS[1], 'finished_at', ARGV[2])
end
return done
"""

# The customer's part of a final answer, spliced into FINISH_ROW_LUA. Expects the locals
# claim, sent, ledger (keys: create claim, "create sent", ledger), owner, entry (ledger json,
# '' for none) and ttl. Remembers the customer (if done), forgets "create sent", releases the
# claim. "Create sent" stays while another owner holds the claim: that worker's create is in
# flight and its next lookup still needs the marker if the answer gets lost.
_FINISH_CUSTOMER = """
if entry ~= '' then
  redis.call('SET', ledger, entry, 'EX', ttl)
end
local holder = redis.call('GET', claim)
if holder == owner then
  redis.call('DEL', claim)
  holder = false
end
if not holder then
  redis.call('DEL', sent)
end
"""

# KEYS: rows, counts, meta, calls, all_calls, claim, create_sent, ledger.
# ARGV: ttl, now, row_number, record json ('' = do not record), outcome,
#       owner ('' = leave the customer's keys alone), ledger json ('' = none),
#       then (call kind, count) pairs.
# The end of one row in one round trip: finish the customer (_FINISH_CUSTOMER), count its
# partner calls, record its outcome first-wins (as RECORD_LUA). Returns 1 if newly recorded.
FINISH_ROW_LUA = """
local ttl = tonumber(ARGV[1])
if ARGV[6] ~= '' then
  local claim, sent, ledger, owner, entry = KEYS[6], KEYS[7], KEYS[8], ARGV[6], ARGV[7]
""" + _FINISH_CUSTOMER + """end
if #ARGV >= 9 then
  for i = 8, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1])
    redis.call('HINCRBY', KEYS[5], ARGV[i], ARGV[i + 1])
  end
  redis.call('EXPIRE', KEYS[4], ttl)
  redis.call('EXPIRE', KEYS[5], ttl)
end
if ARGV[4] == '' then
  return 0
end
if redis.call('HSETNX', KEYS[1], ARGV[3], ARGV[4]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
local done = redis.call('HINCRBY', KEYS[2], 'done', 1)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
local total = tonumber(redis.call('HGET', KEYS[3], 'total_rows') or '0')
if total and total > 0 and done >= total then
  redis.call('HSETNX', KEYS[3], 'finished_at', ARGV[2])
end
return 1
"""

# KEYS: claim. ARGV: owner. Delete only our own claim, never one a later owner took after
# ours expired.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: claim, create_sent, ledger. ARGV: owner, attempt, acknowledged marker, claim ttl,
# state ttl. The create claim, fenced against a stale "not found": a lookup made while
# another create was in flight can say "not found" although that create then landed.
# "Create sent" names the latest attempt (owner/n). Answers {code, value}:
# {0, ''} someone holds the claim (wait); {1, ''} claimed, the marker names ``attempt``;
# {3, ledger} the customer was finished meanwhile; {2, marker} another owner's attempt
# ended after our lookup may have begun: look up again, then call again acknowledging it.
CLAIM_CREATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, ''}
end
local done = redis.call('GET', KEYS[3])
if done then
  return {3, done}
end
local marker = redis.call('GET', KEYS[2])
if marker and marker ~= ARGV[3] and string.sub(marker, 1, #ARGV[1] + 1) ~= ARGV[1] .. '/' then
  return {2, marker}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[4]))
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[5]))
return {1, ''}
"""

# KEYS: claim. ARGV: owner, ttl. Keep our own claim for another ttl (a create with no answer
# may still be running at the partner).
HOLD_CLAIM_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""
