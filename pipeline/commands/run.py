"""``onboard run``, ``submit``, ``worker``, ``status`` and ``report`` as plain functions.

Each returns an exit code (and what to print) instead of exiting, so the CLI stays a thin
shell and tests can call them: 0 every row ``onboarded``/``already_exists``; 1 the batch
finished with other outcomes (or is not complete); 2 the file, an option or the settings
cannot be used, with a one-line message.

Embedded default: without ``ONBOARD_REDIS_URL``, ``run`` starts a private Redis on a unix
socket in the state directory (persistent, so the ledger serves later reruns) and a real
in-process Celery worker, and stops both at the end. ``--sandbox`` starts the partner
sandbox on a free loopback port and points the partner settings at it; since only this
process knows that address, a ``--sandbox`` run always has its own in-process worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from pipeline.commands.validate import UnusableInput, _settings_error
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from celery import Celery
    from rich.console import Console

    from workers.state import BatchStore

EXIT_DONE = 0
EXIT_OTHER = 1
EXIT_UNUSABLE = 2
# Chunks in progress at once in the in-process worker of ``run`` (rows of each chunk run
# concurrently on top of that).
DEFAULT_CHUNKS_IN_PROGRESS = 4


@dataclass(slots=True)
class RunResult:
    """Exit code, the summary (None when unusable), a one-line error, the files written."""

    exit_code: int
    summary: dict[str, Any] | None = None
    error: str | None = None
    reports: list[Path] = field(default_factory=list)
    batch_id: str | None = None


def load_settings() -> Settings:
    """Settings from the environment and ``.env``; a bad one is a one-line UnusableInput."""
    try:
        return Settings()
    except ValidationError as exc:
        raise UnusableInput(_settings_error(exc)) from None


def _check_timing(settings: Settings) -> None:
    from workers.app import ConfigError, check_timing

    try:
        check_timing(settings)
    except ConfigError as exc:
        raise UnusableInput(str(exc)) from None


def _with_sandbox(settings: Settings, base_url: str) -> Settings:
    """The settings pointed at a sandbox with its default credentials."""
    from sandbox.testing import CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME

    partner = settings.partner.model_copy(update={
        "base_url": base_url, "client_id": CLIENT_ID,
        "client_secret": SecretStr(CLIENT_SECRET), "username": USERNAME,
        "password": SecretStr(PASSWORD), "scope": settings.partner.scope or "sandbox",
        "verify_tls": False, "state_scope": "local-sandbox",
    })
    return settings.model_copy(update={"partner": partner})


@dataclass(slots=True)
class _Redis:
    redis_url: str
    broker_url: str
    embedded: bool


@contextlib.contextmanager
def _redis(settings: Settings) -> Iterator[_Redis]:
    """The configured Redis, or the embedded one on the state directory."""
    if settings.redis_url:
        yield _Redis(settings.redis_url, settings.redis_url, embedded=False)
        return
    from workers.embedded import EmbeddedRedisError, embedded_redis

    p = settings.pipeline
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(embedded_redis(p.state_dir, persist=p.embedded_persist))
        except (EmbeddedRedisError, OSError) as exc:
            raise UnusableInput(f"embedded Redis: {exc}") from None
        yield _Redis(server.redis_url, server.broker_url, embedded=True)


def require_partner(settings: Settings, sandbox: bool) -> None:
    """A real (non-sandbox) run needs the partner credentials: name every missing one."""
    if not sandbox and (missing := settings.partner.missing()):
        raise UnusableInput(
            f"missing partner settings: {', '.join(missing)} (set them, or use --sandbox)"
        )


@dataclass(slots=True)
class PipelineEnv:
    """What a command that sends rows works with: the settings (pointed at the sandbox with
    ``--sandbox``), the Celery app, the batch store and the Redis they live on."""

    settings: Settings
    app: Celery
    store: BatchStore
    redis: _Redis
    sandbox: bool
    _stack: contextlib.ExitStack[bool | None]

    @property
    def local(self) -> bool:
        """Only this process can work the queue: embedded Redis, or a sandbox only it knows."""
        return self.redis.embedded or self.sandbox

    def start_worker(self, concurrency: int = DEFAULT_CHUNKS_IN_PROGRESS) -> None:
        """A real in-process Celery worker (threads pool) until the environment closes."""
        from workers.embedded import in_process_worker

        self._stack.enter_context(
            in_process_worker(self.app, pool="threads", concurrency=concurrency)
        )


@contextlib.contextmanager
def open_pipeline(settings: Settings, *, sandbox: bool = False) -> Iterator[PipelineEnv]:
    """Check the settings, start the sandbox (``sandbox``) and the Redis (configured or
    embedded), make the worker app and the store; close all of them, in reverse, on exit.

    Shared by ``run``, ``rerun`` and ``watch`` so the three start the same way.
    """
    from workers.tasks import close_runtime, make_worker_app

    require_partner(settings, sandbox)
    _check_timing(settings)
    with contextlib.ExitStack() as stack:
        if sandbox:
            from sandbox.testing import run_sandbox

            handle = stack.enter_context(run_sandbox())
            stack.callback(handle.close)
            settings = _with_sandbox(settings, handle.base_url)
        info = stack.enter_context(_redis(settings))
        app = make_worker_app(settings, broker_url=info.broker_url, redis_url=info.redis_url)
        stack.callback(close_runtime, app)
        store = _store(info.redis_url, settings)
        stack.callback(store.close)
        yield PipelineEnv(settings, app, store, info, sandbox, stack)


def _store(redis_url: str, settings: Settings) -> BatchStore:
    import redis

    from workers.state import BatchStore

    p = settings.pipeline
    return BatchStore(
        redis.Redis.from_url(redis_url), ttl_seconds=p.state_ttl_seconds, prefix=p.key_prefix
    )


def run_file(
    path: Path,
    *,
    sandbox: bool = False,
    out_dir: Path = Path("reports"),
    column_map: Path | None = None,
    master_data_dir: Path | None = None,
    sheet: str | None = None,
    settings: Settings | None = None,
    console: Console | None = None,
    concurrency: int = DEFAULT_CHUNKS_IN_PROGRESS,
    timeout: float | None = None,
    worker: bool | None = None,
) -> RunResult:
    """Validate, open a batch, enqueue, follow to the end, write the report.

    ``worker``: run an in-process worker (default: when the Redis is embedded or
    ``sandbox`` is set; otherwise workers elsewhere consume the batch).
    """
    try:
        return _run_file(
            Path(path), sandbox=sandbox, out_dir=Path(out_dir), column_map=column_map,
            master_data_dir=master_data_dir, sheet=sheet, settings=settings, console=console,
            concurrency=concurrency, timeout=timeout, worker=worker,
        )
    except UnusableInput as exc:
        return RunResult(EXIT_UNUSABLE, error=str(exc))


def _run_file(
    path: Path, *, sandbox: bool, out_dir: Path, column_map: Path | None,
    master_data_dir: Path | None, sheet: str | None, settings: Settings | None,
    console: Console | None, concurrency: int, timeout: float | None, worker: bool | None,
) -> RunResult:
    settings = settings or load_settings()
    if out_dir.exists() and not out_dir.is_dir():
        raise UnusableInput(f"{out_dir}: --out must be a directory, this is a file")
    if not path.is_file():
        raise UnusableInput(f"{path}: no such file")
    with open_pipeline(settings, sandbox=sandbox) as env:
        if worker or (worker is None and env.local):
            env.start_worker(concurrency)
        sub = _submit(
            path, env.app, env.store, env.settings, column_map, master_data_dir, sheet
        )
        return follow_and_report(env, sub.batch_id, out_dir, console=console, timeout=timeout)


def follow_and_report(
    env: PipelineEnv, batch_id: str, out_dir: Path, *, console: Console | None = None,
    timeout: float | None = None,
) -> RunResult:
    """Follow ``batch_id`` to the end (or ``timeout``) and write its report.

    Exit code 0 every row done, 1 otherwise; past the timeout the report is still written
    (a partial one that says so) with the timeout as the error.
    """
    from pipeline.batch.follow import follow
    from pipeline.batch.recover import StallWatch, recover_batch
    from pipeline.batch.report import write_batch_report

    # Rows whose message was lost (a SIGKILLed worker) are sent again once the batch stalls.
    stall = StallWatch(
        env.store, batch_id,
        lambda: recover_batch(env.store, env.app, env.settings, batch_id),
        queue=env.settings.pipeline.queue,
        stall_seconds=env.settings.pipeline.recover_stall_seconds,
    )
    error: str | None = None
    try:
        follow(env.store, batch_id, console=console, timeout=timeout, check=stall)
    except TimeoutError as exc:
        error = str(exc)
    report = write_batch_report(env.store, batch_id, out_dir, settings=env.settings)
    code = EXIT_DONE if report.all_done and error is None else EXIT_OTHER
    return RunResult(code, report.summary, error, report.paths, batch_id)


def _submit(
    path: Path, app: Any, store: BatchStore, settings: Settings, column_map: Path | None,
    master_data_dir: Path | None, sheet: str | None,
) -> Any:
    from pipeline.batch.submit import submit_file

    return submit_file(
        path, app=app, store=store, settings=settings, column_map=column_map,
        master_data_dir=master_data_dir, sheet=sheet,
    )


def _require_redis(settings: Settings, command: str) -> str:
    if not settings.redis_url:
        raise UnusableInput(
            f"onboard {command} needs a shared Redis: set ONBOARD_REDIS_URL "
            "(or use onboard run, which starts its own)"
        )
    return settings.redis_url


def _shared_app(settings: Settings, command: str) -> tuple[str, Celery]:
    """The shared Redis's URL and the worker app on it, for ``submit`` and ``worker``."""
    from workers.tasks import make_worker_app

    url = _require_redis(settings, command)
    _check_timing(settings)
    return url, make_worker_app(settings, broker_url=url, redis_url=url)


def submit_only(
    path: Path, *, column_map: Path | None = None, master_data_dir: Path | None = None,
    sheet: str | None = None, settings: Settings | None = None,
) -> RunResult:
    """Validate and enqueue ``path`` on the shared Redis; return with the batch id."""
    try:
        settings = settings or load_settings()
        url, app = _shared_app(settings, "submit")
        if not Path(path).is_file():
            raise UnusableInput(f"{path}: no such file")
        store = _store(url, settings)
        try:
            sub = _submit(Path(path), app, store, settings, column_map, master_data_dir, sheet)
        finally:
            store.close()
    except UnusableInput as exc:
        return RunResult(EXIT_UNUSABLE, error=str(exc))
    summary = {"batch_id": sub.batch_id, "rows": sub.rows, "valid": sub.valid,
               "invalid": sub.invalid, "messages": sub.messages}
    return RunResult(EXIT_DONE, summary, batch_id=sub.batch_id)


def run_worker(concurrency: int, *, settings: Settings | None = None) -> int:
    """Run a Celery worker (threads pool, ``concurrency`` chunks in progress) until stopped."""
    import os

    from workers.tasks import close_runtime

    settings = settings or load_settings()
    _, app = _shared_app(settings, "worker")
    try:
        app.worker_main([
            "worker", "--pool=threads", f"--concurrency={concurrency}",
            f"--queues={settings.pipeline.queue}", f"--hostname=onboard-{os.getpid()}@%h",
            "--loglevel=WARNING", "--without-gossip", "--without-mingle",
            "--without-heartbeat",
        ])
    finally:
        close_runtime(app)
    return EXIT_DONE


@contextlib.contextmanager
def open_store(settings: Settings) -> Iterator[BatchStore]:
    """The batch store on the configured Redis, else on the embedded one's state directory
    (so ``status`` and ``report`` work after an embedded ``run``)."""
    with _redis(settings) as info:
        store = _store(info.redis_url, settings)
        try:
            yield store
        finally:
            store.close()


def report_batch(
    batch_id: str, *, out_dir: Path = Path("reports"), settings: Settings | None = None,
    merged: bool = False,
) -> RunResult:
    """Write the report of a batch, complete or not; ``merged``: with its reruns folded in
    (``<out>/<batch>/merged.csv``)."""
    from pipeline.batch.report import write_batch_report

    try:
        settings = settings or load_settings()
        with open_store(settings) as store:
            if merged:
                from pipeline.batch.rerun import MERGED_NAME, MERGED_SUMMARY, find_reruns

                report = write_batch_report(
                    store, batch_id, Path(out_dir), settings=settings,
                    merge=find_reruns(store, batch_id), name=MERGED_NAME,
                    summary_name=MERGED_SUMMARY,
                )
            else:
                report = write_batch_report(store, batch_id, Path(out_dir), settings=settings)
    except UnusableInput as exc:
        return RunResult(EXIT_UNUSABLE, error=str(exc))
    code = EXIT_DONE if report.all_done else EXIT_OTHER
    return RunResult(code, report.summary, None, report.paths, batch_id)
