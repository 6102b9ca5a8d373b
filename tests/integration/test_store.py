"""The Redis store against a real Redis: first outcome wins, counters, ledger, claims, TTLs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar, cast

import pytest
import redis
import redis.asyncio
from support import claim_owner, create_sent, ledger_entry, poll_until

from pipeline.core.outcomes import Outcome, RowError, RowResult
from workers.state import AsyncBatchStore, BatchMeta, BatchStore, LedgerEntry, RowRecord

T = TypeVar("T")
TTL = 3600
EID = ("4", "784198090000005")
OTHER = ("4", "784198190000012")


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


def _run_async(redis_url: str, work: Callable[[AsyncBatchStore], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh event loop with an async store over the ``store`` fixture's
    keys (same prefix and TTL)."""

    async def main() -> T:
        aclient = redis.asyncio.Redis.from_url(redis_url)
        try:
            return await work(AsyncBatchStore(aclient, ttl_seconds=TTL, prefix="t"))
        finally:
            await aclient.aclose()

    return asyncio.run(main())


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
    assert store.meta_fields("b2", "rows_enqueued") == ["250"]
    unsent = store.get_meta("b1")
    assert unsent is not None and unsent.rows_enqueued == 0
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
    """An invalid row with two errors keeps both codes, fields and messages, joined with the
    reports' one separator (`` | ``)."""
    result = RowResult(
        row_number=7, outcome=Outcome.INVALID,
        errors=[RowError("required", "first_name", "missing"),
                RowError("bad_format", "email_id", "not an e-mail")],
    )
    store.record_outcome("b", result)
    (rec,) = store.get_rows("b", [7])
    assert rec is not None
    assert rec.error_code == "required | bad_format"
    assert rec.error_field == "first_name | email_id"
    assert rec.error_message == "missing | not an e-mail"


def test_ledger_is_shared_and_keys_hold_no_id_number(
    store: BatchStore, client: redis.Redis, redis_url: str
) -> None:
    """A ledger entry written by a row of one batch (``finish_row``) is what the precheck of
    any other batch finds; no key names the ID number (ledger, claim, "create sent")."""
    entry = LedgerEntry(Outcome.ONBOARDED, "1000000000000005", "b1")

    async def work(astore: AsyncBatchStore) -> list[LedgerEntry | None]:
        ((_, before),) = await astore.precheck_many("b1", [(2, *EID)])
        assert before is None
        # Another worker's create is in flight (claim and marker) when this row finishes.
        assert await astore.claim_create(*EID, "w2", 1, "", 60) == (1, "")
        await astore.finish_row(
            "b1", _result(2, Outcome.ONBOARDED, entry.ecrn), customer=EID, owner="w1",
            ledger=entry,
        )
        return [led for _, led in await astore.precheck_many("b2", [(5, *EID), (6, *OTHER)])]

    assert _run_async(redis_url, work) == [entry, None]
    assert ledger_entry(store, *EID) == entry
    assert claim_owner(store, *EID) == "w2" and create_sent(store, *EID)
    names = [k.decode() for k in client.keys("*")]
    customer = {store.keys.ledger(*EID), store.keys.claim(*EID), store.keys.create_sent(*EID)}
    assert customer <= set(names)
    assert names and not any(EID[1] in n for n in names)


def test_claim_is_exclusive_released_only_by_its_owner(
    store: BatchStore, redis_url: str
) -> None:
    """Only one owner holds a claim (``claim_create``); another owner cannot release it
    (``release_claim``); the owner can, and then the next owner claims (once it has looked
    up again after the first owner's attempt, which "create sent" still names)."""

    async def work(astore: AsyncBatchStore) -> None:
        assert await astore.claim_create(*EID, "w1", 1, "", 60) == (1, "")
        assert await astore.claim_create(*EID, "w2", 1, "", 60) == (0, "")
        assert not await astore.release_claim(*EID, "w2")
        assert await astore.claim_owner(*EID) == "w1"
        assert await astore.release_claim(*EID, "w1")
        assert await astore.claim_owner(*EID) is None
        assert await astore.claim_create(*EID, "w2", 1, "", 60) == (2, "w1/1")
        assert await astore.claim_create(*EID, "w2", 1, "w1/1", 60) == (1, "")

    _run_async(redis_url, work)
    assert claim_owner(store, *EID) == "w2"


def test_claim_of_a_dead_worker_expires(store: BatchStore, redis_url: str) -> None:
    """A claim nobody releases frees itself after its claim TTL; until then nobody else gets
    it, afterwards the next owner does (acknowledging the dead owner's attempt)."""

    async def dead_then_refused(astore: AsyncBatchStore) -> None:
        assert await astore.claim_create(*EID, "dead", 1, "", 1) == (1, "")
        assert await astore.claim_create(*EID, "w2", 1, "dead/1", 60) == (0, "")

    async def taken(astore: AsyncBatchStore) -> None:
        assert await astore.claim_create(*EID, "w2", 1, "dead/1", 60) == (1, "")

    _run_async(redis_url, dead_then_refused)
    poll_until(lambda: claim_owner(store, *EID) is None, 5, "the dead worker's claim to expire")
    _run_async(redis_url, taken)
    assert claim_owner(store, *EID) == "w2"


def test_finish_row_keeps_someone_elses_claim_and_marker(
    store: BatchStore, redis_url: str
) -> None:
    """Finishing a row as a non-holder leaves another worker's claim and in-flight marker
    alone (and writes no ledger entry when it has none)."""

    async def work(astore: AsyncBatchStore) -> None:
        assert await astore.claim_create(*EID, "w2", 1, "", 60) == (1, "")
        await astore.finish_row("b1", _result(2, Outcome.FAILED), customer=EID, owner="w1")

    _run_async(redis_url, work)
    assert claim_owner(store, *EID) == "w2"
    assert create_sent(store, *EID)
    assert ledger_entry(store, *EID) is None


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


def test_every_key_has_a_ttl(store: BatchStore, client: redis.Redis, redis_url: str) -> None:
    """After touching every kind of key, none of them lives forever."""
    store.create_batch(BatchMeta("b"))
    store.update_meta("b", started_at="x")
    store.set_total("b", 5)
    store.record_outcome("b", _result(1, Outcome.ONBOARDED))
    store.count_delivery("b", "c0")
    store.count_calls("b", "lookup")

    async def work(astore: AsyncBatchStore) -> None:
        # The ledger of one customer; the claim and "create sent" of another.
        await astore.finish_row(
            "b", _result(2, Outcome.ONBOARDED, "1"), customer=EID, owner="w",
            ledger=LedgerEntry(Outcome.ONBOARDED, "1", "b"),
        )
        assert await astore.claim_create(*OTHER, "w", 1, "", 30) == (1, "")

    _run_async(redis_url, work)
    keys = client.keys("t:*")
    assert len(keys) == 10
    for key in keys:
        assert 0 < client.ttl(key) <= TTL, key


def test_async_store_shares_keys_with_the_sync_store(
    store: BatchStore, redis_url: str
) -> None:
    """Rows, ledger, claims and calls written by the async store are what the sync one reads
    (and the async precheck reads back)."""
    entry = LedgerEntry(Outcome.ALREADY_EXISTS, "5", "b")

    async def scenario(
        astore: AsyncBatchStore,
    ) -> tuple[list[bool], list[LedgerEntry | None], tuple[int, str], tuple[int, str]]:
        flags = await astore.record_outcomes(
            "b", [_result(1, Outcome.ONBOARDED, "5"), _result(1, Outcome.FAILED)]
        )
        got = await astore.claim_create(*EID, "w1", 1, "", 60)
        again = await astore.claim_create(*EID, "w2", 1, "", 60)
        assert await astore.create_sent(*EID)
        await astore.count_calls("b", "onboard", 2)
        assert await astore.count_delivery("b", "c") == 1
        row, _ = await astore.precheck("b", 1, *EID)
        assert row is not None and row.ecrn == "5"
        await astore.finish_row(
            "b", _result(1, Outcome.ALREADY_EXISTS, "5"), customer=EID, owner="w1",
            ledger=entry, record=False,
        )
        many = [led for _, led in await astore.precheck_many("b", [(1, *EID), (2, *OTHER)])]
        return flags, many, got, again

    flags, many, got, again = _run_async(redis_url, scenario)
    assert flags == [True, False]
    assert many == [entry, None]
    assert got == (1, "") and again == (0, "")
    assert store.counts("b")[Outcome.ONBOARDED] == 1
    assert store.counts("b")[Outcome.ALREADY_EXISTS] == 0 and store.done_count("b") == 1
    assert store.calls("b")["onboard"] == 2
    assert claim_owner(store, *EID) is None and not create_sent(store, *EID)
    assert ledger_entry(store, *EID) == entry


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
    assert claim_owner(store, *EID) is None and not create_sent(store, *EID)
    assert ledger_entry(store, *EID) == LedgerEntry(Outcome.ONBOARDED, "77", "b")
    assert store.calls("b")["lookup"] == 4 and store.calls("b")["onboard"] == 1
    assert store.counts("b")[Outcome.ONBOARDED] == 1 and store.done_count("b") == 1
    (rec, led), (rec3, led3) = known
    assert rec is not None and rec.ecrn == "77"
    assert led == LedgerEntry(Outcome.ONBOARDED, "77", "b")
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

    client.set(store.keys.claim(*who["held"]), "w2", ex=60)
    set_marker("held", "w2/1")
    client.set(store.keys.claim(*who["mine"]), "w1", ex=60)
    set_marker("mine", "w1/1")
    client.set(store.keys.ledger(*who["done"]), entry.to_json(), ex=TTL)
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
            assert marker("fenced") == b"w2/1" and claim_owner(store, *who["fenced"]) is None
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
        assert claim_owner(store, *who[name]) == "w1"
        assert marker(name) == attempt
        assert 0 < client.ttl(store.keys.claim(*who[name])) <= 60
        assert 60 < client.ttl(store.keys.create_sent(*who[name])) <= TTL
    # Not claimed: claim, marker and ledger exactly as they were.
    assert (claim_owner(store, *who["held"]), marker("held")) == ("w2", b"w2/1")
    assert (claim_owner(store, *who["mine"]), marker("mine")) == ("w1", b"w1/1")
    assert (claim_owner(store, *who["done"]), marker("done")) == (None, None)
    assert ledger_entry(store, *who["done"]) == entry
    assert (claim_owner(store, *who["newer"]), marker("newer")) == (None, b"w3/1")
    assert (claim_owner(store, *who["prefix"]), marker("prefix")) == (None, b"w1/1")
