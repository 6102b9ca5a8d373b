"""ScriptBatcher on a real Redis: concurrent script calls share round trips, answers stay apart.

The store's per-row scripts and the rate limiter's reservations go through it under load, so
each caller must still get its own answer or its own error, and a script the server has not
seen yet must load itself.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from workers.state import ScriptBatcher

ECHO = "return {KEYS[1], ARGV[1]}"
FAIL_ON_BOOM = "if ARGV[1] == 'boom' then return redis.error_reply('boom') end return ARGV[1]"


def run(work: Any, redis_url: str) -> Any:
    """Run ``work(client)`` on a fresh loop and client."""

    async def main() -> Any:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_concurrent_calls_share_round_trips_and_keep_their_answers(redis_url: str) -> None:
    """100 concurrent calls each get their own answer, in far fewer than 100 round trips."""

    async def work(client: redis.asyncio.Redis) -> tuple[list[Any], int]:
        batcher = ScriptBatcher.of(client)
        script = client.register_script(ECHO)
        answers = await asyncio.gather(
            *(batcher.call(script, [f"k{i}"], [i]) for i in range(100))
        )
        return answers, batcher.round_trips

    answers, round_trips = run(work, redis_url)
    assert answers == [[f"k{i}".encode(), str(i).encode()] for i in range(100)]
    assert round_trips <= 10


def test_one_failing_call_does_not_fail_the_others(redis_url: str) -> None:
    """A script error reaches only its own caller; the rest of the pipeline answers normally."""

    async def work(client: redis.asyncio.Redis) -> list[Any]:
        batcher = ScriptBatcher.of(client)
        script = client.register_script(FAIL_ON_BOOM)
        return list(await asyncio.gather(
            *(batcher.call(script, ["k"], [v]) for v in ("a", "boom", "c")),
            return_exceptions=True,
        ))

    first, failed, last = run(work, redis_url)
    assert (first, last) == (b"a", b"c")
    assert isinstance(failed, ResponseError) and "boom" in str(failed)


def test_a_script_unknown_to_the_server_loads_itself(redis_url: str) -> None:
    """A script the server never saw: every queued call still runs (NOSCRIPT → load)."""

    async def work(client: redis.asyncio.Redis) -> list[Any]:
        # A fresh comment gives a SHA the server cannot know (no SCRIPT FLUSH on a shared
        # server).
        script = client.register_script(f"{ECHO} -- {uuid.uuid4().hex}")
        batcher = ScriptBatcher.of(client)
        return list(await asyncio.gather(*(batcher.call(script, ["k"], [i]) for i in range(5))))

    assert run(work, redis_url) == [[b"k", str(i).encode()] for i in range(5)]


def test_the_store_and_the_limiter_of_one_client_share_one_batcher(redis_url: str) -> None:
    """``of`` hands every user of a client the same batcher, and another client its own."""

    async def work(client: redis.asyncio.Redis) -> None:
        other = redis.asyncio.Redis.from_url(redis_url)
        try:
            assert ScriptBatcher.of(client) is ScriptBatcher.of(client)
            assert ScriptBatcher.of(other) is not ScriptBatcher.of(client)
        finally:
            await other.aclose()

    run(work, redis_url)


def test_a_lost_connection_fails_every_call_of_the_pipeline() -> None:
    """No Redis behind the client: each waiting caller gets the connection error, none hangs."""
    calls = 3

    async def work() -> list[Any]:
        # No retries: the error, not redis-py's reconnect backoff, is what is tested.
        client = redis.asyncio.Redis(
            host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        try:
            script = client.register_script(ECHO)
            batcher = ScriptBatcher.of(client)
            return list(await asyncio.wait_for(asyncio.gather(
                *(batcher.call(script, ["k"], [i]) for i in range(calls)),
                return_exceptions=True,
            ), timeout=10))
        finally:
            await client.aclose()

    results = asyncio.run(work())
    assert len(results) == calls
    assert all(isinstance(r, redis.exceptions.ConnectionError) for r in results)
