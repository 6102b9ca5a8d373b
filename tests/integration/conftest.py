"""Fixtures the integration tests share (helpers in ``tests/support.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import copy_sample, private_keyspace

from sandbox.testing import SandboxHandle, run_sandbox


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxHandle]:
    """One sandbox server (default knobs) for the module; its tests reset it themselves."""
    with run_sandbox() as handle:
        yield handle


@pytest.fixture()
def pipeline_redis(redis_base_url: str) -> Iterator[tuple[str, str]]:
    """A Redis URL on database 14 and a fresh key prefix (also the queue name) for this test
    alone; its keys are deleted afterwards."""
    with private_keyspace(redis_base_url, 14, "t") as where:
        yield where


@pytest.fixture()
def private_redis(redis_base_url: str) -> Iterator[tuple[str, str]]:
    """A Redis URL on database 13 and a fresh key prefix (also the queue name) for this test
    alone; its keys are deleted afterwards."""
    with private_keyspace(redis_base_url, 13, "n") as where:
        yield where


@pytest.fixture()
def sample(tmp_path: Path) -> Path:
    """A private copy of the sample file and its document scans."""
    return copy_sample(tmp_path)
