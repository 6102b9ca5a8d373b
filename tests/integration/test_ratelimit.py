"""The global rate limiter against a real Redis: shared rate across processes, pauses, cap."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time

import redis
import redis.asyncio
from support import poll_until

from workers.ratelimit import AsyncRateLimiter, RateLimiter

RATE = 50.0
RUN_SECONDS = 3.0
PREFIX = "t"


def _grants_in_process(url: str, until: float, acquirers: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Child process: many coroutines acquire until ``until`` (wall clock); report grant times."""

    async def main() -> list[float]:
        client = redis.asyncio.Redis.from_url(url)
        limiter = AsyncRateLimiter(client, rate=RATE, max_in_flight=acquirers, prefix=PREFIX)
        grants: list[float] = []

        async def acquirer() -> None:
            while True:
                async with limiter.slot():
                    now = time.time()
                    if now >= until:
                        return
                    grants.append(now)

        await asyncio.gather(*(acquirer() for _ in range(acquirers)))
        await client.aclose()
        return grants

    out.put(asyncio.run(main()))


def _peak_per_second(times: list[float]) -> int:
    """Most grants inside any one-second sliding window."""
    times = sorted(times)
    peak, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return peak


def test_rate_is_global_across_two_processes(redis_url: str) -> None:
    """Two processes × 20 acquirers for ~3 s at R=50/s: no 1-s window exceeds R + 10 %."""
    # fork: the children start in milliseconds; each builds its own Redis client.
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    until = time.time() + RUN_SECONDS
    procs = [
        ctx.Process(target=_grants_in_process, args=(redis_url, until, 20, out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    per_process = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0

    grants = [t for times in per_process for t in times]
    assert all(times for times in per_process), "each process got grants"
    assert _peak_per_second(grants) <= RATE * 1.1
    assert len(grants) >= RATE  # the limiter grants, it does not just block


def test_pause_holds_off_every_caller_until_it_ends(redis_url: str) -> None:
    """While one worker's 429 pause lasts, no one is granted; the grant comes after it."""
    sync = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(sync, rate=1000, prefix=PREFIX)
    other = RateLimiter(sync, rate=1000, prefix=PREFIX)
    assert limiter.try_acquire()[0]

    limiter.pause(0.3)
    granted, wait = other.try_acquire()
    assert not granted and 0 < wait <= 0.3
    assert other.paused_for() > 0
    other.acquire()
    assert other.paused_for() == 0

    limiter.pause(5)
    limiter.pause(0.1)  # a shorter Retry-After never shortens a longer pause
    assert limiter.paused_for() > 1
    sync.close()


def test_sync_grants_are_spaced_by_the_interval(redis_url: str) -> None:
    """Back-to-back reservations are told to wait one more interval each."""
    sync = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(sync, rate=10, prefix=PREFIX)
    waits = [limiter.try_acquire()[1] for _ in range(4)]
    # Each reservation is 100 ms after the previous one (minus the time between calls).
    for earlier, later in itertools.pairwise(waits):
        assert 0 < later - earlier <= 0.1 + 1e-6
    assert waits[0] == 0 and waits[-1] > 0.2
    sync.close()


def test_in_flight_cap_is_enforced_per_process(redis_url: str) -> None:
    """With max_in_flight=3, at most three of ten callers are inside a slot at once."""

    async def scenario() -> tuple[int, int]:
        client = redis.asyncio.Redis.from_url(redis_url)
        limiter = AsyncRateLimiter(client, rate=10_000, max_in_flight=3, prefix=PREFIX)
        release = asyncio.Event()
        active = peak = finished = 0

        async def caller() -> None:
            nonlocal active, peak, finished
            async with limiter.slot():
                active += 1
                peak = max(peak, active)
                await release.wait()
                active -= 1
            finished += 1

        tasks = [asyncio.create_task(caller()) for _ in range(10)]
        # Polled in a thread: the event loop must go on running the callers meanwhile.
        await asyncio.to_thread(
            poll_until, lambda: active >= 3, 5, "three callers inside a slot", interval=0.01
        )
        for _ in range(20):  # give the others every chance to (wrongly) enter
            await asyncio.sleep(0)
        held = active
        release.set()
        await asyncio.gather(*tasks)
        await client.aclose()
        return held, peak if finished == 10 else -1

    held, peak = asyncio.run(scenario())
    assert held == 3
    assert peak == 3


def test_waiting_callers_share_one_reservation_round_trip(redis_url: str) -> None:
    """40 callers queued at once get their slots in a handful of Redis round trips."""

    async def scenario() -> tuple[int, int]:
        client = redis.asyncio.Redis.from_url(redis_url)
        limiter = AsyncRateLimiter(
            client, rate=2000, max_in_flight=40, max_batch=10, prefix=PREFIX
        )
        granted = 0

        async def caller() -> None:
            nonlocal granted
            async with limiter.slot():
                granted += 1

        await asyncio.gather(*(caller() for _ in range(40)))
        await client.aclose()
        return granted, limiter.reservations

    granted, reservations = asyncio.run(scenario())
    assert granted == 40
    assert reservations <= 8
