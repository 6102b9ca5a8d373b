"""The drop-folder watcher wired to the real pipeline: ``onboard watch DIR``.

:class:`PipelineRunner` is the :class:`~pipeline.dropfolder.watcher.BatchRunner` over the queue:
``pipeline.batch.submit.submit_file`` to validate and enqueue (with the batch id the watcher
wrote to the sidecar beforehand), the store's counters for completion, ``write_batch_report``
for the report. :func:`watch_folder` sets up Redis (the configured one, or the embedded one with an
in-process worker, as ``onboard run`` does) and runs the watcher until SIGTERM/SIGINT.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pydantic import ValidationError

from pipeline.commands.validate import UnusableInput
from pipeline.core.settings import Settings
from pipeline.dropfolder.layout import DropFolderError, Layout
from pipeline.dropfolder.watcher import Job, UnusableFile, Watcher, WatchSettings

if TYPE_CHECKING:
    from celery import Celery

    from workers.state import BatchStore

EXIT_OK = 0
EXIT_UNUSABLE = 2


class PipelineRunner:
    """Runs a drop-folder file as one pipeline batch.

    See :class:`~pipeline.dropfolder.watcher.BatchRunner`.

    Resuming: ``submit`` for a batch whose whole file was already enqueued does nothing; for
    one whose enqueueing was cut short it continues the enqueue (``submit_file(resume=
    True)``): the messages the batch's cursor counts as sent are not sent again, so no row
    is worked on twice at once. A batch Redis no longer knows is submitted afresh under the
    same id; rows that already have an outcome keep it and the ledger and the fenced create
    claim keep any customer from being created twice.
    """

    def __init__(
        self,
        *,
        app: Celery,
        store: BatchStore,
        settings: Settings,
        column_map: Path | None = None,
        master_data_dir: Path | None = None,
        sheet: str | None = None,
        poll_seconds: float = 0.5,
        documents_dir: Path | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.settings = settings
        self.column_map = column_map
        self.master_data_dir = master_data_dir
        self.sheet = sheet
        self.poll_seconds = poll_seconds
        # ID scan paths resolve here, not next to the file in processing/.
        self.documents_dir = documents_dir

    def open_batch(self, path: Path) -> str:
        """A fresh batch id; the batch itself is created by ``submit``."""
        from pipeline.batch.submit import new_batch_id

        return new_batch_id()

    def submit(self, batch_id: str, path: Path) -> None:
        """Validate and enqueue ``path`` as ``batch_id`` unless that already happened."""
        from pipeline.batch.submit import submit_file

        state = self.store.batch_state(batch_id)
        if state is not None and state.enqueue_done:
            return
        try:
            submit_file(
                path, app=self.app, store=self.store, settings=self.settings,
                column_map=self.column_map, master_data_dir=self.master_data_dir,
                sheet=self.sheet, batch_id=batch_id, resume=state is not None,
                documents_dir=self.documents_dir,
            )
        except UnusableInput as exc:
            raise UnusableFile(_without_folder(str(exc), path)) from None

    def wait(self, batch_id: str, stop: threading.Event) -> bool:
        """Poll the store's counters until the batch is complete or ``stop`` is set."""

        while True:
            state = self.store.batch_state(batch_id)
            if state is None:
                # Redis lost the batch (flushed, expired): the watcher retries, and submit
                # then starts the batch again under the same id.
                raise LookupError(f"batch {batch_id}: unknown to Redis")
            if state.complete:
                return True
            if stop.wait(self.poll_seconds):
                return False

    def write_report(self, batch_id: str, path: Path, out_dir: Path) -> Sequence[Path]:
        """Write the batch report (csv, xlsx for small files, summary.json) under ``out_dir``."""
        from pipeline.batch.report import write_batch_report

        try:
            report = write_batch_report(self.store, batch_id, out_dir, settings=self.settings)
        except UnusableInput as exc:
            raise UnusableFile(_without_folder(str(exc), path)) from None
        return report.paths


def _without_folder(message: str, path: Path) -> str:
    """The message with the file's processing/ path shortened to its name."""
    for form in {str(path.resolve()), str(path)}:
        message = message.replace(form, path.name)
    return message


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


def watch_folder(
    folder: Path,
    *,
    once: bool = False,
    sandbox: bool = False,
    column_map: Path | None = None,
    master_data_dir: Path | None = None,
    sheet: str | None = None,
    concurrency: int = 4,
    settings: Settings | None = None,
    watch_settings: WatchSettings | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[int, str | None]:
    """Watch ``folder`` until stopped (or, with ``once``, until the inbox is worked off).

    Returns the exit code and a one-line error (exit code 2) for a user mistake.
    """
    try:
        _watch(
            Path(folder), once=once, sandbox=sandbox, column_map=column_map,
            master_data_dir=master_data_dir, sheet=sheet, concurrency=concurrency,
            settings=settings, watch_settings=watch_settings, echo=echo,
        )
    except (UnusableInput, DropFolderError) as exc:
        return EXIT_UNUSABLE, str(exc)
    return EXIT_OK, None


def _watch(
    folder: Path, *, once: bool, sandbox: bool, column_map: Path | None,
    master_data_dir: Path | None, sheet: str | None, concurrency: int,
    settings: Settings | None, watch_settings: WatchSettings | None,
    echo: Callable[[str], None],
) -> None:
    from pipeline.commands.run import load_settings, open_pipeline

    # The folder first: a mistyped path is reported before any Redis or worker starts.
    Layout(folder).create()
    settings = settings or load_settings()
    try:
        watch_settings = watch_settings or WatchSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "__".join(str(part) for part in first["loc"]).upper()
        raise UnusableInput(f"bad setting ONBOARD_WATCH__{name}: {first['msg']}") from None
    for option, value in (("--column-map", column_map), ("--master-data", master_data_dir)):
        if value is not None and not value.exists():
            raise UnusableInput(f"{value}: {option} not found")
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
