"""The token broker: one partner access token shared by every worker process through Redis.

DRAP means one token to serve all callers until it expires. The broker keeps it in Redis (one
JSON value: access token, refresh token, absolute expiries; TTL = remaining lifetime) and in
process memory, so an ordinary :meth:`TokenBroker.get` is a memory read and costs no Redis
call while the token is fresh.

Renewal:

* ahead of expiry, by ``skew = min(refresh_skew_seconds, refresh_skew_fraction × lifetime)``;
* single flight: one thread per process (a ``threading.Lock``) and one process overall (a
  short Redis lock, ``SET NX PX``) renews; whoever takes the Redis lock re-reads first, since
  someone may have renewed meanwhile; the others keep using the still-valid token, or poll
  Redis for the new one with a deadline when theirs is no longer usable;
* the refresh grant while the refresh token lives, the password grant when it does not or when
  the refresh answers ``invalid_grant`` (refresh tokens rotate: a used one is dead);
* after a 401, :meth:`TokenBroker.refresh` renews only if the failed token is still current.

Token calls use the broker's own sync ``httpx.Client``, created lazily in the process that uses
it. A broker may be created before a fork: the child notices its new pid and builds its own
lock and HTTP client. Secrets never reach a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import redis
import structlog

from pipeline.core.errors import OnboardError
from pipeline.core.settings import PartnerSettings
from workers.partner.http import sync_client

log = structlog.get_logger(__name__)

Grant = Literal["password", "refresh"]

# Deleting the lock only if we still own it: a refresher that outlived its lock must not
# release the next holder's.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

# How often a waiter looks in Redis for the token someone else is fetching. Short, because
# the wait is one token call; it is a polling interval, not a synchronisation sleep.
POLL_SECONDS = 0.02


class TokenError(OnboardError):
    """No usable token: the token endpoint refused us or could not be reached, or Redis failed.

    Messages name the HTTP status and the OAuth error code only, never a secret.
    """


class InvalidGrantError(TokenError):
    """The token endpoint answered ``invalid_grant`` (an expired or already-used refresh token)."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One token set with absolute expiries (epoch seconds, shared by every machine)."""

    access_token: str = field(repr=False)
    expires_at: float
    lifetime: float
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: float | None = None

    def to_json(self) -> str:
        """The Redis representation."""
        return json.dumps(
            {
                "access_token": self.access_token,
                "expires_at": self.expires_at,
                "lifetime": self.lifetime,
                "refresh_token": self.refresh_token,
                "refresh_expires_at": self.refresh_expires_at,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> TokenRecord | None:
        """Parse the Redis representation; None when it is unreadable (then it is replaced)."""
        try:
            data = json.loads(raw)
            return cls(
                access_token=str(data["access_token"]),
                expires_at=float(data["expires_at"]),
                lifetime=float(data["lifetime"]),
                refresh_token=data.get("refresh_token"),
                refresh_expires_at=(
                    None if data.get("refresh_expires_at") is None
                    else float(data["refresh_expires_at"])
                ),
            )
        except (ValueError, KeyError, TypeError):
            return None


class TokenBroker:
    """One access token for all threads of a process, shared through Redis by all processes.

    ``redis_client`` is a sync ``redis.Redis``; ``http_client`` (a sync ``httpx.Client`` with
    ``base_url`` set) is for tests; by default the broker builds its own from ``settings``.
    ``grants`` counts the successful token grants made by this process, ``grant_counts`` per
    grant type, ``redis_reads`` the Redis reads (the benchmark shows the fast path makes none).
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        settings: PartnerSettings,
        *,
        key_prefix: str = "onboard:token",
        http_client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis_client
        self._settings = settings
        self._key = key_prefix
        self._lock_key = f"{key_prefix}:lock"
        self._clock = clock
        self._release = redis_client.register_script(_RELEASE)
        self._http = http_client
        self._own_http = http_client is None
        self._pid = os.getpid()
        self._mutex = threading.Lock()
        self._token: TokenRecord | None = None
        self._fresh_until = 0.0
        # While someone else renews, keep using the old (still valid) token until this time.
        self._recheck_at = 0.0
        self.grants = 0
        self.grant_counts: dict[Grant, int] = {"password": 0, "refresh": 0}
        self.redis_reads = 0

    # -- public -----------------------------------------------------------------------------

    def get(self) -> str:
        """The current access token: from memory while fresh, else renewed (single flight)."""
        now = self._clock()
        token = self._peek(now)
        if token is not None:
            return token
        self._check_fork()
        current = self._token
        if current is not None and self._usable(current, now):
            # Inside the refresh window: if another thread is already renewing, do not wait.
            if not self._mutex.acquire(blocking=False):
                return current.access_token
        elif not self._mutex.acquire(timeout=self._wait_seconds()):
            raise TokenError("timed out waiting for another thread to renew the token")
        try:
            token = self._peek(self._clock())
            if token is not None:
                return token
            return self._renew(failed=None)
        finally:
            self._mutex.release()

    def refresh(self, failed_token: str) -> str:
        """A token other than ``failed_token`` (which the partner refused with a 401).

        Renews only if ``failed_token`` is still the current token, so a burst of 401s for the
        same token costs one grant.
        """
        self._check_fork()
        if not self._mutex.acquire(timeout=self._wait_seconds()):
            raise TokenError("timed out waiting for another thread to renew the token")
        try:
            current = self._token
            if (
                current is not None
                and current.access_token != failed_token
                and self._usable(current, self._clock())
            ):
                return current.access_token
            return self._renew(failed=failed_token)
        finally:
            self._mutex.release()

    async def aget(self) -> str:
        """:meth:`get` for async code: the memory fast path inline, the slow path in a thread."""
        token = self._peek(self._clock())
        if token is not None:
            return token
        return await asyncio.to_thread(self.get)

    async def arefresh(self, failed_token: str) -> str:
        """:meth:`refresh` for async code, run in a thread (it may call Redis and the partner)."""
        return await asyncio.to_thread(self.refresh, failed_token)

    def close(self) -> None:
        """Close the broker's own HTTP client (a client passed in is the caller's to close)."""
        if self._own_http and self._http is not None:
            self._http.close()
            self._http = None

    # -- internals --------------------------------------------------------------------------

    def _skew(self, lifetime: float) -> float:
        s = self._settings
        return min(s.refresh_skew_seconds, s.refresh_skew_fraction * lifetime)

    def _fresh(self, record: TokenRecord, now: float) -> bool:
        """Before the refresh point: nobody needs to renew it yet."""
        return now < record.expires_at - self._skew(record.lifetime)

    def _usable(self, record: TokenRecord, now: float) -> bool:
        """Past the refresh point but far enough from expiry to still be sent."""
        return now < record.expires_at - self._skew(record.lifetime) / 2

    def _wait_seconds(self) -> float:
        return 2 * self._settings.token_lock_seconds

    def _peek(self, now: float) -> str | None:
        """The memory fast path: no lock, no Redis."""
        record = self._token
        if record is None:
            return None
        if now < self._fresh_until or (now < self._recheck_at and self._usable(record, now)):
            return record.access_token
        return None

    def _adopt(self, record: TokenRecord) -> str:
        # The fast path reads these without the lock: publish the token before the time
        # that declares it fresh, so a reader never pairs a new deadline with an old token.
        self._token = record
        self._recheck_at = 0.0
        self._fresh_until = record.expires_at - self._skew(record.lifetime)
        return record.access_token

    def _check_fork(self) -> None:
        """After a fork the parent's lock state and sockets are not ours: start afresh."""
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._mutex = threading.Lock()
            if self._own_http:
                self._http = None

    def _renew(self, failed: str | None) -> str:
        """Adopt a newer token from Redis or fetch one under the Redis lock. Mutex held."""
        stored = self._read()
        now = self._clock()
        if stored is not None and self._acceptable(stored, failed, now):
            return self._adopt(stored)
        deadline = now + self._wait_seconds()
        while True:
            owner = uuid.uuid4().hex
            try:
                locked = bool(
                    self._redis.set(
                        self._lock_key, owner, nx=True,
                        px=max(1, int(self._settings.token_lock_seconds * 1000)),
                    )
                )
            except redis.RedisError as exc:
                raise TokenError(f"Redis failed while renewing the token: {exc}") from exc
            if locked:
                try:
                    # Someone may have renewed between our read and taking the lock.
                    stored = self._read()
                    if stored is not None and self._acceptable(stored, failed, self._clock()):
                        return self._adopt(stored)
                    # A refused token we still hold as fresh was revoked; one past its
                    # refresh point merely expired (e.g. while queued at the partner).
                    revoked = (
                        failed is not None
                        and stored is not None
                        and stored.access_token == failed
                        and self._fresh(stored, self._clock())
                    )
                    record = self._grant(stored, revoked=revoked)
                    self._write(record)
                    return self._adopt(record)
                finally:
                    self._unlock(owner)
            now = self._clock()
            current = self._token
            if failed is None and current is not None and self._usable(current, now):
                # Another process is renewing; ours still works, so nobody waits for it.
                self._recheck_at = now + POLL_SECONDS
                return current.access_token
            if now >= deadline:
                raise TokenError("timed out waiting for another process to renew the token")
            time.sleep(POLL_SECONDS)
            stored = self._read()
            if stored is not None and self._acceptable(stored, failed, self._clock()):
                return self._adopt(stored)

    def _acceptable(self, record: TokenRecord, failed: str | None, now: float) -> bool:
        """Fresh for an ordinary get; after a 401, any other token that is still usable."""
        if failed is None:
            return self._fresh(record, now)
        return record.access_token != failed and self._usable(record, now)

    def _read(self) -> TokenRecord | None:
        self.redis_reads += 1
        try:
            raw = self._redis.get(self._key)
        except redis.RedisError as exc:
            raise TokenError(f"Redis failed while reading the token: {exc}") from exc
        if raw is None:
            return None
        return TokenRecord.from_json(raw)

    def _write(self, record: TokenRecord) -> None:
        """Store the record; it lives as long as its longest-lived part can still be used."""
        ends = max(record.expires_at, record.refresh_expires_at or record.expires_at)
        ttl_ms = max(1, int((ends - self._clock()) * 1000))
        try:
            self._redis.set(self._key, record.to_json(), px=ttl_ms)
        except redis.RedisError as exc:
            raise TokenError(f"Redis failed while storing the token: {exc}") from exc

    def _unlock(self, owner: str) -> None:
        try:
            self._release(keys=[self._lock_key], args=[owner])
        except redis.RedisError:
            # The lock expires by itself after token_lock_seconds.
            log.warning("token.unlock_failed")

    def _grant(self, stored: TokenRecord | None, *, revoked: bool = False) -> TokenRecord:
        """Fetch a new token set: refresh grant while the refresh token lives, else password.

        ``revoked``: the partner refused (401) a token we hold as fresh. Revocation ends the
        session (Keycloak) and with it the refresh token, so the password grant is used
        directly instead of a refresh that could only be refused.
        """
        now = self._clock()
        if (
            not revoked
            and stored is not None
            and stored.refresh_token
            and (stored.refresh_expires_at is None or now < stored.refresh_expires_at - 1.0)
        ):
            try:
                return self._token_call("refresh", {
                    "grant_type": "refresh_token",
                    "refresh_token": stored.refresh_token,
                })
            except InvalidGrantError:
                log.info("token.refresh_rejected", fallback="password")
        s = self._settings
        form = {
            "grant_type": "password",
            "username": s.username,
            "password": s.password.get_secret_value(),
        }
        if s.scope:
            form["scope"] = s.scope
        return self._token_call("password", form)

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = sync_client(self._settings)
        return self._http

    def _token_call(self, grant: Grant, form: dict[str, str]) -> TokenRecord:
        """One call to the token endpoint; counts it when it succeeds."""
        s = self._settings
        form = {**form, "client_id": s.client_id,
                "client_secret": s.client_secret.get_secret_value()}
        issued = self._clock()
        started = time.perf_counter()
        try:
            response = self._client().post(s.token_path, data=form)
        except httpx.HTTPError as exc:
            log.warning("token.unreachable", grant=grant, error=type(exc).__name__)
            raise TokenError(f"token endpoint unreachable ({type(exc).__name__})") from None
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        body = _json_object(response.content)
        if response.status_code != 200:
            error = str(body.get("error", "")) if body else ""
            log.warning("token.refused", grant=grant, http_status=response.status_code,
                        error=error, elapsed_ms=elapsed_ms)
            if response.status_code in (400, 401) and error == "invalid_grant":
                raise InvalidGrantError(
                    f"token endpoint: HTTP {response.status_code} invalid_grant"
                )
            raise TokenError(f"token endpoint: HTTP {response.status_code} {error}".rstrip())
        record = _record(body, issued)
        if record is None:
            log.warning("token.bad_answer", grant=grant, elapsed_ms=elapsed_ms)
            raise TokenError("token endpoint: HTTP 200 without access_token/expires_in")
        self.grants += 1
        self.grant_counts[grant] += 1
        log.info("token.granted", grant=grant, expires_in=round(record.lifetime),
                 has_refresh=record.refresh_token is not None, elapsed_ms=elapsed_ms)
        return record


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _record(body: dict[str, Any] | None, issued: float) -> TokenRecord | None:
    """A TokenRecord from a grant answer. Expiries count from when we *sent* the request."""
    if not body or not body.get("access_token"):
        return None
    try:
        lifetime = float(body["expires_in"])
    except (KeyError, TypeError, ValueError):
        return None
    refresh_token = body.get("refresh_token") or None
    refresh_expires_at: float | None = None
    raw_refresh = body.get("refresh_expires_in")
    if refresh_token is not None and raw_refresh not in (None, ""):
        try:
            seconds = float(raw_refresh)
        except (TypeError, ValueError):
            seconds = 0.0
        # Keycloak says 0 for a refresh token without expiry (offline tokens).
        refresh_expires_at = issued + seconds if seconds > 0 else None
    return TokenRecord(
        access_token=str(body["access_token"]),
        expires_at=issued + lifetime,
        lifetime=lifetime,
        refresh_token=None if refresh_token is None else str(refresh_token),
        refresh_expires_at=refresh_expires_at,
    )
