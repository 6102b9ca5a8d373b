"""A Redis nobody answers on is a server error for the user, not a traceback: one line that
names the server (never its password) and exit code 2, from every command that needs it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data" / "customers.csv"


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _onboard(*args: str, redis_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("onboard", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "pipeline.cli"]
    env = {**os.environ, "ONBOARD_REDIS_URL": redis_url}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [("status",), ("status", "2026-01-01-0000-abcdef"), ("report", "2026-01-01-0000-abcdef"),
     ("submit", str(SAMPLE)), ("recover", "2026-01-01-0000-abcdef")],
    ids=["status", "status-batch", "report", "submit", "recover"],
)
def test_unreachable_redis_is_one_line_exit_2(args: tuple[str, ...], tmp_path: Path) -> None:
    """Each command reports the refused connection with the host and port, exit 2, no
    traceback, and the password in the URL appears nowhere in the output."""
    port = _closed_port()
    done = _onboard(*args, redis_url=f"redis://:hunter2-secret@127.0.0.1:{port}/0",
                    cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: Redis: ") and f"127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
