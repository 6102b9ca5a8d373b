"""Shared fixtures: a real Redis server (never a fake) on a dedicated database per test.

Two ways to get a clean Redis:

- ``redis_url``: database 15, flushed before and after the test. Simple, but a flush is global:
  it also wipes whatever a *concurrent* test run (another engineer, another CI job on the
  same Redis) keeps there, so it suits tests that only touch Redis from their own process
  and finish quickly.
- ``isolated_redis``: database 12, which nobody flushes, and a key prefix (also the Celery
  queue name) of this test's own; only its keys are deleted afterwards. Tests whose worker
  or watcher subprocesses keep state in Redis while they run use this one: a flush of
  database 15 by someone else's test once wiped the claims and markers of a running batch.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from keyspace import IsolatedRedis, isolated_keyspace
from redis_server import test_redis

# Database 15 is ours: flushed around each test so tests never see each other's keys and
# never touch data in the machine's default database 0.
TEST_DB = 15


@pytest.fixture(scope="session")
def redis_base_url() -> Iterator[str]:
    """Base URL of a real Redis server for the whole session."""
    with test_redis() as url:
        yield url


@pytest.fixture()
def redis_url(redis_base_url: str) -> Iterator[str]:
    """URL of a flushed dedicated database; flushed again afterwards."""
    url = f"{redis_base_url}/{TEST_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture()
def isolated_redis(redis_base_url: str) -> Iterator[IsolatedRedis]:
    """A keyspace of this test alone on a database nobody flushes; its keys go afterwards."""
    with isolated_keyspace(redis_base_url) as where:
        yield where
