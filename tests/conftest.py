"""Shared fixtures: a real Redis server (never a fake) on a dedicated database per test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

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
