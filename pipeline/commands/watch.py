"""``onboard watch DIR``: the drop-folder watcher wired to the real pipeline.

It sets up Redis (the configured one, or the embedded one with an in-process worker, as
``onboard run`` does) and runs the watcher with :class:`~pipeline.batch.runner.PipelineRunner`
until SIGTERM/SIGINT.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from pipeline.batch.runner import PipelineRunner
from pipeline.commands.setup import (
    DEFAULT_CHUNKS_IN_PROGRESS,
    command,
    load_settings,
    open_pipeline,
)
from pipeline.core.errors import ExitCode, UserError, setting_error
from pipeline.core.results import CommandResult
from pipeline.core.settings import Settings
from pipeline.dropfolder.layout import Layout
from pipeline.dropfolder.watcher import Job, Watcher, WatchSettings


def describe_job(job: Job) -> str:
    """One plain line about a finished job, for the console."""
    if job.status == "done":
        where = ", ".join(p.name for p in job.reports)
        return f"done: {job.path.name} -> outbox/{where}"
    if job.status == "failed":
        where = job.result.name if job.result is not None else job.path.name
        return f"failed: failed/{where} ({job.error})"
    if job.status == "retry":
        return f"will retry: {job.path.name}: {job.error}"
    return f"stopped: {job.path.name} (resumed on the next start)"


@command
def watch_folder(
    folder: Path,
    *,
    once: bool = False,
    sandbox: bool = False,
    column_map: Path | None = None,
    master_data_dir: Path | None = None,
    sheet: str | None = None,
    concurrency: int = DEFAULT_CHUNKS_IN_PROGRESS,
    settings: Settings | None = None,
    watch_settings: WatchSettings | None = None,
    echo: Callable[[str], None] = print,
) -> CommandResult:
    """Watch ``folder`` until stopped (or, with ``once``, until the inbox is worked off)."""
    folder = Path(folder)
    # The folder first: a mistyped path is reported before any Redis or worker starts.
    Layout(folder).create()
    settings = settings or load_settings()
    try:
        watch_settings = watch_settings or WatchSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise setting_error(first["loc"], first["msg"], prefix="ONBOARD_WATCH__") from None
    for option, value in (("--column-map", column_map), ("--master-data", master_data_dir)):
        if value is not None and not value.exists():
            raise UserError(f"{value}: {option} not found")
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(open_pipeline(settings, sandbox=sandbox))
        if env.local:
            env.start_worker(concurrency)
        runner = PipelineRunner(
            app=env.app, store=env.store, settings=env.settings,
            column_map=column_map.resolve() if column_map else None,
            master_data_dir=master_data_dir.resolve() if master_data_dir else None,
            sheet=sheet, poll_seconds=watch_settings.completion_poll_seconds,
            documents_dir=(watch_settings.documents_dir or Layout(folder).documents).resolve(),
        )
        watcher = stack.enter_context(
            Watcher(folder, runner, watch_settings, on_finish=lambda job: echo(describe_job(job)))
        )
        with _stop_on_signals(watcher.stop_event):
            echo(f"watching {watcher.layout.inbox}")
            if once:
                watcher.run_until_idle()
            else:
                watcher.run()
    return CommandResult(ExitCode.DONE)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (a clean stop; running batches resume next start)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
