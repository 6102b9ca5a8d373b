"""The global partner rate limit, shared in Redis by every worker on every machine.

The algorithm is GCRA (generic cell rate algorithm) in one Lua script that *reserves* a slot:
the script advances the shared "theoretical arrival time" by one interval and answers how
long the caller must wait for its slot. One round trip per request, no polling, and grants
are spaced ``1/rate`` apart whatever the number of callers. The clock is Redis's own
(``TIME``), so machines with skewed clocks still share one schedule.

The async limiter reserves up to ``max_batch`` consecutive slots (spanning at most 50 ms)
per round trip when several of its callers are waiting, and hands them out locally at their
times: under load a partner call costs a fraction of a Redis round trip instead of one. Only
waiting callers get slots, so a batch is never reserved for nobody.

``429 Retry-After`` is honoured for everyone: :meth:`pause` stores an absolute "hold off
until" in Redis and every acquire waits it out before reserving. Slots already reserved
before a pause still go out; at most a handful, since reservations are at most a few
intervals ahead under load.

In-flight cap: per process (an ``asyncio.Semaphore``), not global. The partner's quota is a
rate, which the global limiter enforces; the in-flight cap protects our own sockets and event
loop, which are per process. A global one would cost two more round trips per request and
leaked leases when a worker dies, for no gain at the partner. The total is
``workers × max_in_flight``; size it with that product.
"""

from __future__ import annotations

import asyncio
import collections
import time
from types import TracebackType

import redis
import redis.asyncio

from workers.state import Keys, ScriptBatcher

BATCH_SPAN_MS = 50.0

# KEYS: tat, pause. ARGV: interval_ms, tolerance_ms, slots (consecutive slots to reserve).
# Returns {granted (0/1), wait_ms until the first slot as a string (Lua numbers would be
# truncated to integers)}; further slots follow one interval apart.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then
  return {0, tostring(pause - now)}
end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local slots = tonumber(ARGV[3] or '1')
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * slots
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
return {1, tostring(wait)}
"""

# KEYS: pause. ARGV: seconds. Only ever extends the pause. Returns the pause's ms left.
_PAUSE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local until_ms = now + tonumber(ARGV[1]) * 1000
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current > until_ms then until_ms = current end
redis.call('SET', KEYS[1], tostring(until_ms), 'PX', math.ceil(until_ms - now) + 1)
return tostring(until_ms - now)
"""

# KEYS: pause. Returns ms left of the pause (0 when none).
_PAUSED_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local pause = tonumber(redis.call('GET', KEYS[1]) or '0')
if pause > now then return tostring(pause - now) end
return '0'
"""


class _Limits:
    """Rate arithmetic and key names shared by the sync and async limiters."""

    def __init__(self, rate: float, burst: int, name: str, prefix: str) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.burst = burst
        self.interval_ms = 1000.0 / rate
        # burst=1 means strictly evenly spaced grants: at most rate+1 in any one-second window.
        self.tolerance_ms = self.interval_ms * (burst - 1)
        keys = Keys(prefix)
        self.keys = [keys.ratelimit(name), keys.pause(name)]
        self.pause_key = keys.pause(name)


class RateLimiter(_Limits):
    """Synchronous global limiter (threads, scripts, benchmarks)."""

    def __init__(
        self, client: redis.Redis, *, rate: float, burst: int = 1, name: str = "partner",
        prefix: str = "onboard",
    ) -> None:
        super().__init__(rate, burst, name, prefix)
        self._acquire = client.register_script(_ACQUIRE_LUA)
        self._pause = client.register_script(_PAUSE_LUA)
        self._paused = client.register_script(_PAUSED_LUA)

    def try_acquire(self) -> tuple[bool, float]:
        """Reserve a slot: (True, seconds until it) or, while paused, (False, seconds left)."""
        granted, wait = self._acquire(
            keys=self.keys, args=[self.interval_ms, self.tolerance_ms, 1]
        )
        return bool(granted), float(wait) / 1000.0

    def acquire(self) -> float:
        """Block until this caller may send one request; returns the seconds waited."""
        waited = 0.0
        while True:
            granted, wait = self.try_acquire()
            if wait > 0:
                time.sleep(wait)
                waited += wait
            if granted:
                return waited

    def pause(self, seconds: float) -> None:
        """Make every worker hold off for ``seconds`` (e.g. a 429's Retry-After)."""
        self._pause(keys=[self.pause_key], args=[seconds])

    def paused_for(self) -> float:
        """Seconds left of a pause (0 when none)."""
        return float(self._paused(keys=[self.pause_key])) / 1000.0


class AsyncRateLimiter(_Limits):
    """The limiter for the per-customer flow: global rate in Redis, in-flight cap per process.

    Create it inside the event loop that uses it (its semaphore and lock belong to that loop).
    """

    def __init__(
        self, client: redis.asyncio.Redis, *, rate: float, burst: int = 1,
        max_in_flight: int = 100, max_batch: int = 10, name: str = "partner",
        prefix: str = "onboard",
    ) -> None:
        super().__init__(rate, burst, name, prefix)
        if max_in_flight < 1 or max_batch < 1:
            raise ValueError("max_in_flight and max_batch must be at least 1")
        self.max_in_flight = max_in_flight
        self.max_batch = max_batch
        # A batch spans at most BATCH_SPAN_MS: a late reservation answer shifts the whole
        # batch, so long batches would bunch with other processes' slots. At low rates a
        # round trip per slot costs nothing anyway; batching matters at high rates.
        self._span_slots = max(1, int(BATCH_SPAN_MS / self.interval_ms))
        self._sem = asyncio.Semaphore(max_in_flight)
        self._lock = asyncio.Lock()
        self._slots: collections.deque[float] = collections.deque()
        self._waiting = 0
        self.reservations = 0  # Redis round trips spent on slots (the benchmark shows them)
        # Holds no per-use state, so one object serves every caller (a generator-based
        # context manager per request costs more than the rest of the limiter's fast path).
        self._slot = _Slot(self)
        self._batcher = ScriptBatcher.of(client)
        self._acquire = client.register_script(_ACQUIRE_LUA)
        self._pause = client.register_script(_PAUSE_LUA)
        self._paused = client.register_script(_PAUSED_LUA)

    async def try_acquire(self, slots: int = 1) -> tuple[bool, float]:
        """Reserve ``slots`` consecutive slots: (True, seconds until the first) or, while
        paused, (False, seconds left)."""
        # Through the client's batcher: the reservation shares its round trip with the
        # store's per-row scripts of the same moment.
        granted, wait = await self._batcher.call(
            self._acquire, self.keys, [self.interval_ms, self.tolerance_ms, slots]
        )
        self.reservations += 1
        return bool(granted), float(wait) / 1000.0

    async def acquire(self) -> float:
        """Wait until this caller may send one request; returns the seconds waited."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._waiting += 1
        try:
            # One caller at a time takes a slot, so slots go out in order and a batch is
            # reserved for the callers queued here right now.
            if self._slots and not self._lock.locked():
                # A slot left from the last batch and nobody queued before us: take it.
                slot = self._slots.popleft()
            else:
                async with self._lock:
                    if not self._slots:
                        await self._reserve(loop)
                    slot = self._slots.popleft()
        finally:
            self._waiting -= 1
        delay = slot - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return loop.time() - started

    async def _reserve(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            count = min(self.max_batch, self._waiting, self._span_slots)
            granted, wait = await self.try_acquire(count)
            if granted:
                first = loop.time() + wait
                interval = self.interval_ms / 1000.0
                self._slots.extend(first + i * interval for i in range(count))
                return
            await asyncio.sleep(wait)

    def slot(self) -> _Slot:
        """One partner request (``async with limiter.slot():``): an in-flight place first,
        then a rate slot.

        The in-flight place comes first so no rate slot is reserved by a caller that could
        not send yet.
        """
        return self._slot

    async def pause(self, seconds: float) -> None:
        """Make every worker hold off for ``seconds`` (e.g. a 429's Retry-After)."""
        # Slots this process reserved earlier would otherwise still go out during the pause.
        self._slots.clear()
        await self._pause(keys=[self.pause_key], args=[seconds])

    async def paused_for(self) -> float:
        """Seconds left of a pause (0 when none)."""
        return float(await self._paused(keys=[self.pause_key])) / 1000.0


class _Slot:
    """The async context manager behind :meth:`AsyncRateLimiter.slot`."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: AsyncRateLimiter) -> None:
        self._limiter = limiter

    async def __aenter__(self) -> None:
        sem = self._limiter._sem
        await sem.acquire()
        try:
            await self._limiter.acquire()
        except BaseException:
            sem.release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter._sem.release()
