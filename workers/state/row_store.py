"""The async store: the per-customer hot path of the flow, on an event loop.

A worker processes many customers concurrently on one loop, so the calls it makes per row
(precheck, claim, finish) go through ``redis.asyncio`` and the script batcher; it writes the
same keys with the same scripts as the sync ``BatchStore``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

import redis.asyncio

from pipeline.core.outcomes import RowResult
from workers.state.base import StoreBase
from workers.state.batcher import ScriptBatcher
from workers.state.keys import DEFAULT_TTL_SECONDS, utc_now
from workers.state.records import LedgerEntry, RowRecord
from workers.state.scripts import (
    CLAIM_CREATE_LUA,
    FINISH_ROW_LUA,
    HOLD_CLAIM_LUA,
    RECORD_LUA,
    RELEASE_LUA,
)


class AsyncBatchStore(StoreBase):
    """The per-customer hot path on an event loop (``redis.asyncio``): ledger, claims,
    "create sent", outcomes, call counters. Same keys and scripts as :class:`BatchStore`."""

    def __init__(
        self, client: redis.asyncio.Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS,
        prefix: str = "onboard", partner_scope: str = "",
    ) -> None:
        super().__init__(ttl_seconds=ttl_seconds, prefix=prefix, partner_scope=partner_scope)
        self.r = client
        self._record = client.register_script(RECORD_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._claim_create = client.register_script(CLAIM_CREATE_LUA)
        self._hold_claim = client.register_script(HOLD_CLAIM_LUA)
        self._finish_row = client.register_script(FINISH_ROW_LUA)
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
        "create sent" and release the claim (see ``scripts._FINISH_CUSTOMER``). ``calls`` are
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

    async def claim_create(
        self, id_type: str, id_number: str, owner: str, attempt: int, acknowledged: str,
        claim_ttl: int,
    ) -> tuple[int, str]:
        """The create claim, fenced (see ``scripts.CLAIM_CREATE_LUA``): ``(1, "")`` claimed,
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
            self._queue_calls(pipe, batch_id, kind, n)
            await pipe.execute()

    async def release_claim(self, id_type: str, id_number: str, owner: str) -> bool:
        """Release the claim if (and only if) we still hold it."""
        key = self.keys.claim(id_type, id_number)
        return bool(await self._release(keys=[key], args=[owner]))

    async def create_sent(self, id_type: str, id_number: str) -> bool:
        """True when a create for this customer went out and its answer is unknown."""
        return bool(await self.r.exists(self.keys.create_sent(id_type, id_number)))
