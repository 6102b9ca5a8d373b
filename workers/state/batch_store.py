"""The synchronous store: batches, rerun selections, follow-up statuses, outcomes, counters.

Submit, status, report, recover and follow-up run outside an event loop, so they get a plain
``redis`` client; the per-customer hot path has its own async store (``row_store``) over the
same keys and scripts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any, cast

import redis
from redis.typing import EncodableT, FieldT

from pipeline.core.followup import CustomerStatus
from pipeline.core.outcomes import Outcome, RowResult
from workers.state import broker
from workers.state.base import StoreBase
from workers.state.keys import CALL_KINDS, DEFAULT_TTL_SECONDS, RECENT_BATCHES_KEPT, utc_now
from workers.state.records import BatchMeta, BatchState, RowRecord
from workers.state.scripts import RECORD_LUA, SET_TOTAL_LUA

# Hash fields written per HSET when a rerun's selection is stored (bounded request size).
_SELECTION_WRITE = 10_000


class BatchStore(StoreBase):
    """Synchronous access to the batch state in Redis; a customer's keys (ledger, claim,
    "create sent") are written and read by the flow's async store only."""

    def __init__(
        self, client: redis.Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS,
        prefix: str = "onboard", partner_scope: str = "",
    ) -> None:
        super().__init__(ttl_seconds=ttl_seconds, prefix=prefix, partner_scope=partner_scope)
        self.r = client
        self._record = client.register_script(RECORD_LUA)
        self._set_total = client.register_script(SET_TOTAL_LUA)

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
        return broker.queue_idle(self.r, queue)

    def publish_counted(
        self, app: Any, producer: Any, task: str, args: list[Any], *, batch_id: str,
        sent: int | None,
    ) -> None:
        """Send one task message; with ``sent``, set the batch's enqueue cursor to it.

        The cursor rides in the same pipeline write as the message (kombu's Redis publish
        batch), so a killed submit cannot have sent a message it does not count.
        """
        counter = None if sent is None else (self.keys.meta(batch_id), "messages_enqueued", sent)
        rode = broker.publish_counted(app, producer, task, args, counter=counter)
        if not rode and sent is not None:
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
        self._queue_calls(pipe, batch_id, kind, n)
        pipe.execute()

    def calls(self, batch_id: str | None = None) -> dict[str, int]:
        """Partner calls by kind for a batch (or for all batches when None)."""
        key = self.keys.calls(batch_id) if batch_id else self.keys.all_calls()
        raw = cast(dict[bytes, bytes], self.r.hgetall(key))
        decoded = {k.decode(): int(v) for k, v in raw.items()}
        return {kind: decoded.get(kind, 0) for kind in CALL_KINDS} | decoded
