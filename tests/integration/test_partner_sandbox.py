"""The partner client and the token broker against the sandbox over real HTTP and a real Redis.

Every case of docs/partner-api.md reaches its typed result (scenario ID numbers of
docs/architecture.md); 4 processes × 8 threads share one token across its lifetimes; a
revocation mid-run costs one grant; an expired refresh token falls back to the password grant.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from support import (
    AML_UNDER_INVESTIGATION,
    BLOCKED,
    COMPLIANCE,
    CREATE_502,
    CREATE_502_AFTER_COMMIT,
    CREATE_502_ONCE,
    EXISTING,
    FRESH,
    INVALID_MASTER_DATA,
    KYC_PENDING,
    LOOKUP_BAD_REQUEST,
    LOOKUP_BLOCKED,
    LOOKUP_COMPLIANCE,
    LOOKUP_INTERNAL_ERROR,
    LOOKUP_INTERNAL_ERROR_ONCE,
    MANDATORY_MISSING,
    NOT_SUBSCRIBED,
    SLOW,
    UPDATE_FAILURE,
    poll_until,
)
from support import onboarding_body as body

from pipeline.core.logs import configure_logging
from pipeline.core.settings import PartnerSettings
from sandbox.testing import SandboxHandle as Sandbox
from sandbox.testing import sandbox_partner
from workers.partner.client import PartnerClient
from workers.partner.responses import (
    Found,
    NotFound,
    Onboarded,
    PartnerResult,
    Rejected,
    Status,
    Transient,
    Unauthorized,
)
from workers.partner.token import TokenBroker, TokenRecord

# Knobs the tests change, with the values every test starts from.
DEFAULT_KNOBS: dict[str, Any] = {
    "token_ttl": 7199, "refresh_ttl": 7199, "fault_429": 0.0, "fault_502": 0.0,
    "fault_45006": 0.0, "latency_ms": 0.0,
}


@pytest.fixture()
def sandbox(sandbox_server: Sandbox) -> Sandbox:
    """The module's sandbox with default knobs and zeroed counters and customers."""
    sandbox_server.configure(**DEFAULT_KNOBS)
    sandbox_server.reset()
    return sandbox_server


def partner_settings(base_url: str, **changes: Any) -> PartnerSettings:
    """Client settings for the sandbox's default credentials."""
    return sandbox_partner(base_url, scope="api://sandbox/customer", **changes)


Steps = Callable[[PartnerClient], Awaitable[list[PartnerResult]]]


def run_steps(
    sandbox: Sandbox, redis_url: str, steps: Steps, **settings: Any
) -> list[PartnerResult]:
    """Run ``steps`` with a fresh client and broker; return the results in order."""
    config = partner_settings(sandbox.base_url, **settings)
    broker = TokenBroker(redis.Redis.from_url(redis_url), config)

    async def main() -> list[PartnerResult]:
        async with PartnerClient(config, broker) as client:
            return await steps(client)

    try:
        return asyncio.run(main())
    finally:
        broker.close()


def lookup(id_number: str) -> Steps:
    async def steps(c: PartnerClient) -> list[PartnerResult]:
        return [await c.lookup("4", id_number)]
    return steps


def onboard(id_number: str, **changes: Any) -> Steps:
    async def steps(c: PartnerClient) -> list[PartnerResult]:
        return [await c.onboard(body(id_number, **changes))]
    return steps


def onboard_then_lookup(id_number: str) -> Steps:
    async def steps(c: PartnerClient) -> list[PartnerResult]:
        return [await c.onboard(body(id_number)), await c.lookup("4", id_number)]
    return steps


def onboard_twice(id_number: str) -> Steps:
    async def steps(c: PartnerClient) -> list[PartnerResult]:
        return [await c.onboard(body(id_number)), await c.onboard(body(id_number))]
    return steps


def lookup_twice(id_number: str) -> Steps:
    async def steps(c: PartnerClient) -> list[PartnerResult]:
        return [await c.lookup("4", id_number), await c.lookup("4", id_number)]
    return steps


def status(ecrn: str) -> Steps:
    async def steps(c: PartnerClient) -> list[PartnerResult]:
        return [await c.status(ecrn)]
    return steps


def onboard_then_status(id_number: str) -> Steps:
    async def steps(c: PartnerClient) -> list[PartnerResult]:
        created = await c.onboard(body(id_number))
        assert isinstance(created, Onboarded)
        return [created, await c.status(created.ecrn)]
    return steps


def kinds(results: list[PartnerResult]) -> list[str]:
    return [type(r).__name__ for r in results]


def test_lookup_cases(sandbox: Sandbox, redis_url: str) -> None:
    """Each lookup case of docs/partner-api.md §3 reaches its typed result over HTTP."""
    def one(steps: Steps) -> list[PartnerResult]:
        return run_steps(sandbox, redis_url, steps)

    (found,) = one(lookup(EXISTING))
    assert isinstance(found, Found) and found.ecrn == "1000000000000005"
    assert found.data["customer_status"] == "ACTIVE"
    assert kinds(one(lookup(FRESH))) == ["NotFound"]
    assert kinds(one(lookup(NOT_SUBSCRIBED))) == ["NotSubscribed"]
    for id_number, code in ((LOOKUP_COMPLIANCE, "45013"), (LOOKUP_BLOCKED, "45051"),
                            (LOOKUP_BAD_REQUEST, "40001")):
        (result,) = one(lookup(id_number))
        assert isinstance(result, Rejected) and result.code == code, id_number
    (bad_format,) = run_steps(sandbox, redis_url, _raw_lookup("4", "not an id!"))
    assert isinstance(bad_format, Rejected) and bad_format.code in ("40001", "45005")
    assert one(lookup(LOOKUP_INTERNAL_ERROR)) == [Transient("partner_error", code="45006")]
    assert kinds(one(lookup_twice(LOOKUP_INTERNAL_ERROR_ONCE))) == ["Transient", "NotFound"]


def _raw_lookup(id_type: str, id_number: str) -> Steps:
    async def steps(c: PartnerClient) -> list[PartnerResult]:
        return [await c.lookup(id_type, id_number)]
    return steps


def test_onboarding_cases(sandbox: Sandbox, redis_url: str) -> None:
    """Each onboarding case of docs/partner-api.md §4 reaches its typed result over HTTP."""
    def one(steps: Steps) -> list[PartnerResult]:
        return run_steps(sandbox, redis_url, steps)

    created, found = one(onboard_then_lookup(FRESH))
    assert isinstance(created, Onboarded) and len(created.ecrn) == 16
    assert (created.customer_status, created.aml_scan_status, created.pep) == (
        "ACTIVE", "Accepted", False)
    assert created.request_id is not None and len(created.request_id) == 32
    assert isinstance(found, Found) and found.ecrn == created.ecrn

    expected = {BLOCKED: ("45051", 406), COMPLIANCE: ("45013", 406),
                INVALID_MASTER_DATA: ("45053", 400), MANDATORY_MISSING: ("40002", 400)}
    for id_number, (code, http_status) in expected.items():
        (result,) = one(onboard(id_number))
        assert isinstance(result, Rejected), id_number
        assert (result.code, result.http_status) == (code, http_status)
    (compliance,) = one(onboard(COMPLIANCE))
    assert isinstance(compliance, Rejected) and "1000000000000080" in compliance.message
    (master,) = one(onboard(INVALID_MASTER_DATA))
    assert isinstance(master, Rejected) and "occupation_id" in master.details

    # The sandbox's own checks: a real missing field and a real unknown code.
    (missing,) = one(onboard(FRESH, first_name=""))
    assert isinstance(missing, Rejected) and missing.code == "40002"
    assert "first_name" in missing.details
    (unknown,) = one(onboard("784197490000011", occupation_id="999"))
    assert isinstance(unknown, Rejected) and unknown.code == "45053"
    assert "occupation_id" in unknown.details

    (update,) = one(onboard(UPDATE_FAILURE, ecrn="1000000000000156"))
    assert isinstance(update, Rejected) and (update.code, update.http_status) == ("45032", 404)

    in_doubt = Transient("server_error", code="40001", in_doubt=True)
    assert one(onboard_then_lookup(CREATE_502)) == [in_doubt, NotFound("Customer not found")]
    first, second = one(onboard_twice(CREATE_502_ONCE))
    assert first == in_doubt and isinstance(second, Onboarded)
    lost, landed = one(onboard_then_lookup(CREATE_502_AFTER_COMMIT))
    assert lost == in_doubt and isinstance(landed, Found)

    (pending,) = one(onboard(KYC_PENDING))
    assert isinstance(pending, Onboarded) and pending.customer_status == "KYC PENDING"
    (aml,) = one(onboard(AML_UNDER_INVESTIGATION))
    assert isinstance(aml, Onboarded) and aml.aml_scan_status == "Under Investigation"


def test_slow_answer_times_out_in_doubt(sandbox: Sandbox, redis_url: str) -> None:
    """A create slower than the read timeout is Transient("timeout") and in doubt."""
    results = run_steps(sandbox, redis_url, onboard(SLOW), read_timeout=0.3,
                        http_transport="aiohttp")
    assert results == [Transient("timeout", in_doubt=True)]
    results = run_steps(sandbox, redis_url, lookup(SLOW), read_timeout=0.3,
                        http_transport="httpx")
    assert results == [Transient("timeout", in_doubt=False)]


def test_status_cases(sandbox: Sandbox, redis_url: str) -> None:
    """The status GET of docs/partner-api.md §5: a record, not subscribed, not found."""
    created, record = run_steps(sandbox, redis_url, onboard_then_status(KYC_PENDING))
    assert isinstance(record, Status) and isinstance(created, Onboarded)
    assert (record.ecrn, record.customer_status) == (created.ecrn, "KYC PENDING")
    assert kinds(run_steps(sandbox, redis_url, status("1000000000000012"))) == ["NotSubscribed"]
    assert kinds(run_steps(sandbox, redis_url, status("9999999999999999"))) == ["NotFound"]


def test_faults_and_limits(sandbox: Sandbox, redis_url: str) -> None:
    """Random 429s carry Retry-After, random 502s on create are in doubt, 45006 is transient."""
    sandbox.configure(fault_429=1.0, retry_after_s=3)
    assert run_steps(sandbox, redis_url, lookup(EXISTING)) == [
        Transient("rate_limited", code="http_429", retry_after=3.0)]
    sandbox.configure(fault_429=0.0, fault_502=1.0)
    (result,) = run_steps(sandbox, redis_url, onboard(FRESH))
    assert isinstance(result, Transient) and result.in_doubt
    sandbox.configure(fault_502=0.0, fault_45006=1.0)
    assert run_steps(sandbox, redis_url, lookup(FRESH)) == [
        Transient("partner_error", code="45006")]


class BogusTokens:
    """A token source whose tokens the partner never issued."""

    def __init__(self) -> None:
        self.refreshed = 0

    async def aget(self) -> str:
        return "never-issued"

    async def arefresh(self, failed_token: str) -> str:
        self.refreshed += 1
        return "never-issued-either"


def test_refused_token_is_retried_once_then_unauthorized(sandbox: Sandbox) -> None:
    """The gateway's 401 maps to Unauthorized after one refresh and one retry, no loop."""
    tokens = BogusTokens()

    async def main() -> PartnerResult:
        async with PartnerClient(partner_settings(sandbox.base_url), tokens) as client:
            return await client.lookup("4", EXISTING)

    assert asyncio.run(main()) == Unauthorized("Unauthorized")
    assert tokens.refreshed == 1
    assert sandbox.stats()["calls"]["lookup"] == {"401": 2}


# -- many processes sharing one token ------------------------------------------------------


def _storm_process(
    base_url: str, redis_url: str, threads: int, seconds: float,
    start: Any, stop: Any, out: Any,
) -> None:
    """One worker process: one broker, ``threads`` threads each with its own loop and client,
    looking up a customer until ``seconds`` have passed or ``stop`` is set."""
    configure_logging("WARNING")
    settings = partner_settings(base_url)
    broker = TokenBroker(redis.Redis.from_url(redis_url), settings)
    results: Counter[str] = Counter()
    lock = threading.Lock()

    def thread_main() -> None:
        async def loop() -> None:
            async with PartnerClient(settings, broker) as client:
                end = time.monotonic() + seconds
                while time.monotonic() < end and not stop.is_set():
                    result = await client.lookup("4", EXISTING)
                    with lock:
                        results[type(result).__name__] += 1
        asyncio.run(loop())

    workers = [threading.Thread(target=thread_main) for _ in range(threads)]
    start.wait(timeout=60)
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    broker.close()
    out.put({"grants": broker.grants, "results": dict(results)})


def run_storm(
    sandbox: Sandbox, redis_url: str, *, processes: int, threads: int, seconds: float,
    during: Callable[[Any], None] | None = None,
) -> tuple[Counter[str], int, float]:
    """Run the storm; return (results by type, grants made by the processes, elapsed s)."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(processes + 1)
    stop = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_storm_process,
                    args=(sandbox.base_url, redis_url, threads, seconds, start, stop, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    try:
        start.wait(timeout=60)
        began = time.monotonic()
        if during is not None:
            during(stop)
        reports = [out.get(timeout=seconds + 30) for _ in procs]
        elapsed = time.monotonic() - began
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    results: Counter[str] = Counter()
    for report in reports:
        results.update(report["results"])
    return results, sum(r["grants"] for r in reports), elapsed


def test_many_processes_share_one_token_across_lifetimes(
    sandbox: Sandbox, redis_url: str
) -> None:
    """4 processes × 8 threads over 3 token lifetimes (TTL 2 s): at most one grant per
    lifetime (+1 for the first), no invalid_grant, and every request succeeds."""
    sandbox.configure(token_ttl=2)
    window: dict[str, float] = {}

    def three_lifetimes(stop: Any) -> None:
        # The lifetimes count from the first grant: process start-up is not token time.
        poll_until(lambda: _grants(sandbox), 60, "the first grant", interval=0.02)
        window["first_grant"] = time.monotonic() - 0.02
        # Then the storm runs for three token lifetimes: here the passing time is the
        # scenario, there is nothing to wait for.
        time.sleep(max(0.0, window["first_grant"] + 6.0 - time.monotonic()))
        stop.set()

    results, grants, _ = run_storm(sandbox, redis_url, processes=4, threads=8, seconds=60,
                                   during=three_lifetimes)
    elapsed = time.monotonic() - window["first_grant"]
    stats = sandbox.stats()
    total_grants = _grants(sandbox)
    lifetimes = math.ceil(elapsed / 2)
    assert results["Found"] > 100
    assert set(results) == {"Found"}, results
    assert total_grants == grants
    assert total_grants <= lifetimes + 1, (stats["grants"], elapsed, stats["calls"])
    assert total_grants >= 3, "the run should have crossed token lifetimes"
    assert stats["token_errors"]["invalid_grant"] == 0


def _grants(sandbox: Sandbox) -> int:
    """Successful grants the sandbox has made since its counters were reset."""
    grants = sandbox.stats()["grants"]
    return int(grants["password"] + grants["refresh"])


def test_revocation_mid_run_costs_one_grant_and_no_failure(
    sandbox: Sandbox, redis_url: str
) -> None:
    """Revoking every token while 3 processes × 4 threads are calling costs exactly one new
    grant, and no request fails (each 401 is answered by one refresh and one retry)."""
    def revoke_mid_run(stop: Any) -> None:
        def lookups() -> int:
            return sum(sandbox.stats()["calls"]["lookup"].values())

        poll_until(lambda: lookups() >= 200, 30, "200 lookups before the revocation",
                   interval=0.02)
        sandbox.revoke_tokens()
        after = lookups()
        poll_until(lambda: lookups() >= after + 300, 30, "300 lookups after the revocation",
                   interval=0.02)
        stop.set()

    results, grants, _ = run_storm(sandbox, redis_url, processes=3, threads=4, seconds=30,
                                   during=revoke_mid_run)
    stats = sandbox.stats()
    assert set(results) == {"Found"}, results
    assert stats["calls"]["lookup"].get("401", 0) >= 1, "the revocation should have been felt"
    assert stats["grants"] == {"password": 2, "refresh": 0}
    assert grants == 2
    assert stats["token_errors"]["invalid_grant"] == 0


def test_expired_refresh_token_falls_back_to_password(
    sandbox: Sandbox, redis_url: str
) -> None:
    """When the stored refresh token has expired, renewal uses the password grant (no
    invalid_grant); while it lives, renewal uses the refresh grant."""
    sandbox.configure(token_ttl=3, refresh_ttl=1)
    settings = partner_settings(sandbox.base_url)
    client = redis.Redis.from_url(redis_url)
    broker = TokenBroker(client, settings)
    first = broker.get()
    record = TokenRecord.from_json(client.get("onboard:token"))  # type: ignore[arg-type]
    assert record is not None and record.refresh_expires_at is not None
    # Past the refresh point (expiry − 20 % of 3 s), long after the refresh token died.
    _wait_until(record.expires_at - 0.6 + 0.05)
    second = broker.get()
    assert second != first
    assert sandbox.stats()["grants"] == {"password": 2, "refresh": 0}

    sandbox.configure(token_ttl=1, refresh_ttl=30)
    third = broker.refresh(second)
    record = TokenRecord.from_json(client.get("onboard:token"))  # type: ignore[arg-type]
    assert record is not None and record.access_token == third
    _wait_until(record.expires_at - 0.2 + 0.05)
    assert broker.get() != third
    broker.close()
    stats = sandbox.stats()
    assert stats["grants"] == {"password": 3, "refresh": 1}
    assert stats["token_errors"]["invalid_grant"] == 0


def _wait_until(wall_time: float) -> None:
    """Let time pass until ``wall_time``: tokens expire by the clock, so this sleep is the
    scenario itself, not a stand-in for waiting on something that could be polled."""
    time.sleep(max(0.0, wall_time - time.time()))
