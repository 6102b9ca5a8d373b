"""``run_sandbox``: a real sandbox server in a subprocess, with its default credentials.

``onboard run --sandbox`` uses it as much as the tests and benchmarks do, so it lives here
rather than in :mod:`sandbox.testing` (which holds the tests' synthetic inputs and which
production code never imports).

The child binds a free loopback port itself and announces it in a file, so two test runs
can never race for a port; the parent polls the admin endpoint until it answers (with a
deadline) and always stops the child, killing it if it does not stop in time.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError

from pipeline.core.errors import OnboardError
from sandbox.app import LOOKUP_PATH, ONBOARD_PATH, STATUS_PATH, TOKEN_PATH
from sandbox.cli import describe, knobs_to_argv
from sandbox.config import SandboxConfig

# Default credentials of the sandbox, as accepted by a fresh server.
CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"  # noqa: S105
USERNAME = "sandbox-user"
PASSWORD = "sandbox-pass"  # noqa: S105
PATHS = {"token": TOKEN_PATH, "lookup": LOOKUP_PATH, "onboard": ONBOARD_PATH, "status": STATUS_PATH}

_ROOT = Path(__file__).resolve().parent.parent
_POLL_S = 0.02


def password_form(scope: str = "sandbox") -> dict[str, str]:
    """The token endpoint's password-grant form with the default credentials."""
    return {
        "grant_type": "password",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "username": USERNAME,
        "password": PASSWORD,
        "scope": scope,
    }


class SandboxError(OnboardError):
    """The sandbox did not start, or an admin call failed; carries the server's stderr."""


class SandboxHandle:
    """A running sandbox: its base URL and its admin calls (synchronous httpx)."""

    def __init__(self, base_url: str, process: subprocess.Popen[bytes]) -> None:
        self.base_url = base_url
        self.process = process
        self._admin = httpx.Client(base_url=base_url, timeout=10.0)

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._admin.request(method, path, json=json)
        if response.status_code != 200:
            raise SandboxError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def stats(self) -> dict[str, Any]:
        """The counters of ``GET /_sandbox/stats``."""
        result: dict[str, Any] = self._call("GET", "/_sandbox/stats")
        return result

    def reset(self) -> None:
        """Clear customers, counters and fired once-scenarios (config and tokens stay)."""
        self._call("POST", "/_sandbox/reset")

    def revoke_tokens(self) -> None:
        """Revoke every access and refresh token."""
        self._call("POST", "/_sandbox/revoke")

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at run time; returns the whole new configuration (secrets masked)."""
        result: dict[str, Any] = self._call("POST", "/_sandbox/config", json=_jsonable(knobs))
        return result

    def config(self) -> dict[str, Any]:
        """The running configuration (secrets masked)."""
        result: dict[str, Any] = self._call("GET", "/_sandbox/config")
        return result

    def password_grant(self, scope: str = "sandbox") -> dict[str, Any]:
        """Fetch a token with the default credentials; returns the token endpoint's body."""
        response = self._admin.post(TOKEN_PATH, data=password_form(scope))
        if response.status_code != 200:
            raise SandboxError(f"password grant: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def close(self) -> None:
        """Close the admin client."""
        self._admin.close()


def _jsonable(knobs: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return str(value) if isinstance(value, Path) else value

    return {name: plain(value) for name, value in knobs.items()}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/_sandbox/stats", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _stderr_text(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(encoding="utf-8", errors="replace")[-4000:]
    return ""


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextlib.contextmanager
def run_sandbox(startup_timeout: float = 30.0, **knobs: Any) -> Iterator[SandboxHandle]:
    """Run a sandbox in a subprocess with ``knobs`` (any ``SandboxConfig`` field).

    Yields a ``SandboxHandle`` once the server answers; stops the server on exit. Raises
    SandboxError with the server's stderr when it does not come up within
    ``startup_timeout`` seconds, and ValueError for an unknown or invalid knob.
    """
    try:
        SandboxConfig.model_validate(knobs)
    except ValidationError as exc:
        raise ValueError(f"bad sandbox knob: {describe(exc)}") from None
    workdir = Path(tempfile.mkdtemp(prefix="onboard-sandbox-"))
    port_file = workdir / "port"
    log_path = workdir / "stderr.log"
    command = [
        sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", "0",
        "--port-file", str(port_file), "--exit-with-parent", *knobs_to_argv(knobs),
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    handle: SandboxHandle | None = None
    try:
        base_url = _wait_until_up(process, port_file, log_path, startup_timeout)
        handle = SandboxHandle(base_url, process)
        yield handle
    finally:
        if handle is not None:
            handle.close()
        _stop(process)
        for path in (port_file, log_path):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            workdir.rmdir()


def _wait_until_up(
    process: subprocess.Popen[bytes], port_file: Path, log_path: Path, timeout: float
) -> str:
    deadline = time.monotonic() + timeout
    base_url: str | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SandboxError(
                f"sandbox exited with code {process.returncode}:\n{_stderr_text(log_path)}"
            )
        if base_url is None and port_file.is_file():
            base_url = f"http://127.0.0.1:{port_file.read_text(encoding='ascii').strip()}"
        if base_url is not None and _answers(base_url):
            return base_url
        # Polling interval while waiting for the child's condition, bounded by the deadline.
        time.sleep(_POLL_S)
    raise SandboxError(f"sandbox did not answer within {timeout} s:\n{_stderr_text(log_path)}")
