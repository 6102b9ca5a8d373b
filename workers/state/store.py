"""Every Redis key of the pipeline, in one place, each written with a TTL.

What lives here:

- batch meta (a hash), the list of recent batches and the enqueue cursor (resume support);
- one outcome record per row (a hash per batch), written "first final outcome wins": a
  redelivered task can never give a row a second outcome, and the per-outcome counters move
  only when a record is new (one Lua script, so the two can never disagree);
- the ledger of customers that reached ``onboarded``/``already_exists``, shared by all
  batches, so a rerun costs no partner call for them;
- the create claim (``SET NX`` with a TTL: two workers never create the same customer at
  once, and a dead worker's claim expires) and the "create sent" marker (in doubt: a later
  lookup that finds the customer means our create landed);
- per-chunk delivery counters (poison detection) and partner-call counters by kind.

Customer keys hold a digest of (id_type, id_number), never the ID number itself, so key
listings and ``MONITOR`` output carry no personal data.

``BatchStore`` is the synchronous store (submit, status, report, task preamble);
``AsyncBatchStore`` offers the hot-path subset for the per-customer flow on an event loop.
Its per-row scripts (``begin_create``, ``finish_row``) are coalesced: calls made by
concurrent rows while a round trip is under way go to Redis together as one pipeline, so
under load a row costs a fraction of a round trip's client CPU (bench/throughput.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from dataclasses import field as dc_field
from datetime import UTC, datetime
from typing import Any, cast

import redis
import redis.asyncio
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError
from redis.typing import EncodableT, FieldT

from pipeline.core.followup import CustomerStatus
from pipeline.core.outcomes import Outcome, RowResult

DEFAULT_TTL_SECONDS = 14 * 24 * 3600
RECENT_BATCHES_KEPT = 1000
CALL_KINDS = ("lookup", "onboard", "status", "token")
# Hash fields written per HSET when a rerun's selection is stored (bounded request size).
_SELECTION_WRITE = 10_000
# kombu's Redis transport keeps a queue's messages of priority p > 0 in "<queue>\x06\x16<p>"
# and every delivered-but-unacknowledged message (of all queues) in one hash.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
UNACKED_KEY = "unacked"


# Shared encoders: json.dumps with options builds a new encoder per call (twice per row).
_COMPACT = json.JSONEncoder(separators=(",", ":"))
_COMPACT_UTF8 = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def utc_now() -> str:
    """Current UTC time as ISO 8601, the form every timestamp in the store takes."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def customer_digest(id_type: str, id_number: str) -> str:
    """Stable, non-reversible key part for one customer (no ID number in key names)."""
    raw = f"{id_type.strip()}\x1f{id_number.strip()}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class Keys:
    """Names of every key the pipeline uses; nothing else builds key names."""

    def __init__(self, prefix: str = "onboard", partner_scope: str = "") -> None:
        self.prefix = prefix
        # Customer keys (ledger, claim, create-sent) describe a customer *at one partner*: a
        # ledger filled against the sandbox host must never answer for production, so they
        # live under the partner's scope (see ``PartnerSettings.scope_id``).
        self.customer_prefix = f"{prefix}:p:{partner_scope}" if partner_scope else prefix

    def meta(self, batch_id: str) -> str:
        """Hash of the batch's descriptive fields and cursor."""
        return f"{self.prefix}:batch:{batch_id}:meta"

    def rows(self, batch_id: str) -> str:
        """Hash row_number → compact JSON outcome record."""
        return f"{self.prefix}:batch:{batch_id}:rows"

    def counts(self, batch_id: str) -> str:
        """Hash outcome → rows recorded with it, plus ``done``."""
        return f"{self.prefix}:batch:{batch_id}:counts"

    def deliveries(self, batch_id: str) -> str:
        """Hash chunk id → times the chunk was delivered to a worker."""
        return f"{self.prefix}:batch:{batch_id}:deliveries"

    def calls(self, batch_id: str) -> str:
        """Hash call kind → partner calls made for the batch."""
        return f"{self.prefix}:batch:{batch_id}:calls"

    def all_calls(self) -> str:
        """Hash call kind → partner calls made by all batches."""
        return f"{self.prefix}:calls"

    def batches(self) -> str:
        """Sorted set of batch ids scored by creation time."""
        return f"{self.prefix}:batches"

    def ledger(self, id_type: str, id_number: str) -> str:
        """Where a customer that reached a done outcome is remembered across batches."""
        return f"{self.customer_prefix}:ledger:{customer_digest(id_type, id_number)}"

    def claim(self, id_type: str, id_number: str) -> str:
        """Create claim: held by the one worker allowed to create this customer now."""
        return f"{self.customer_prefix}:claim:{customer_digest(id_type, id_number)}"

    def create_sent(self, id_type: str, id_number: str) -> str:
        """Set before a create is sent; its presence makes a later lookup hit ``onboarded``."""
        return f"{self.customer_prefix}:sent:{customer_digest(id_type, id_number)}"

    def selection(self, batch_id: str) -> str:
        """Hash input row → batch row number of a rerun batch (only its selected rows)."""
        return f"{self.prefix}:batch:{batch_id}:select"

    def statuses(self, batch_id: str) -> str:
        """Hash row_number → customer status JSON of rows left in a non-final state."""
        return f"{self.prefix}:batch:{batch_id}:status"

    def ratelimit(self, name: str) -> str:
        """GCRA theoretical arrival time of the named global rate limit."""
        return f"{self.prefix}:ratelimit:{name}"

    def pause(self, name: str) -> str:
        """Absolute time (ms) until which every worker holds off the named limit."""
        return f"{self.prefix}:pause:{name}"


@dataclass(frozen=True, slots=True)
class RowRecord:
    """The stored final word on one row, as the report prints it."""

    row_number: int
    outcome: Outcome
    ecrn: str = ""
    error_code: str = ""
    error_field: str = ""
    error_message: str = ""
    attempts: int = 0

    @classmethod
    def from_result(cls, result: RowResult) -> RowRecord:
        """Flatten a result; several errors (invalid rows) are joined with ``; ``."""
        errors = result.errors
        return cls(
            row_number=result.row_number,
            outcome=result.outcome,
            ecrn=result.ecrn,
            error_code="; ".join(e.code for e in errors),
            error_field="; ".join(e.field for e in errors),
            error_message="; ".join(e.message for e in errors),
            attempts=result.attempts,
        )

    def to_json(self) -> str:
        """Compact JSON without the row number (it is the hash field) and empty values."""
        data: dict[str, Any] = {"outcome": self.outcome.value}
        for name in ("ecrn", "error_code", "error_field", "error_message", "attempts"):
            value = getattr(self, name)
            if value:
                data[name] = value
        return _COMPACT_UTF8.encode(data)

    @classmethod
    def from_json(cls, row_number: int, raw: str | bytes) -> RowRecord:
        """Inverse of :meth:`to_json`."""
        data = json.loads(raw)
        return cls(
            row_number=row_number,
            outcome=Outcome(data["outcome"]),
            ecrn=data.get("ecrn", ""),
            error_code=data.get("error_code", ""),
            error_field=data.get("error_field", ""),
            error_message=data.get("error_message", ""),
            attempts=int(data.get("attempts", 0)),
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A customer already on the platform: how it got there, its ecrn, and which batch."""

    outcome: Outcome
    ecrn: str
    batch_id: str

    def to_json(self) -> str:
        """Compact JSON form stored in the ledger key."""
        return _COMPACT.encode(
            {"outcome": self.outcome.value, "ecrn": self.ecrn, "batch": self.batch_id}
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> LedgerEntry:
        """Inverse of :meth:`to_json`."""
        data = json.loads(raw)
        return cls(Outcome(data["outcome"]), data.get("ecrn", ""), data.get("batch", ""))


@dataclass(slots=True)
class BatchMeta:
    """Descriptive fields of one batch. ``total_rows`` is 0 until the whole file has been
    read (submit streams it), so a batch is never complete before it is fully enqueued."""

    batch_id: str
    file_name: str = ""
    sha256: str = ""
    master_data_version: str = ""
    created_at: str = ""
    started_at: str = ""
    finished_at: str = ""
    total_rows: int = 0
    rows_enqueued: int = 0
    parent_batch_id: str = ""

    @classmethod
    def from_hash(cls, batch_id: str, raw: Mapping[Any, Any]) -> BatchMeta:
        """Build from an ``HGETALL`` answer; unknown fields are ignored."""
        decoded = {_text(k): _text(v) for k, v in raw.items()}
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in decoded.items() if k in known}
        values["batch_id"] = batch_id
        for name in ("total_rows", "rows_enqueued"):
            values[name] = int(values.get(name) or 0)
        return cls(**values)


@dataclass(slots=True)
class BatchState:
    """A batch's progress as the store's counters tell it."""

    batch_id: str
    meta: BatchMeta
    counts: dict[Outcome, int] = dc_field(default_factory=dict)
    done: int = 0
    enqueue_done: bool = False
    input: dict[str, str] = dc_field(default_factory=dict)

    @property
    def total(self) -> int:
        """Rows of the input (0 until the whole file has been read)."""
        return self.meta.total_rows

    @property
    def complete(self) -> bool:
        """Every row of the fully read input has an outcome."""
        return self.enqueue_done and self.done >= self.total


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# KEYS: rows, counts, meta. ARGV: ttl, now, then (row_number, json, outcome) triples.
# Returns {done, newly recorded flag per row}. The meta's finished_at is stamped in the same
# step that makes done reach total_rows, so exactly one writer finishes a batch.
_RECORD_LUA = """
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
_SET_TOTAL_LUA = """
redis.call('HSET', KEYS[1], 'total_rows', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
local done = tonumber(redis.call('HGET', KEYS[2], 'done') or '0')
if tonumber(ARGV[1]) <= done then
  redis.call('HSETNX', KEYS[1], 'finished_at', ARGV[2])
end
return done
"""

# KEYS: rows, counts, meta, calls, all_calls, claim, create_sent, ledger.
# ARGV: ttl, now, row_number, record json ('' = do not record), outcome,
#       owner ('' = leave the customer's keys alone), ledger json ('' = none),
#       then (call kind, count) pairs.
# The end of one row in one round trip: finish the customer (as _FINISH_LUA), count its
# partner calls, record its outcome first-wins (as _RECORD_LUA). Returns 1 if newly recorded.
_FINISH_ROW_LUA = """
local ttl = tonumber(ARGV[1])
if ARGV[6] ~= '' then
  if ARGV[7] ~= '' then
    redis.call('SET', KEYS[8], ARGV[7], 'EX', ttl)
  end
  local holder = redis.call('GET', KEYS[6])
  if holder == ARGV[6] then
    redis.call('DEL', KEYS[6])
    holder = false
  end
  if not holder then
    redis.call('DEL', KEYS[7])
  end
end
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
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: claim, create_sent, ledger. ARGV: owner, ledger json ('' for none), ttl.
# After a final answer for a customer: remember it (if done), forget "create sent", release.
# "Create sent" stays while another owner holds the claim: that worker's create is in flight
# and its next lookup still needs the marker if the answer gets lost.
_FINISH_LUA = """
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[3], ARGV[2], 'EX', tonumber(ARGV[3]))
end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
  holder = false
end
if not holder then
  redis.call('DEL', KEYS[2])
end
return 1
"""


# KEYS: claim, create_sent. ARGV: owner, claim ttl, batch id, state ttl.
# Claim and "create sent" in one step: no one ever holds the claim without the marker.
_BEGIN_CREATE_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then
  redis.call('SET', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[4]))
  return 1
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
_CLAIM_CREATE_LUA = """
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
_HOLD_CLAIM_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""


class _Base:
    """Key names, TTL and argument building shared by the sync and async stores."""

    def __init__(self, *, ttl_seconds: int, prefix: str, partner_scope: str = "") -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.ttl = ttl_seconds
        self.keys = Keys(prefix, partner_scope)

    def _record_args(self, batch_id: str, records: Sequence[RowRecord]) -> tuple[
        list[str], list[str | int]
    ]:
        keys = [self.keys.rows(batch_id), self.keys.counts(batch_id), self.keys.meta(batch_id)]
        args: list[str | int] = [self.ttl, utc_now()]
        for rec in records:
            args += [rec.row_number, rec.to_json(), rec.outcome.value]
        return keys, args

    @staticmethod
    def _records(items: Iterable[RowRecord | RowResult]) -> list[RowRecord]:
        return [i if isinstance(i, RowRecord) else RowRecord.from_result(i) for i in items]

    def _finish_args(
        self, id_type: str, id_number: str, owner: str, ledger: LedgerEntry | None
    ) -> tuple[list[str], list[str | int]]:
        keys = [
            self.keys.claim(id_type, id_number),
            self.keys.create_sent(id_type, id_number),
            self.keys.ledger(id_type, id_number),
        ]
        return keys, [owner, ledger.to_json() if ledger else "", self.ttl]


class BatchStore(_Base):
    """Synchronous access to all pipeline state in Redis."""

    def __init__(
        self, client: redis.Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS,
        prefix: str = "onboard", partner_scope: str = "",
    ) -> None:
        super().__init__(ttl_seconds=ttl_seconds, prefix=prefix, partner_scope=partner_scope)
        self.r = client
        self._record = client.register_script(_RECORD_LUA)
        self._set_total = client.register_script(_SET_TOTAL_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._finish = client.register_script(_FINISH_LUA)

    # -- batches -------------------------------------------------------------------------
    def create_batch(self, meta: BatchMeta) -> None:
        """Store a new batch's meta and list it among the recent batches."""
        if not meta.created_at:
            meta.created_at = utc_now()
        # Empty fields are left out so that HSETNX can stamp finished_at later.
        mapping: dict[FieldT, EncodableT] = {
            k: v for k, v in asdict(meta).items() if k != "batch_id" and v != ""
        }
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.meta(meta.batch_id), mapping=mapping)
        pipe.expire(self.keys.meta(meta.batch_id), self.ttl)
        pipe.zadd(self.keys.batches(), {meta.batch_id: time.time()})
        pipe.zremrangebyrank(self.keys.batches(), 0, -RECENT_BATCHES_KEPT - 1)
        pipe.expire(self.keys.batches(), self.ttl)
        pipe.execute()

    def update_meta(self, batch_id: str, **values: str | int) -> None:
        """Set some meta fields (e.g. ``started_at``); ``total_rows`` has its own method."""
        if "total_rows" in values:
            raise ValueError("use set_total() for total_rows")
        mapping: dict[FieldT, EncodableT] = {k: v for k, v in values.items()}
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.meta(batch_id), mapping=mapping)
        pipe.expire(self.keys.meta(batch_id), self.ttl)
        pipe.execute()

    def get_meta(self, batch_id: str) -> BatchMeta | None:
        """The batch's meta, or None for an unknown (or expired) batch."""
        raw = cast(dict[bytes, bytes], self.r.hgetall(self.keys.meta(batch_id)))
        return BatchMeta.from_hash(batch_id, raw) if raw else None

    def set_total(self, batch_id: str, total_rows: int) -> None:
        """Record how many rows the input has, once it is fully read."""
        self._set_total(
            keys=[self.keys.meta(batch_id), self.keys.counts(batch_id)],
            args=[total_rows, utc_now(), self.ttl],
        )

    def set_enqueued(self, batch_id: str, rows_enqueued: int) -> None:
        """Advance the enqueue cursor: rows up to this count are on the queue."""
        self.update_meta(batch_id, rows_enqueued=rows_enqueued)

    def enqueued(self, batch_id: str) -> int:
        """The enqueue cursor; where a resumed submit starts again."""
        raw = self.r.hget(self.keys.meta(batch_id), "rows_enqueued")
        return int(cast(bytes, raw)) if raw else 0

    def recent_batches(self, limit: int = 20) -> list[str]:
        """Batch ids, newest first."""
        ids = cast(list[bytes], self.r.zrevrange(self.keys.batches(), 0, limit - 1))
        return [i.decode() for i in ids]

    def batch_state(self, batch_id: str) -> BatchState | None:
        """The batch's meta and counters, or None for an unknown (or expired) batch."""
        raw = cast(dict[bytes, bytes], self.r.hgetall(self.keys.meta(batch_id)))
        if not raw:
            return None
        fields_ = {k.decode(): v.decode() for k, v in raw.items()}
        return BatchState(
            batch_id, BatchMeta.from_hash(batch_id, raw), self.counts(batch_id),
            self.done_count(batch_id), enqueue_done=fields_.get("enqueue_done") == "1",
            input=fields_,
        )

    def meta_fields(self, batch_id: str, *names: str) -> list[str]:
        """Some meta fields of a batch, "" for each one that is not set."""
        raw = cast(list[bytes | None], self.r.hmget(self.keys.meta(batch_id), list(names)))
        return [v.decode() if v else "" for v in raw]

    def recent_meta(
        self, *names: str, limit: int = RECENT_BATCHES_KEPT
    ) -> dict[str, dict[str, str]]:
        """Batch id → the named meta fields ("" when unset) of the recent batches, newest
        first, in one round trip."""
        ids = self.recent_batches(limit)
        pipe = self.r.pipeline(transaction=False)
        for batch_id in ids:
            pipe.hmget(self.keys.meta(batch_id), list(names))
        return {
            batch_id: {n: v.decode() if v else "" for n, v in zip(names, values, strict=True)}
            for batch_id, values in zip(ids, pipe.execute(), strict=True)
        }

    def recorded_rows(self, batch_id: str) -> set[int]:
        """Row numbers of the batch that already have an outcome."""
        return {int(k) for k in cast(list[bytes], self.r.hkeys(self.keys.rows(batch_id)))}

    # -- rerun selections and follow-up statuses -----------------------------------------
    def selection(self, batch_id: str) -> dict[int, int] | None:
        """A rerun batch's selection (input row → row number); None for an ordinary batch."""
        raw = cast(dict[bytes, bytes], self.r.hgetall(self.keys.selection(batch_id)))
        return {int(k): int(v) for k, v in raw.items()} if raw else None

    def has_selection(self, batch_id: str) -> bool:
        """The batch is a rerun that holds only some rows of its input."""
        return bool(self.r.exists(self.keys.selection(batch_id)))

    def selected(self, batch_id: str, lines: Sequence[int]) -> list[int | None]:
        """Per input row, its row number in the rerun batch, or None when not selected."""
        if not lines:
            return []
        raw = cast(list[bytes | None], self.r.hmget(self.keys.selection(batch_id), list(lines)))
        return [None if v is None else int(v) for v in raw]

    def save_selection(self, batch_id: str, select: Mapping[int, int]) -> None:
        """Keep a rerun batch's selection next to its other state (same TTL)."""
        key = self.keys.selection(batch_id)
        items = list(select.items())
        pipe = self.r.pipeline(transaction=False)
        for start in range(0, len(items), _SELECTION_WRITE):
            pipe.hset(key, mapping=dict(items[start:start + _SELECTION_WRITE]))
        pipe.expire(key, self.ttl)
        pipe.execute()

    def statuses(self, batch_id: str) -> dict[int, CustomerStatus]:
        """Every customer status a follow-up kept for the batch, by row number."""
        raw = cast(dict[bytes, bytes], self.r.hgetall(self.keys.statuses(batch_id)))
        return {int(n): CustomerStatus.from_json(v) for n, v in raw.items()}

    def statuses_of(self, batch_id: str, numbers: Sequence[int]) -> list[CustomerStatus | None]:
        """The kept status of each row (None where the batch has none)."""
        if not numbers:
            return []
        raw = cast(list[bytes | None], self.r.hmget(self.keys.statuses(batch_id), list(numbers)))
        return [None if v is None else CustomerStatus.from_json(v) for v in raw]

    def save_statuses(self, batch_id: str, rows: Mapping[int, CustomerStatus]) -> None:
        """Keep follow-up answers under the batch and mark it followed up."""
        key = self.keys.statuses(batch_id)
        pipe = self.r.pipeline(transaction=True)
        if rows:
            pipe.hset(key, mapping={n: s.to_json() for n, s in rows.items()})
            pipe.expire(key, self.ttl)
        pipe.hset(self.keys.meta(batch_id), "followed_up", utc_now())
        pipe.execute()

    # -- the broker's queue, as kombu's Redis transport keeps it -------------------------
    def queue_idle(self, queue: str) -> bool:
        """No message of ``queue`` waits in Redis and none is delivered but unacknowledged."""
        lists = [queue, *(f"{queue}{_PRIORITY_SEP}{p}" for p in _PRIORITY_STEPS)]
        pipe = self.r.pipeline(transaction=False)
        for name in lists:
            pipe.llen(name)
        if any(cast(list[int], pipe.execute())):
            return False
        # Each value is JSON [message, exchange, routing key]; our messages route by queue.
        for _, value in self.r.hscan_iter(UNACKED_KEY, count=200):
            try:
                routing_key = json.loads(value)[2]
            except (ValueError, IndexError, TypeError):
                continue
            if routing_key == queue:
                return False
        return True

    def publish_counted(
        self, app: Any, producer: Any, task: str, args: list[Any], *, batch_id: str,
        sent: int | None,
    ) -> None:
        """Send one task message; with ``sent``, set the batch's enqueue cursor to it.

        The cursor rides in the same pipeline write as the message (kombu's Redis publish
        batch), so a killed submit cannot have sent a message it does not count.
        """
        pipe = None
        with producer.batch(max_size=64) as batch:
            app.send_task(task, args=args, producer=producer)
            pipe = getattr(getattr(batch.state, "session", None), "pipeline", None)
            if pipe is not None and sent is not None:
                pipe.hset(self.keys.meta(batch_id), "messages_enqueued", sent)
        if pipe is None and sent is not None:
            self.update_meta(batch_id, messages_enqueued=sent)

    def close(self) -> None:
        """Close the Redis connection pool."""
        self.r.close()

    # -- row outcomes and counters -------------------------------------------------------
    def record_outcomes(
        self, batch_id: str, results: Iterable[RowRecord | RowResult]
    ) -> list[bool]:
        """Record final outcomes in one round trip; per row, True when newly recorded.

        A row that already has an outcome keeps it and its counter does not move.
        """
        records = self._records(results)
        if not records:
            return []
        keys, args = self._record_args(batch_id, records)
        _, flags = self._record(keys=keys, args=args)
        return [bool(f) for f in flags]

    def record_outcome(self, batch_id: str, result: RowRecord | RowResult) -> bool:
        """Record one row's final outcome; True when it was new."""
        return self.record_outcomes(batch_id, [result])[0]

    def get_rows(self, batch_id: str, row_numbers: Sequence[int]) -> list[RowRecord | None]:
        """Records for these rows in the same order (None where no outcome yet)."""
        if not row_numbers:
            return []
        raw = cast(list[bytes | None], self.r.hmget(self.keys.rows(batch_id), list(row_numbers)))
        return [
            RowRecord.from_json(n, v) if v is not None else None
            for n, v in zip(row_numbers, raw, strict=True)
        ]

    def iter_rows(self, batch_id: str) -> Iterator[RowRecord]:
        """Every recorded row, in no particular order."""
        for field, value in self.r.hscan_iter(self.keys.rows(batch_id), count=1000):
            yield RowRecord.from_json(int(field), value)

    def counts(self, batch_id: str) -> dict[Outcome, int]:
        """Rows recorded per outcome (every outcome present, zeros included)."""
        raw = cast(dict[bytes, bytes], self.r.hgetall(self.keys.counts(batch_id)))
        decoded = {k.decode(): int(v) for k, v in raw.items()}
        return {o: decoded.get(o.value, 0) for o in Outcome}

    def done_count(self, batch_id: str) -> int:
        """Rows that have a final outcome."""
        raw = self.r.hget(self.keys.counts(batch_id), "done")
        return int(cast(bytes, raw)) if raw else 0

    def is_complete(self, batch_id: str) -> bool:
        """True once every row of a fully read input has an outcome."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.keys.meta(batch_id), "total_rows")
        pipe.hget(self.keys.counts(batch_id), "done")
        total, done = pipe.execute()
        return bool(total) and int(total) > 0 and int(done or 0) >= int(total)

    # -- deliveries and calls ------------------------------------------------------------
    def count_delivery(self, batch_id: str, chunk_id: str) -> int:
        """Count one more delivery of a chunk; the count includes this one."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hincrby(self.keys.deliveries(batch_id), chunk_id, 1)
        pipe.expire(self.keys.deliveries(batch_id), self.ttl)
        return int(pipe.execute()[0])

    def count_calls(self, batch_id: str, kind: str, n: int = 1) -> None:
        """Count partner calls of a kind (lookup/onboard/status/token) for a batch and overall."""
        pipe = self.r.pipeline(transaction=False)
        _queue_calls(pipe, self.keys, self.ttl, batch_id, kind, n)
        pipe.execute()

    def calls(self, batch_id: str | None = None) -> dict[str, int]:
        """Partner calls by kind for a batch (or for all batches when None)."""
        key = self.keys.calls(batch_id) if batch_id else self.keys.all_calls()
        raw = cast(dict[bytes, bytes], self.r.hgetall(key))
        decoded = {k.decode(): int(v) for k, v in raw.items()}
        return {kind: decoded.get(kind, 0) for kind in CALL_KINDS} | decoded

    # -- ledger, claims, in-doubt marker -------------------------------------------------
    def ledger_get(self, id_type: str, id_number: str) -> LedgerEntry | None:
        """The customer's ledger entry, if an earlier row got it onto the platform."""
        raw = self.r.get(self.keys.ledger(id_type, id_number))
        return LedgerEntry.from_json(cast(bytes, raw)) if raw else None

    def ledger_put(self, id_type: str, id_number: str, entry: LedgerEntry) -> None:
        """Remember a done customer for every later batch."""
        self.r.set(self.keys.ledger(id_type, id_number), entry.to_json(), ex=self.ttl)

    def claim(self, id_type: str, id_number: str, owner: str, ttl_seconds: int) -> bool:
        """Take the create claim; False when another owner holds it."""
        key = self.keys.claim(id_type, id_number)
        return bool(self.r.set(key, owner, nx=True, ex=ttl_seconds))

    def claim_owner(self, id_type: str, id_number: str) -> str | None:
        """Who holds the create claim now, if anyone."""
        raw = self.r.get(self.keys.claim(id_type, id_number))
        return cast(bytes, raw).decode() if raw else None

    def release_claim(self, id_type: str, id_number: str, owner: str) -> bool:
        """Release the claim if (and only if) we still hold it."""
        return bool(self._release(keys=[self.keys.claim(id_type, id_number)], args=[owner]))

    def mark_create_sent(self, id_type: str, id_number: str, batch_id: str) -> None:
        """Note that a create is about to go out: from now on its fate is in doubt."""
        self.r.set(self.keys.create_sent(id_type, id_number), batch_id, ex=self.ttl)

    def create_sent(self, id_type: str, id_number: str) -> bool:
        """True when a create for this customer went out and its answer is unknown."""
        return bool(self.r.exists(self.keys.create_sent(id_type, id_number)))

    def finish_customer(
        self, id_type: str, id_number: str, owner: str, ledger: LedgerEntry | None
    ) -> None:
        """After a final answer: write the ledger (if done), drop "create sent", release."""
        keys, args = self._finish_args(id_type, id_number, owner, ledger)
        self._finish(keys=keys, args=args)


def _queue_calls(
    pipe: Any, keys: Keys, ttl: int, batch_id: str, kind: str, n: int
) -> None:
    pipe.hincrby(keys.calls(batch_id), kind, n)
    pipe.expire(keys.calls(batch_id), ttl)
    pipe.hincrby(keys.all_calls(), kind, n)
    pipe.expire(keys.all_calls(), ttl)


_Pending = tuple[AsyncScript, Sequence[str], Sequence[EncodableT], "asyncio.Future[Any]"]


class ScriptBatcher:
    """Script calls of one event loop sent as pipelines: one round trip for all the calls
    made while the previous one was under way (or in the same loop turn).

    Each call still gets its own answer or its own error; a lost connection fails every call
    of that pipeline, as it would have failed them one by one. Use it from one event loop;
    :meth:`of` gives every user of one client (the store, the rate limiter) the same batcher,
    so their calls share round trips too.
    """

    @classmethod
    def of(cls, client: redis.asyncio.Redis) -> ScriptBatcher:
        """The batcher of ``client`` (made on first use, gone with the client)."""
        batcher = _BATCHERS.get(client)
        if batcher is None:
            batcher = _BATCHERS[client] = cls(client)
        return batcher

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._r = client
        self._pending: list[_Pending] = []
        self._sender: asyncio.Task[None] | None = None
        self.round_trips = 0

    async def call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[EncodableT]
    ) -> Any:
        """Run ``script`` with ``keys`` and ``args`` in the next pipeline; its answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
        if self._sender is None:
            self._sender = loop.create_task(self._send_all())
        return await future

    async def _send_all(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._send(batch)
        except BaseException as exc:
            # Cancelled (loop shutting down): nobody may wait forever on a lost answer.
            for *_, future in self._pending:
                if not future.done():
                    future.set_exception(exc)
            self._pending = []
            raise
        finally:
            self._sender = None

    async def _send(self, batch: list[_Pending]) -> None:
        self.round_trips += 1
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                answers = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, Exception):
                return
            raise
        for (script, keys, args, future), answer in zip(batch, answers, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(answer, NoScriptError):
                # First use on this server (or after SCRIPT FLUSH): the script loads itself.
                try:
                    future.set_result(await script(keys=keys, args=args))
                except Exception as exc:
                    future.set_exception(exc)
            elif isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)


_BATCHERS: weakref.WeakKeyDictionary[redis.asyncio.Redis, ScriptBatcher] = (
    weakref.WeakKeyDictionary()
)


class AsyncBatchStore(_Base):
    """The per-customer hot path on an event loop (``redis.asyncio``): ledger, claims,
    "create sent", outcomes, call counters. Same keys and scripts as :class:`BatchStore`."""

    def __init__(
        self, client: redis.asyncio.Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS,
        prefix: str = "onboard", partner_scope: str = "",
    ) -> None:
        super().__init__(ttl_seconds=ttl_seconds, prefix=prefix, partner_scope=partner_scope)
        self.r = client
        self._record = client.register_script(_RECORD_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._finish = client.register_script(_FINISH_LUA)
        self._begin_create = client.register_script(_BEGIN_CREATE_LUA)
        self._claim_create = client.register_script(_CLAIM_CREATE_LUA)
        self._hold_claim = client.register_script(_HOLD_CLAIM_LUA)
        self._finish_row = client.register_script(_FINISH_ROW_LUA)
        self.batcher = ScriptBatcher.of(client)

    async def finish_row(
        self,
        batch_id: str,
        result: RowResult,
        *,
        customer: tuple[str, str] | None = None,
        owner: str = "",
        ledger: LedgerEntry | None = None,
        calls: Mapping[str, int] | None = None,
        record: bool = True,
    ) -> bool:
        """The end of one row in one round trip; True when its outcome was newly recorded.

        With ``customer`` (id_type, id_number) and ``owner``: write ``ledger`` (if any), drop
        "create sent" and release the claim as :meth:`finish_customer` does. ``calls`` are
        counted; the outcome is recorded first-wins unless ``record`` is False.
        """
        rec = RowRecord.from_result(result)
        id_type, id_number = customer or ("", "")
        keys = [
            self.keys.rows(batch_id), self.keys.counts(batch_id), self.keys.meta(batch_id),
            self.keys.calls(batch_id), self.keys.all_calls(),
            self.keys.claim(id_type, id_number), self.keys.create_sent(id_type, id_number),
            self.keys.ledger(id_type, id_number),
        ]
        args: list[str | int] = [
            self.ttl, utc_now(), rec.row_number, rec.to_json() if record else "",
            rec.outcome.value, owner if customer else "",
            ledger.to_json() if ledger and customer else "",
        ]
        for kind, n in (calls or {}).items():
            if n:
                args += [kind, n]
        return bool(await self.batcher.call(self._finish_row, keys, args))

    async def precheck_many(
        self, batch_id: str, rows: Sequence[tuple[int, str, str]]
    ) -> list[tuple[RowRecord | None, LedgerEntry | None]]:
        """:meth:`precheck` for (row_number, id_type, id_number) triples in one round trip."""
        if not rows:
            return []
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.rows(batch_id), [str(n) for n, _, _ in rows])
            pipe.mget([self.keys.ledger(t, i) for _, t, i in rows])
            recorded, ledgers = await pipe.execute()
        return [
            (
                RowRecord.from_json(n, rec) if rec else None,
                LedgerEntry.from_json(led) if led else None,
            )
            for (n, _, _), rec, led in zip(rows, recorded, ledgers, strict=True)
        ]

    async def precheck(
        self, batch_id: str, row_number: int, id_type: str, id_number: str
    ) -> tuple[RowRecord | None, LedgerEntry | None]:
        """In one round trip: the row's recorded outcome (a redelivery) and the ledger entry."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.rows(batch_id), str(row_number))
            pipe.get(self.keys.ledger(id_type, id_number))
            row, ledger = await pipe.execute()
        return (
            RowRecord.from_json(row_number, row) if row else None,
            LedgerEntry.from_json(ledger) if ledger else None,
        )

    async def recorded(self, batch_id: str, row_numbers: Sequence[int]) -> set[int]:
        """Which of these rows already have an outcome (skip them on a redelivered chunk)."""
        if not row_numbers:
            return set()
        raw = await self.r.hmget(self.keys.rows(batch_id), [str(n) for n in row_numbers])
        return {n for n, v in zip(row_numbers, raw, strict=True) if v is not None}

    async def note_status(
        self, batch_id: str, row_number: int, ecrn: str, customer_status: str, aml: str
    ) -> None:
        """Keep a customer status the partner left non-final, for ``onboard follow-up``."""
        value = json.dumps(
            {"ecrn": ecrn, "customer_status": customer_status, "aml_scan_status": aml},
            separators=(",", ":"),
        )
        key = self.keys.statuses(batch_id)
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hset(key, str(row_number), value)
            pipe.expire(key, self.ttl)
            await pipe.execute()

    async def begin_create(
        self, id_type: str, id_number: str, owner: str, batch_id: str, claim_ttl: int
    ) -> bool:
        """Take the create claim and set "create sent" together; False if someone holds it."""
        keys = [self.keys.claim(id_type, id_number), self.keys.create_sent(id_type, id_number)]
        args: list[str | int] = [owner, claim_ttl, batch_id, self.ttl]
        return bool(await self.batcher.call(self._begin_create, keys, args))

    async def claim_create(
        self, id_type: str, id_number: str, owner: str, attempt: int, acknowledged: str,
        claim_ttl: int,
    ) -> tuple[int, str]:
        """The create claim, fenced (see ``_CLAIM_CREATE_LUA``): ``(1, "")`` claimed,
        ``(0, "")`` held by someone, ``(3, ledger json)`` finished meanwhile, ``(2, marker)``
        look up again and pass ``marker`` as ``acknowledged`` next time."""
        keys = [
            self.keys.claim(id_type, id_number), self.keys.create_sent(id_type, id_number),
            self.keys.ledger(id_type, id_number),
        ]
        args: list[str | int] = [
            owner, f"{owner}/{attempt}", acknowledged, claim_ttl, self.ttl,
        ]
        code, value = await self.batcher.call(self._claim_create, keys, args)
        return int(code), value.decode() if isinstance(value, bytes) else str(value)

    async def hold_claim(self, id_type: str, id_number: str, owner: str, ttl: int) -> bool:
        """Keep our claim ``ttl`` more seconds (False when it is no longer ours)."""
        keys = [self.keys.claim(id_type, id_number)]
        return bool(await self.batcher.call(self._hold_claim, keys, [owner, ttl]))

    async def claim_owner(self, id_type: str, id_number: str) -> str | None:
        """Who holds the create claim now, if anyone."""
        raw = await self.r.get(self.keys.claim(id_type, id_number))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def count_calls_many(self, batch_id: str, calls: Mapping[str, int]) -> None:
        """Count several kinds of partner calls in one round trip (zeros skipped)."""
        if not any(calls.values()):
            return
        async with self.r.pipeline(transaction=False) as pipe:
            for kind, n in calls.items():
                if n:
                    _queue_calls(pipe, self.keys, self.ttl, batch_id, kind, n)
            await pipe.execute()

    async def record_outcomes(
        self, batch_id: str, results: Iterable[RowRecord | RowResult]
    ) -> list[bool]:
        """Record final outcomes in one round trip; per row, True when newly recorded."""
        records = self._records(results)
        if not records:
            return []
        keys, args = self._record_args(batch_id, records)
        _, flags = await self._record(keys=keys, args=args)
        return [bool(f) for f in flags]

    async def record_outcome(self, batch_id: str, result: RowRecord | RowResult) -> bool:
        """Record one row's final outcome; True when it was new."""
        return (await self.record_outcomes(batch_id, [result]))[0]

    async def get_row(self, batch_id: str, row_number: int) -> RowRecord | None:
        """The row's recorded outcome, if any."""
        raw = await self.r.hget(self.keys.rows(batch_id), str(row_number))
        return RowRecord.from_json(row_number, raw) if raw else None

    async def count_delivery(self, batch_id: str, chunk_id: str) -> int:
        """Count one more delivery of a chunk; the count includes this one."""
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hincrby(self.keys.deliveries(batch_id), chunk_id, 1)
            pipe.expire(self.keys.deliveries(batch_id), self.ttl)
            result = await pipe.execute()
        return int(result[0])

    async def count_calls(self, batch_id: str, kind: str, n: int = 1) -> None:
        """Count partner calls of a kind for a batch and overall."""
        async with self.r.pipeline(transaction=False) as pipe:
            _queue_calls(pipe, self.keys, self.ttl, batch_id, kind, n)
            await pipe.execute()

    async def ledger_get(self, id_type: str, id_number: str) -> LedgerEntry | None:
        """The customer's ledger entry, if an earlier row got it onto the platform."""
        raw = await self.r.get(self.keys.ledger(id_type, id_number))
        return LedgerEntry.from_json(raw) if raw else None

    async def ledger_get_many(
        self, customers: Sequence[tuple[str, str]]
    ) -> list[LedgerEntry | None]:
        """Ledger entries for (id_type, id_number) pairs in one round trip."""
        if not customers:
            return []
        raw = await self.r.mget([self.keys.ledger(t, n) for t, n in customers])
        return [LedgerEntry.from_json(v) if v else None for v in raw]

    async def ledger_put(self, id_type: str, id_number: str, entry: LedgerEntry) -> None:
        """Remember a done customer for every later batch."""
        await self.r.set(self.keys.ledger(id_type, id_number), entry.to_json(), ex=self.ttl)

    async def claim(self, id_type: str, id_number: str, owner: str, ttl_seconds: int) -> bool:
        """Take the create claim; False when another owner holds it."""
        key = self.keys.claim(id_type, id_number)
        return bool(await self.r.set(key, owner, nx=True, ex=ttl_seconds))

    async def release_claim(self, id_type: str, id_number: str, owner: str) -> bool:
        """Release the claim if (and only if) we still hold it."""
        key = self.keys.claim(id_type, id_number)
        return bool(await self._release(keys=[key], args=[owner]))

    async def mark_create_sent(self, id_type: str, id_number: str, batch_id: str) -> None:
        """Note that a create is about to go out: from now on its fate is in doubt."""
        await self.r.set(self.keys.create_sent(id_type, id_number), batch_id, ex=self.ttl)

    async def create_sent(self, id_type: str, id_number: str) -> bool:
        """True when a create for this customer went out and its answer is unknown."""
        return bool(await self.r.exists(self.keys.create_sent(id_type, id_number)))

    async def finish_customer(
        self, id_type: str, id_number: str, owner: str, ledger: LedgerEntry | None
    ) -> None:
        """After a final answer: write the ledger (if done), drop "create sent", release."""
        keys, args = self._finish_args(id_type, id_number, owner, ledger)
        await self._finish(keys=keys, args=args)
