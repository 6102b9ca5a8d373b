"""The Redis store against a real Redis: first outcome wins, counters, ledger, claims, TTLs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import cast

import pytest
import redis
import redis.asyncio
from support import poll_until

from pipeline.core.outcomes import Outcome, RowError, RowResult
from workers.state import AsyncBatchStore, BatchMeta, BatchStore, LedgerEntry, RowRecord

TTL = 3600
EID = ("4", "784198090000005")


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A redis-py client on the flushed test database."""
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture()
def store(client: redis.Redis) -> BatchStore:
    """A store with a short TTL and a test prefix."""
    return BatchStore(client, ttl_seconds=TTL, prefix="t")


def _result(row: int, outcome: Outcome, ecrn: str = "", attempts: int = 1) -> RowResult:
    return RowResult(row_number=row, outcome=outcome, ecrn=ecrn, attempts=attempts)


def test_batch_meta_round_trips_and_recent_batches_are_newest_first(store: BatchStore) -> None:
    """Meta fields survive the round trip; the recent list shows the newest batch first."""
    store.create_batch(BatchMeta("b1", file_name="a.csv", sha256="ab", master_data_version="v1"))
    store.create_batch(BatchMeta("b2", file_name="b.csv", parent_batch_id="b1"))
    store.update_meta("b2", started_at="2026-01-01T00:00:00+00:00")
    store.set_enqueued("b2", 250)

    meta = store.get_meta("b2")
    assert meta is not None
    assert (meta.file_name, meta.parent_batch_id, meta.rows_enqueued) == ("b.csv", "b1", 250)
    assert meta.started_at.startswith("2026-01-01")
    assert meta.created_at
    assert store.enqueued("b2") == 250
    assert store.enqueued("b1") == 0
    assert store.get_meta("nope") is None
    assert store.recent_batches() == ["b2", "b1"]


def test_first_final_outcome_wins_and_counts_once(store: BatchStore) -> None:
    """A second outcome for a recorded row is refused and no counter moves for it."""
    store.create_batch(BatchMeta("b"))
    assert store.record_outcome("b", _result(2, Outcome.ONBOARDED, "1000000000000001"))
    assert not store.record_outcome("b", _result(2, Outcome.FAILED))
    flags = store.record_outcomes(
        "b", [_result(2, Outcome.REJECTED), _result(3, Outcome.ALREADY_EXISTS, "9")]
    )
    assert flags == [False, True]

    rows = store.get_rows("b", [2, 3, 4])
    assert rows[0] == RowRecord(2, Outcome.ONBOARDED, ecrn="1000000000000001", attempts=1)
    assert rows[1] is not None and rows[1].outcome is Outcome.ALREADY_EXISTS
    assert rows[2] is None
    counts = store.counts("b")
    assert counts[Outcome.ONBOARDED] == 1
    assert counts[Outcome.ALREADY_EXISTS] == 1
    assert counts[Outcome.FAILED] == counts[Outcome.REJECTED] == 0
    assert store.done_count("b") == 2


def test_concurrent_redeliveries_record_each_row_once(store: BatchStore) -> None:
    """Eight threads racing to record the same 500 rows leave exactly 500 outcomes."""
    store.create_batch(BatchMeta("b"))
    outcomes = list(Outcome)
    won: list[int] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        results = [_result(n, outcomes[(n + seed) % len(outcomes)]) for n in range(500)]
        flags = store.record_outcomes("b", results)
        with lock:
            won.append(sum(flags))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sum(won) == 500
    assert store.done_count("b") == 500
    assert sum(store.counts("b").values()) == 500
    assert len(list(store.iter_rows("b"))) == 500


def test_completion_comes_from_counters_and_stamps_finished_once(store: BatchStore) -> None:
    """Not complete before the total is known; finished_at is set when done reaches it."""
    store.create_batch(BatchMeta("b"))
    store.record_outcomes("b", [_result(n, Outcome.INVALID) for n in (2, 3)])
    assert not store.is_complete("b")
    store.set_total("b", 3)
    assert not store.is_complete("b")
    meta = store.get_meta("b")
    assert meta is not None and meta.finished_at == ""

    store.record_outcome("b", _result(4, Outcome.ONBOARDED))
    assert store.is_complete("b")
    finished = store.get_meta("b")
    assert finished is not None and finished.finished_at and finished.total_rows == 3


def test_total_set_after_all_rows_done_completes_the_batch(store: BatchStore) -> None:
    """A batch whose rows all finished before the total was known completes on set_total."""
    store.create_batch(BatchMeta("b"))
    store.record_outcomes("b", [_result(n, Outcome.INVALID) for n in (2, 3)])
    store.set_total("b", 2)
    meta = store.get_meta("b")
    assert store.is_complete("b") and meta is not None and meta.finished_at


def test_several_errors_are_joined_in_the_record(store: BatchStore) -> None:
    """An invalid row with two errors keeps both codes, fields and messages."""
    result = RowResult(
        row_number=7, outcome=Outcome.INVALID,
        errors=[RowError("required", "first_name", "missing"),
                RowError("bad_format", "email_id", "not an e-mail")],
    )
    store.record_outcome("b", result)
    (rec,) = store.get_rows("b", [7])
    assert rec is not None
    assert rec.error_code == "required; bad_format"
    assert rec.error_field == "first_name; email_id"
    assert rec.error_message == "missing; not an e-mail"


def test_ledger_is_shared_and_keys_hold_no_id_number(
    store: BatchStore, client: redis.Redis
) -> None:
    """A ledger entry written for one batch is read back for any other; no key names the ID."""
    assert store.ledger_get(*EID) is None
    store.ledger_put(*EID, LedgerEntry(Outcome.ONBOARDED, "1000000000000005", "b1"))
    assert store.ledger_get(*EID) == LedgerEntry(Outcome.ONBOARDED, "1000000000000005", "b1")
    assert store.ledger_get("4", "784198190000012") is None
    store.claim(*EID, "w1", 60)
    store.mark_create_sent(*EID, "b1")
    names = [k.decode() for k in client.keys("*")]
    assert names and not any(EID[1] in n for n in names)


def test_claim_is_exclusive_released_only_by_its_owner(store: BatchStore) -> None:
    """Only one owner holds a claim; another owner cannot release it; the owner can."""
    assert store.claim(*EID, "w1", 60)
    assert not store.claim(*EID, "w2", 60)
    assert not store.release_claim(*EID, "w2")
    assert store.claim_owner(*EID) == "w1"
    assert store.release_claim(*EID, "w1")
    assert store.claim(*EID, "w2", 60)


def test_claim_of_a_dead_worker_expires(store: BatchStore) -> None:
    """A claim nobody releases frees itself after its TTL."""
    assert store.claim(*EID, "dead", 1)
    poll_until(lambda: store.claim(*EID, "w2", 60), 5, "the dead worker's claim to expire")
    assert store.claim_owner(*EID) == "w2"


def test_finish_customer_writes_ledger_clears_marker_and_releases(store: BatchStore) -> None:
    """After a final answer the ledger holds the customer, the marker and claim are gone."""
    store.claim(*EID, "w1", 60)
    store.mark_create_sent(*EID, "b1")
    assert store.create_sent(*EID)
    store.finish_customer(*EID, "w1", LedgerEntry(Outcome.ONBOARDED, "123", "b1"))
    assert not store.create_sent(*EID)
    assert store.claim_owner(*EID) is None
    assert store.ledger_get(*EID) == LedgerEntry(Outcome.ONBOARDED, "123", "b1")


def test_finish_customer_keeps_someone_elses_claim_and_marker(store: BatchStore) -> None:
    """Finishing as a non-holder leaves another worker's claim and in-flight marker alone."""
    store.claim(*EID, "w2", 60)
    store.mark_create_sent(*EID, "b2")
    store.finish_customer(*EID, "w1", None)
    assert store.claim_owner(*EID) == "w2"
    assert store.create_sent(*EID)
    assert store.ledger_get(*EID) is None


def test_delivery_and_call_counters(store: BatchStore) -> None:
    """Deliveries count per chunk; calls count per batch and across batches."""
    assert store.count_delivery("b", "c0") == 1
    assert store.count_delivery("b", "c0") == 2
    assert store.count_delivery("b", "c1") == 1
    store.count_calls("b", "lookup", 3)
    store.count_calls("b", "onboard")
    store.count_calls("other", "lookup")
    assert store.calls("b") == {"lookup": 3, "onboard": 1, "status": 0, "token": 0}
    assert store.calls()["lookup"] == 4


def test_every_key_has_a_ttl(store: BatchStore, client: redis.Redis) -> None:
    """After touching every kind of key, none of them lives forever."""
    store.create_batch(BatchMeta("b"))
    store.update_meta("b", started_at="x")
    store.set_total("b", 5)
    store.record_outcome("b", _result(1, Outcome.ONBOARDED))
    store.count_delivery("b", "c0")
    store.count_calls("b", "lookup")
    store.ledger_put(*EID, LedgerEntry(Outcome.ONBOARDED, "1", "b"))
    store.claim("4", "784198190000012", "w", 30)
    store.mark_create_sent(*EID, "b")
    keys = client.keys("t:*")
    assert len(keys) == 10
    for key in keys:
        assert 0 < client.ttl(key) <= TTL, key


def test_async_store_shares_keys_with_the_sync_store(
    store: BatchStore, redis_url: str
) -> None:
    """Rows, ledger, claims and calls written by the async store are what the sync one reads."""

    async def scenario() -> tuple[list[bool], list[LedgerEntry | None], bool, bool]:
        aclient = redis.asyncio.Redis.from_url(redis_url)
        astore = AsyncBatchStore(aclient, ttl_seconds=TTL, prefix="t")
        try:
            flags = await astore.record_outcomes(
                "b", [_result(1, Outcome.ONBOARDED, "5"), _result(1, Outcome.FAILED)]
            )
            await astore.ledger_put(*EID, LedgerEntry(Outcome.ALREADY_EXISTS, "5", "b"))
            many = await astore.ledger_get_many([EID, ("4", "784198190000012")])
            got = await astore.claim(*EID, "w1", 60)
            again = await astore.claim(*EID, "w2", 60)
            await astore.mark_create_sent(*EID, "b")
            assert await astore.create_sent(*EID)
            await astore.count_calls("b", "onboard", 2)
            assert await astore.count_delivery("b", "c") == 1
            row = await astore.get_row("b", 1)
            assert row is not None and row.ecrn == "5"
            await astore.finish_customer(*EID, "w1", None)
            return flags, many, got, again
        finally:
            await aclient.aclose()

    flags, many, got, again = asyncio.run(scenario())
    assert flags == [True, False]
    assert many == [LedgerEntry(Outcome.ALREADY_EXISTS, "5", "b"), None]
    assert got and not again
    assert store.counts("b")[Outcome.ONBOARDED] == 1
    assert store.calls("b")["onboard"] == 2
    assert store.claim_owner(*EID) is None and not store.create_sent(*EID)


def test_finish_row_settles_customer_counts_calls_and_records_once(
    store: BatchStore, redis_url: str
) -> None:
    """One round trip ends a row: ledger, marker and claim settled, calls counted, first wins."""

    async def scenario() -> tuple[bool, bool, list[tuple[RowRecord | None, LedgerEntry | None]]]:
        aclient = redis.asyncio.Redis.from_url(redis_url)
        astore = AsyncBatchStore(aclient, ttl_seconds=TTL, prefix="t")
        try:
            assert await astore.claim_create(*EID, "w1", 1, "", 60) == (1, "")
            done = RowResult(2, Outcome.ONBOARDED, "77", attempts=2)
            first = await astore.finish_row(
                "b", done, customer=EID, owner="w1",
                ledger=LedgerEntry(Outcome.ONBOARDED, "77", "b"),
                calls={"lookup": 1, "onboard": 1},
            )
            again = await astore.finish_row(
                "b", RowResult(2, Outcome.FAILED), calls={"lookup": 3}
            )
            known = await astore.precheck_many("b", [(2, *EID), (3, "4", "784198190000012")])
            return first, again, known
        finally:
            await aclient.aclose()

    first, again, known = asyncio.run(scenario())
    assert first and not again
    assert store.claim_owner(*EID) is None and not store.create_sent(*EID)
    assert store.ledger_get(*EID) == LedgerEntry(Outcome.ONBOARDED, "77", "b")
    assert store.calls("b")["lookup"] == 4 and store.calls("b")["onboard"] == 1
    assert store.counts("b")[Outcome.ONBOARDED] == 1 and store.done_count("b") == 1
    (rec, led), (rec3, led3) = known
    assert rec is not None and rec.ecrn == "77" and led is not None
    assert rec3 is None and led3 is None


def test_claim_create_is_fenced_and_sets_the_marker_with_the_claim(
    store: BatchStore, client: redis.Redis, redis_url: str
) -> None:
    """The fenced create claim, as the flow relies on it. It is taken only when no claim is
    held (not even by the caller), the customer is not in the ledger, and "create sent" is
    absent, the marker the caller acknowledged, or one of the caller's own attempts
    (``owner/n``, the owner matched by its full name); then the claim (claim TTL) and the
    marker ``owner/attempt`` (state TTL) are set together: ``(1, "")``. Otherwise nothing is
    written: ``(0, "")`` a claim is held, ``(3, ledger JSON)`` the customer was finished
    meanwhile, ``(2, marker)`` another owner's attempt must be looked up again first."""
    who = {name: ("4", f"78419809{n:07d}") for n, name in enumerate(
        ("free", "held", "mine", "done", "fenced", "newer", "own", "prefix"))}
    entry = LedgerEntry(Outcome.ONBOARDED, "77", "b")

    def marker(name: str) -> bytes | None:
        return cast(bytes | None, client.get(store.keys.create_sent(*who[name])))

    def set_marker(name: str, value: str) -> None:
        client.set(store.keys.create_sent(*who[name]), value)

    store.claim(*who["held"], "w2", 60)
    set_marker("held", "w2/1")
    store.claim(*who["mine"], "w1", 60)
    set_marker("mine", "w1/1")
    store.ledger_put(*who["done"], entry)
    set_marker("fenced", "w2/1")
    set_marker("newer", "w3/1")
    set_marker("own", "w1/1")
    set_marker("prefix", "w1/1")

    async def scenario() -> dict[str, tuple[int, str]]:
        aclient = redis.asyncio.Redis.from_url(redis_url)
        astore = AsyncBatchStore(aclient, ttl_seconds=TTL, prefix="t")
        try:
            answers = {
                name: await astore.claim_create(*who[name], "w1", 2, "", 60)
                for name in ("free", "held", "mine", "done", "fenced", "own")
            }
            answers["newer"] = await astore.claim_create(*who["newer"], "w1", 1, "w2/1", 60)
            answers["prefix"] = await astore.claim_create(*who["prefix"], "w", 1, "", 60)
            assert marker("fenced") == b"w2/1" and store.claim_owner(*who["fenced"]) is None
            answers["acknowledged"] = await astore.claim_create(
                *who["fenced"], "w1", 1, "w2/1", 60
            )
            return answers
        finally:
            await aclient.aclose()

    answers = asyncio.run(scenario())
    assert answers == {
        "free": (1, ""), "held": (0, ""), "mine": (0, ""), "done": (3, entry.to_json()),
        "fenced": (2, "w2/1"), "newer": (2, "w3/1"), "own": (1, ""), "prefix": (2, "w1/1"),
        "acknowledged": (1, ""),
    }
    # Claimed: claim and marker written together, each with its own TTL.
    for name, attempt in (("free", b"w1/2"), ("own", b"w1/2"), ("fenced", b"w1/1")):
        assert store.claim_owner(*who[name]) == "w1"
        assert marker(name) == attempt
        assert 0 < client.ttl(store.keys.claim(*who[name])) <= 60
        assert 60 < client.ttl(store.keys.create_sent(*who[name])) <= TTL
    # Not claimed: claim, marker and ledger exactly as they were.
    assert (store.claim_owner(*who["held"]), marker("held")) == ("w2", b"w2/1")
    assert (store.claim_owner(*who["mine"]), marker("mine")) == ("w1", b"w1/1")
    assert (store.claim_owner(*who["done"]), marker("done")) == (None, None)
    assert store.ledger_get(*who["done"]) == entry
    assert (store.claim_owner(*who["newer"]), marker("newer")) == (None, b"w3/1")
    assert (store.claim_owner(*who["prefix"]), marker("prefix")) == (None, b"w1/1")
