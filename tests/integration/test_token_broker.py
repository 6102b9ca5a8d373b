"""The token broker against a real Redis: memory fast path, renewal, single flight, fallbacks.

The token endpoint here is a small Keycloak-like handler behind ``httpx.MockTransport`` and
the clock is injected, so expiry is driven without waiting. The same behaviour against the
sandbox over real HTTP, across processes, is in ``test_partner_sandbox.py``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from urllib.parse import parse_qsl

import httpx
import pytest
import redis
import structlog
from pydantic import SecretStr
from support import poll_until

from pipeline.core.settings import PartnerSettings
from workers.partner.token import TokenBroker, TokenError, TokenRecord

SECRET = "s3cret-client-value"
PASSWORD = "pa55word-value"
SETTINGS = PartnerSettings(
    base_url="https://partner.test", client_id="cid", client_secret=SecretStr(SECRET),
    username="user", password=SecretStr(PASSWORD), scope="api://x/customer",
    refresh_skew_seconds=60.0, refresh_skew_fraction=0.2, token_lock_seconds=2.0,
)


class Clock:
    """A settable wall clock starting now (Redis TTLs are computed from it)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class FakeKeycloak:
    """Keycloak-like token endpoint: password and refresh grants, single-use refresh tokens."""

    def __init__(self, clock: Clock, ttl: float = 100.0, refresh_ttl: float = 300.0) -> None:
        self.clock = clock
        self.ttl = ttl
        self.refresh_ttl = refresh_ttl
        self.issued = 0
        self.grants: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.refresh_alive: dict[str, float] = {}
        self.forms: list[dict[str, str]] = []
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("refused")
        form = dict(parse_qsl(request.content.decode()))
        self.forms.append(form)
        if form.get("client_secret") != SECRET:
            self.errors["invalid_client"] += 1
            return httpx.Response(401, json={"error": "invalid_client"})
        if form["grant_type"] == "password":
            if form.get("password") != PASSWORD:
                return httpx.Response(401, json={"error": "invalid_grant"})
        else:
            expires = self.refresh_alive.pop(form.get("refresh_token", ""), None)
            if expires is None or expires <= self.clock():
                self.errors["invalid_grant"] += 1
                return httpx.Response(400, json={"error": "invalid_grant",
                                                 "error_description": "Invalid refresh token"})
        self.grants[form["grant_type"]] += 1
        self.issued += 1
        refresh = f"refresh-{self.issued}"
        self.refresh_alive[refresh] = self.clock() + self.refresh_ttl
        return httpx.Response(200, json={
            "access_token": f"access-{self.issued}", "expires_in": self.ttl,
            "refresh_expires_in": self.refresh_ttl, "refresh_token": refresh,
            "token_type": "bearer", "not-before-policy": 0, "session_state": "s", "scope": "x",
        })


@pytest.fixture()
def rclient(redis_url: str) -> redis.Redis:
    """A sync Redis client on the flushed test database."""
    return redis.Redis.from_url(redis_url)


def make(
    rclient: redis.Redis, keycloak: FakeKeycloak, clock: Clock | None = None,
    settings: PartnerSettings = SETTINGS,
) -> TokenBroker:
    http = httpx.Client(base_url=settings.base_url, transport=httpx.MockTransport(keycloak))
    kwargs = {"clock": clock} if clock is not None else {}
    return TokenBroker(rclient, settings, http_client=http, **kwargs)  # type: ignore[arg-type]


def test_first_get_makes_one_password_grant_then_serves_from_memory(rclient: redis.Redis) -> None:
    """One password grant; afterwards get() returns the same token with no Redis call."""
    clock = Clock()
    keycloak = FakeKeycloak(clock)
    broker = make(rclient, keycloak, clock)
    first = broker.get()
    reads = broker.redis_reads
    assert [broker.get() for _ in range(1000)] == [first] * 1000
    assert broker.redis_reads == reads
    assert keycloak.grants == Counter({"password": 1})
    assert broker.grants == 1 and broker.grant_counts == {"password": 1, "refresh": 0}
    form = keycloak.forms[0]
    assert (form["client_id"], form["username"], form["scope"]) == ("cid", "user", "api://x/customer")


def test_the_token_lives_in_redis_with_absolute_expiry_and_ttl(rclient: redis.Redis) -> None:
    """Redis holds the token set with absolute expiries and a TTL of its remaining lifetime."""
    clock = Clock()
    broker = make(rclient, FakeKeycloak(clock, ttl=100, refresh_ttl=300), clock)
    token = broker.get()
    record = TokenRecord.from_json(rclient.get("onboard:token"))  # type: ignore[arg-type]
    assert record is not None and record.access_token == token
    assert record.expires_at == pytest.approx(clock.now + 100, abs=1)
    assert record.refresh_expires_at == pytest.approx(clock.now + 300, abs=1)
    assert 290_000 < rclient.pttl("onboard:token") <= 300_000


def test_another_process_adopts_the_shared_token_without_a_grant(rclient: redis.Redis) -> None:
    """A second broker (another process) reads the token from Redis instead of fetching one."""
    clock = Clock()
    keycloak = FakeKeycloak(clock)
    token = make(rclient, keycloak, clock).get()
    other = make(rclient, keycloak, clock)
    assert other.get() == token
    assert other.grants == 0
    assert sum(keycloak.grants.values()) == 1


def test_renews_ahead_of_expiry_with_the_refresh_grant(rclient: redis.Redis) -> None:
    """Past expiry − skew (20 % of 100 s) the broker uses the refresh grant; not before."""
    clock = Clock()
    keycloak = FakeKeycloak(clock, ttl=100)
    broker = make(rclient, keycloak, clock)
    first = broker.get()
    clock.now += 79
    assert broker.get() == first
    clock.now += 2
    second = broker.get()
    assert second != first
    assert keycloak.grants == Counter({"password": 1, "refresh_token": 1})
    assert keycloak.forms[-1]["refresh_token"] == "refresh-1"
    assert keycloak.errors["invalid_grant"] == 0


def test_skew_is_capped_by_refresh_skew_seconds(rclient: redis.Redis) -> None:
    """For a 7199 s token the skew is 60 s, not 20 % of the lifetime."""
    clock = Clock()
    keycloak = FakeKeycloak(clock, ttl=7199, refresh_ttl=7199)
    broker = make(rclient, keycloak, clock)
    first = broker.get()
    clock.now += 7199 - 61
    assert broker.get() == first
    clock.now += 2
    assert broker.get() != first


def test_expired_refresh_token_falls_back_to_password(rclient: redis.Redis) -> None:
    """When the stored refresh token has expired the broker goes straight to a password grant."""
    clock = Clock()
    keycloak = FakeKeycloak(clock, ttl=100, refresh_ttl=50)
    broker = make(rclient, keycloak, clock)
    broker.get()
    clock.now += 90
    broker.get()
    assert keycloak.grants == Counter({"password": 2})
    assert keycloak.errors["invalid_grant"] == 0


def test_invalid_grant_on_refresh_falls_back_to_password(rclient: redis.Redis) -> None:
    """A refresh token the partner no longer knows (used elsewhere) → one password grant."""
    clock = Clock()
    keycloak = FakeKeycloak(clock, ttl=100)
    broker = make(rclient, keycloak, clock)
    first = broker.get()
    keycloak.refresh_alive.clear()
    clock.now += 85
    second = broker.get()
    assert second != first
    assert keycloak.errors["invalid_grant"] == 1
    assert keycloak.grants == Counter({"password": 2})
    assert broker.grant_counts == {"password": 2, "refresh": 0}


def test_refresh_after_401_renews_only_the_current_token(rclient: redis.Redis) -> None:
    """refresh(old) where old is no longer current costs nothing; refresh(current) one grant."""
    clock = Clock()
    keycloak = FakeKeycloak(clock)
    broker = make(rclient, keycloak, clock)
    other = make(rclient, keycloak, clock)
    first = broker.get()
    assert other.get() == first
    second = broker.refresh(first)
    assert second != first
    assert other.refresh(first) == second
    assert broker.refresh(first) == second
    assert sum(keycloak.grants.values()) == 2
    # A 401 means the session was revoked, refresh token included: password grant directly.
    assert keycloak.grants == Counter({"password": 2})


def test_401_for_a_token_past_its_refresh_point_uses_the_refresh_grant(
    rclient: redis.Redis,
) -> None:
    """A 401 for a token that was due for renewal anyway (it expired in flight) is an expiry,
    not a revocation: the refresh grant is used."""
    clock = Clock()
    keycloak = FakeKeycloak(clock, ttl=100)
    broker = make(rclient, keycloak, clock)
    first = broker.get()
    clock.now += 95
    assert broker.refresh(first) != first
    assert keycloak.grants == Counter({"password": 1, "refresh_token": 1})


def test_waiter_keeps_using_a_valid_token_while_another_process_renews(
    rclient: redis.Redis,
) -> None:
    """Inside the refresh window, with the Redis lock held elsewhere, get() returns the
    still-valid token at once and makes no grant."""
    clock = Clock()
    keycloak = FakeKeycloak(clock, ttl=100)
    broker = make(rclient, keycloak, clock)
    first = broker.get()
    rclient.set("onboard:token:lock", "someone-else", px=60_000)
    clock.now += 85
    assert broker.get() == first
    assert broker.grants == 1


def test_waiter_without_a_usable_token_picks_up_the_renewed_one(rclient: redis.Redis) -> None:
    """With no usable token and the lock held elsewhere, get() polls Redis until the other
    process stores its token, and adopts it without a grant of its own."""
    keycloak = FakeKeycloak(Clock())
    broker = make(rclient, keycloak)
    rclient.set("onboard:token:lock", "someone-else", px=60_000)
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(broker.get()))
    waiter.start()
    poll_until(
        lambda: broker.redis_reads >= 3, 5, "the waiter to be polling Redis", interval=0.005
    )
    now = time.time()
    rclient.set("onboard:token", TokenRecord("from-elsewhere", now + 100, 100.0).to_json(),
                px=100_000)
    waiter.join(timeout=5)
    assert got == ["from-elsewhere"]
    assert broker.grants == 0


def test_a_dead_lock_holder_only_delays_renewal(rclient: redis.Redis) -> None:
    """A lock left by a crashed refresher expires after token_lock_seconds; then we renew."""
    keycloak = FakeKeycloak(Clock())
    settings = SETTINGS.model_copy(update={"token_lock_seconds": 0.3})
    broker = make(rclient, keycloak, settings=settings)
    rclient.set("onboard:token:lock", "crashed", px=300)
    assert broker.get() == "access-1"
    assert broker.grants == 1


def test_threads_of_one_process_share_one_grant(rclient: redis.Redis) -> None:
    """Sixteen threads asking at once for the first token cause exactly one grant."""
    keycloak = FakeKeycloak(Clock())
    broker = make(rclient, keycloak)
    barrier = threading.Barrier(16)
    got: list[str] = []

    def worker() -> None:
        barrier.wait()
        got.append(broker.get())

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert got == ["access-1"] * 16
    assert sum(keycloak.grants.values()) == 1


def test_failures_raise_token_error_without_secrets(rclient: redis.Redis) -> None:
    """Wrong client secret or an unreachable endpoint raise TokenError; no secret appears in
    the message or any log event."""
    clock = Clock()
    keycloak = FakeKeycloak(clock)
    wrong = SETTINGS.model_copy(update={"client_secret": SecretStr("wrong-secret-value")})
    with structlog.testing.capture_logs() as events:
        with pytest.raises(TokenError) as refused:
            make(rclient, keycloak, clock, settings=wrong).get()
        keycloak.down = True
        with pytest.raises(TokenError) as down:
            make(rclient, keycloak, clock).get()
    assert "invalid_client" in str(refused.value)
    assert "unreachable" in str(down.value)
    text = repr(events) + str(refused.value) + str(down.value)
    for secret in (SECRET, PASSWORD, "wrong-secret-value"):
        assert secret not in text


def test_granted_tokens_never_reach_the_logs(rclient: redis.Redis) -> None:
    """Grant events name the grant type and lifetime, never the access or refresh token."""
    clock = Clock()
    keycloak = FakeKeycloak(clock)
    with structlog.testing.capture_logs() as events:
        broker = make(rclient, keycloak, clock)
        broker.get()
        clock.now += 85
        broker.get()
    assert [e["grant"] for e in events if e["event"] == "token.granted"] == [
        "password", "refresh"]
    assert "access-" not in repr(events) and "refresh-" not in repr(events)
    assert "access-" not in repr(TokenRecord("access-9", 1.0, 1.0, "refresh-9"))
