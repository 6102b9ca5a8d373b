"""A Redis keyspace of one test's own: a database nobody flushes and a unique key prefix.

Importable as ``keyspace`` (``tests/conftest.py`` puts this directory on ``sys.path``); the
``isolated_redis`` fixture yields an :class:`IsolatedRedis`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import redis

# Never flushed by any fixture: tests here live under a prefix of their own.
ISOLATED_DB = 12


@dataclass(frozen=True, slots=True)
class IsolatedRedis:
    """A Redis URL and a key prefix that only one test uses (the prefix is also the queue)."""

    url: str
    prefix: str

    def env(self) -> dict[str, str]:
        """``ONBOARD_*`` variables pointing a subprocess at this keyspace and queue."""
        return {
            "ONBOARD_REDIS_URL": self.url,
            "ONBOARD_PIPELINE__KEY_PREFIX": self.prefix,
            "ONBOARD_PIPELINE__QUEUE": self.prefix,
        }


@contextlib.contextmanager
def isolated_keyspace(redis_base_url: str, db: int = ISOLATED_DB) -> Iterator[IsolatedRedis]:
    """A fresh prefix on ``db``; every key under it (and its queue binding) deleted after."""
    where = IsolatedRedis(f"{redis_base_url}/{db}", f"i{uuid.uuid4().hex[:12]}")
    try:
        yield where
    finally:
        client = redis.Redis.from_url(where.url)
        try:
            for key in client.scan_iter(match=f"{where.prefix}*", count=1000):
                client.delete(key)
            # kombu's queue bindings live outside the prefix (names vary by kombu version).
            client.delete(
                f"_kombu.binding.{where.prefix}", f"_kombu.binding_permanent.{where.prefix}"
            )
            client.zrem("_kombu.binding_deadlines", where.prefix)
        finally:
            client.close()
