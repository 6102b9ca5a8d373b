"""What the sync and async stores share: TTL, key names and script arguments.

The two stores talk to different clients (``redis`` and ``redis.asyncio``) but write the
same keys through the same scripts; building the keys and arguments in one base class keeps
the two from ever writing a different layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.core.outcomes import RowResult
from workers.state.keys import Keys, utc_now
from workers.state.records import RowRecord


class StoreBase:
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

    def _queue_calls(self, pipe: Any, batch_id: str, kind: str, n: int) -> None:
        """Queue on ``pipe`` the count of ``n`` partner calls of ``kind``, per batch and overall."""
        pipe.hincrby(self.keys.calls(batch_id), kind, n)
        pipe.expire(self.keys.calls(batch_id), self.ttl)
        pipe.hincrby(self.keys.all_calls(), kind, n)
        pipe.expire(self.keys.all_calls(), self.ttl)
