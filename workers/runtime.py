"""The per-process runtime of a worker: one asyncio loop in a background thread.

Celery's ``threads`` pool runs several chunks at once in one process; all of them hand their
rows to *one* event loop (``asyncio.run_coroutine_threadsafe``), so the process has one
partner connection pool, one in-memory token, one async Redis pool and one in-flight cap.
Everything here is built lazily in the process that uses it, after any fork: sockets and
loops never cross a fork (:class:`RuntimeHolder` rebuilds when the pid changes).

The loop runs on uvloop where it is installed (less CPU per row than asyncio's own loop), and
the process's GIL switch interval is shortened when the runtime starts (see
:func:`tune_switch_interval`).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis
import redis.asyncio

from pipeline.core.settings import Settings
from workers.flow import FlowPolicy
from workers.partner.client import PartnerClient
from workers.partner.token import TokenBroker
from workers.ratelimit import AsyncRateLimiter
from workers.state import AsyncBatchStore, BatchStore, Keys

T = TypeVar("T")

CLOSE_TIMEOUT = 10.0
# GIL switch interval of a worker process, seconds (Python's default is 0.005).
SWITCH_INTERVAL = 0.0005


def tune_switch_interval(interval: float = SWITCH_INTERVAL) -> float:
    """Shorten the process's GIL switch interval to ``interval`` (never lengthen it); return
    the interval now in force.

    Why: the loop thread releases the GIL on every socket write and then has to win it back
    from Celery's main thread, which decodes chunk messages, and the pool's task threads. With
    the default 5 ms, a ready loop waits up to 5 ms per hand-over while 100 requests sit
    behind it, and a profile of a busy worker showed the loop thread waiting so for a large
    share of its time. At 0.5 ms the loop gets the GIL back sooner (somewhat more rows/s in
    the throughput bench), and the extra switching costs little: the other threads have
    little to do.
    """
    if sys.getswitchinterval() > interval:
        sys.setswitchinterval(interval)
    return sys.getswitchinterval()


def new_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it is installed (a little less CPU per row in the
    row path: its transports and callbacks run in C), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Runtime:
    """Loop thread, partner client, token broker, stores and rate limiter of one process."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        p = settings.pipeline
        self.settings = settings
        self.pid = os.getpid()
        self.policy = FlowPolicy.from_settings(p)
        self.redis = redis.Redis.from_url(redis_url)
        self.store = BatchStore(self.redis, ttl_seconds=p.state_ttl_seconds, prefix=p.key_prefix)
        # The token and the customer keys are scoped to the partner we talk to (scope_id).
        scope = settings.partner.scope_id()
        self.broker = TokenBroker(
            self.redis, settings.partner, key_prefix=Keys(p.key_prefix).token(scope)
        )
        # Grants already counted into a batch's call counters (see ``take_grants``).
        self._grants_counted = 0
        self._grants_lock = threading.Lock()
        tune_switch_interval(SWITCH_INTERVAL)
        self.loop = new_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="onboard-loop", daemon=True
        )
        self._thread.start()
        self._redis_url = redis_url
        self.run(self._open())

    async def _open(self) -> None:
        """Build the loop-bound parts inside the loop that will use them."""
        p = self.settings.pipeline
        self.aredis = redis.asyncio.Redis.from_url(self._redis_url)
        self.astore = AsyncBatchStore(
            self.aredis, ttl_seconds=p.state_ttl_seconds, prefix=p.key_prefix,
            partner_scope=self.settings.partner.scope_id(),
        )
        self.limiter = AsyncRateLimiter(
            self.aredis, rate=p.rate_limit_per_second, burst=p.rate_limit_burst,
            max_in_flight=p.max_in_flight, prefix=p.key_prefix,
        )
        self.client = PartnerClient(self.settings.partner, self.broker)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the process's loop and wait for its result (any thread but the
        loop's own)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def take_grants(self) -> int:
        """Token grants made by this process since the last call (to count into a batch)."""
        with self._grants_lock:
            fresh = self.broker.grants - self._grants_counted
            self._grants_counted = self.broker.grants
            return fresh

    def close(self) -> None:
        """Close clients and stop the loop thread."""
        if self.loop.is_closed():
            return

        async def shut() -> None:
            await self.client.aclose()
            await self.aredis.aclose()

        try:
            self.run(shut(), timeout=CLOSE_TIMEOUT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(CLOSE_TIMEOUT)
            if not self._thread.is_alive():
                self.loop.close()
            self.broker.close()
            self.redis.close()


class RuntimeHolder:
    """Builds the :class:`Runtime` on first use in each process; thread safe."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self._lock = threading.Lock()
        self._runtime: Runtime | None = None

    def get(self) -> Runtime:
        """This process's runtime (a forked child builds its own)."""
        runtime = self._runtime
        if runtime is not None and runtime.pid == os.getpid():
            return runtime
        with self._lock:
            runtime = self._runtime
            if runtime is None or runtime.pid != os.getpid():
                runtime = Runtime(self.settings, self.redis_url)
                self._runtime = runtime
            return runtime

    def close(self) -> None:
        """Close this process's runtime, if one was built."""
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None and runtime.pid == os.getpid():
            runtime.close()
