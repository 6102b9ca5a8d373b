"""No customer is created twice, even when the same rows are worked on twice at once.

The races behind "no customer created twice", provoked on purpose against the sandbox over
real HTTP and a real Redis (a keyspace of each test's own, see ``isolated_redis``):

- the same chunk delivered to two workers at once (a watcher restarted mid-enqueue used to
  send its whole file again), with lost create answers, one-off 502s and latency;
- a create whose answer timed out while the partner was still working on it: a lookup made
  then does not see the customer yet, so a second create must wait until the first can no
  longer land.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio
from keyspace import IsolatedRedis
from support import poll_until

from pipeline.core.outcomes import Outcome
from pipeline.core.settings import PartnerSettings, PipelineSettings, Settings
from sandbox.testing import SandboxHandle as Sandbox
from sandbox.testing import emirates_id, run_sandbox, sandbox_partner
from sandbox.testing import onboarding_body as body
from workers.flow import FlowPolicy, RowTask, process_row
from workers.partner.client import PartnerClient
from workers.partner.token import TokenBroker
from workers.ratelimit import AsyncRateLimiter
from workers.runtime import RuntimeHolder
from workers.state import AsyncBatchStore, BatchStore
from workers.tasks import chunk_message, handle_chunk

T = TypeVar("T")
DEADLINE = 60.0
QUIET: dict[str, Any] = {
    "fault_429": 0.0, "fault_502": 0.0, "fault_502_after_commit": 0.0, "fault_timeout": 0.0,
    "fault_45006": 0.0, "latency_ms": 0.0, "jitter_ms": 0.0, "slow_ms": 200.0,
}
# Scenario IDs whose create lands, lands with a lost answer, or fails once without landing.
CREATING = [
    "784199290000126",  # create_502_once
    "784199390000133",  # create_502_after_commit
    "784199490000140",  # slow
    "784199690000163",  # kyc_pending
    "784199790000170",  # aml_under_investigation
]


def partner_settings(sandbox: Sandbox, **changes: Any) -> PartnerSettings:
    """Partner settings for the sandbox with its default credentials."""
    return sandbox_partner(sandbox.base_url, **changes)


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[Sandbox]:
    """One sandbox server for the module."""
    with run_sandbox() as handle:
        yield handle


@pytest.fixture()
def sandbox(sandbox_server: Sandbox) -> Sandbox:
    """The module's sandbox, quiet (no faults, no latency), no customers, zeroed counters."""
    sandbox_server.configure(**QUIET)
    sandbox_server.reset()
    return sandbox_server


def run_flow(
    sandbox: Sandbox, where: IsolatedRedis, partner: PartnerSettings,
    work: Callable[[PartnerClient, AsyncBatchStore], Awaitable[T]],
) -> T:
    """Run ``work`` with a partner client and an async store on the test's keyspace."""
    sync = redis.Redis.from_url(where.url)
    broker = TokenBroker(sync, partner, key_prefix=f"{where.prefix}:token")

    async def main() -> T:
        aredis = redis.asyncio.Redis.from_url(where.url)
        store = AsyncBatchStore(aredis, ttl_seconds=600, prefix=where.prefix)
        try:
            async with PartnerClient(partner, broker) as client:
                return await work(client, store)
        finally:
            await aredis.aclose()

    try:
        return asyncio.run(main())
    finally:
        broker.close()
        sync.close()


def test_create_timed_out_but_still_running_at_the_partner_is_not_sent_again(
    sandbox: Sandbox, isolated_redis: IsolatedRedis
) -> None:
    """A create whose answer timed out while the partner still works on it is not followed
    by a second create: the retry's lookup sees nothing yet, and the claim holds it back
    until the first create has landed; the row ends onboarded with one create."""
    fresh = emirates_id(1)
    policy = FlowPolicy(
        max_attempts=5, backoff_base_seconds=0.2, backoff_max_seconds=0.2,
        claim_ttl_seconds=4, claim_poll_seconds=0.05,
    )

    async def work(client: PartnerClient, store: AsyncBatchStore) -> Any:
        # One partner call per second: the lookup goes out at once, the create a second
        # later, which leaves time to make the partner slow in between.
        limiter = AsyncRateLimiter(store.r, rate=1, prefix=isolated_redis.prefix)
        row = RowTask("b", 2, "4", fresh, body(fresh))
        running = asyncio.create_task(process_row(row, client, store, limiter, policy=policy))

        def looked_up() -> bool:
            return sum(sandbox.stats()["calls"]["lookup"].values()) >= 1

        # Polled in a thread: the event loop must go on running the row meanwhile.
        await asyncio.to_thread(poll_until, looked_up, DEADLINE, "the first lookup",
                                interval=0.01)
        # The create will take 2.5 s at the partner, far past the client's 0.5 s.
        await asyncio.to_thread(sandbox.configure, latency_ms=2500)

        def create_at_partner() -> bool:
            return int(sandbox.stats()["in_flight"]) >= 1

        await asyncio.to_thread(poll_until, create_at_partner, DEADLINE,
                                "the create to reach the partner", interval=0.01)
        # From now on the partner answers at once: the retry's lookup comes back before the
        # first create has landed, and says "not found".
        await asyncio.to_thread(sandbox.configure, latency_ms=0)
        return await running

    partner = partner_settings(sandbox, read_timeout=0.5)
    result = run_flow(sandbox, isolated_redis, partner, work)
    # The first create lands whenever the partner is done with it, maybe after the row.
    poll_until(
        lambda: sandbox.stats()["in_flight"] == 0, DEADLINE, "the partner to finish every call",
        interval=0.02,
    )
    after = sandbox.stats()
    assert after["duplicate_creates"] == 0
    assert after["creates"] == 1
    assert result.outcome is Outcome.ONBOARDED and result.ecrn
    # The lookup after the timeout ran while the create was still in flight: the race was on.
    assert sum(after["calls"]["lookup"].values()) >= 2


def test_same_chunk_delivered_to_two_workers_at_once_creates_each_customer_once(
    sandbox: Sandbox, isolated_redis: IsolatedRedis
) -> None:
    """One chunk handled by two worker runtimes at the same moment (what a re-sent message
    does): lost answers, one-off 502s and latency included, each customer is created once
    and each row recorded once."""
    sandbox.configure(latency_ms=20, jitter_ms=30, fault_502=0.1, fault_502_after_commit=0.1,
                      seed=11)
    ids = CREATING + [emirates_id(100 + n) for n in range(40)]
    rows = [
        {"row_number": n, "id_type": "4", "id_number": i, "body": body(i)}
        for n, i in enumerate(ids, start=2)
    ]
    message = chunk_message("race", "c0", rows)
    settings = Settings(
        redis_url=isolated_redis.url, partner=partner_settings(sandbox),
        pipeline=PipelineSettings(
            key_prefix=isolated_redis.prefix, queue=isolated_redis.prefix,
            rate_limit_per_second=2000, max_attempts=8, backoff_base_seconds=0.02,
            backoff_max_seconds=0.1, claim_ttl_seconds=10, worker_concurrency=20,
        ),
    )
    holders = [RuntimeHolder(settings, isolated_redis.url) for _ in range(2)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(holder: RuntimeHolder, task_id: str) -> None:
        runtime = holder.get()
        start.wait()
        try:
            runtime.run(handle_chunk(runtime, message, task_id=task_id), timeout=DEADLINE)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(h, f"t{n}")) for n, h in enumerate(holders)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE + 5)
    finally:
        for holder in holders:
            holder.close()
    assert errors == []
    poll_until(
        lambda: sandbox.stats()["in_flight"] == 0, DEADLINE, "the partner to finish every call",
        interval=0.02,
    )
    stats = sandbox.stats()
    assert stats["duplicate_creates"] == 0
    assert stats["faults"].get("fault_502_after_commit", 0) > 0, "lost answers did happen"
    client = redis.Redis.from_url(isolated_redis.url)
    store = BatchStore(client, prefix=isolated_redis.prefix)
    try:
        assert store.done_count("race") == len(ids)
        records = list(store.iter_rows("race"))
        assert sorted(r.row_number for r in records) == list(range(2, len(ids) + 2))
        outcomes = {r.outcome for r in records}
        assert outcomes <= {Outcome.ONBOARDED, Outcome.ALREADY_EXISTS, Outcome.FAILED}
        assert sum(r.outcome is Outcome.ONBOARDED for r in records) > 0
    finally:
        client.close()


def test_marker_of_a_dead_attempt_and_two_copies_of_the_row_end_with_one_create(
    sandbox: Sandbox, isolated_redis: IsolatedRedis
) -> None:
    """A "create sent" marker left by a dead worker, and the row twice at once: each copy
    acknowledges that attempt with a fresh lookup instead of taking turns refusing the
    other for ever; both end, and the customer is created once."""
    fresh = emirates_id(2)
    sandbox.configure(latency_ms=10)
    policy = FlowPolicy(max_attempts=5, backoff_base_seconds=0.02, backoff_max_seconds=0.05,
                        claim_ttl_seconds=5, claim_poll_seconds=0.02)

    async def work(client: PartnerClient, store: AsyncBatchStore) -> Any:
        await store.r.set(store.keys.create_sent("4", fresh), "dead-worker/1")
        limiter = AsyncRateLimiter(store.r, rate=1000, prefix=isolated_redis.prefix)
        rows = [RowTask(f"b{n}", 2, "4", fresh, body(fresh)) for n in range(2)]
        return await asyncio.wait_for(
            asyncio.gather(*(process_row(r, client, store, limiter, policy=policy)
                             for r in rows)),
            timeout=DEADLINE,
        )

    results = run_flow(sandbox, isolated_redis, partner_settings(sandbox), work)
    poll_until(
        lambda: sandbox.stats()["in_flight"] == 0, DEADLINE, "the partner to finish every call",
        interval=0.02,
    )
    stats = sandbox.stats()
    assert stats["creates"] == 1 and stats["duplicate_creates"] == 0
    assert {r.outcome for r in results} <= {Outcome.ONBOARDED, Outcome.ALREADY_EXISTS}
    assert len({r.ecrn for r in results}) == 1
