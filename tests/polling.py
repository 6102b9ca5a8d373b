"""The tests' one way to wait for something to happen: poll with a deadline.

Its own module (stdlib only) so that the Redis finder in ``redis_server`` can use it
without loading the application, which ``support`` imports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    predicate: Callable[[], T], timeout: float, what: str, *, interval: float = 0.05
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and
    return that value; after ``timeout`` seconds fail with an AssertionError naming ``what``
    and the last value seen.

    The one way the tests wait for something to happen: no sleep stands in for it. The
    predicate is always called at least once, and once more when the deadline has passed.
    From async code, run it in a thread (``await asyncio.to_thread(poll_until, ...)``) so the
    event loop keeps running the work being waited for.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; last value: {value!r}"
            )
        time.sleep(interval)
