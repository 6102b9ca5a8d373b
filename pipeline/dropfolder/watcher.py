"""``onboard watch DIR``: the drop-folder watcher.

Files dropped into ``DIR/inbox/`` are taken once they have arrived (see
:class:`pipeline.dropfolder.layout.SettleTracker`), moved to ``processing/``, run as one batch each,
and end as ``outbox/<stem>.<batch_id>.report.csv`` (+ ``.summary.json``) with the input in
``done/``; an unusable file goes to ``failed/`` with ``<name>.error.txt``.
ID scans a row names (``id_front_file``) are looked up under ``DIR/documents/`` (or
``ONBOARD_WATCH__DOCUMENTS_DIR``), never outside it: the file itself runs from
``processing/``, where nothing else lives.

The watcher does not run batches itself: it drives a :class:`BatchRunner` (the real one,
over the queue and the workers, is built by the ``watch`` command), so the mechanics here are
tested with a small runner of the test's own. Order of a file's life, chosen for restarts:

1. rename into ``processing/`` (atomic; the inbox never holds a file twice);
2. sha256, duplicate check against the folder's state file;
3. ``open_batch`` → batch id, written to the ``.batch`` sidecar *before* any row is enqueued,
   then recorded in the state file;
4. ``submit`` (enqueue; resumable), ``wait``, ``write_report`` into a staging directory, move
   the report files to ``outbox/``, the input to ``done/``, drop the sidecar.

A watcher killed at any point finds the file in ``processing/`` on its next start: with a
sidecar it continues that batch (``submit`` again continues where enqueueing stopped, and a
batch that finished only needs its report), without one it starts the file afresh.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.core.atomic import atomic_write_text
from pipeline.core.digest import file_sha256
from pipeline.core.errors import UserError
from pipeline.dropfolder import layout as df

log = structlog.get_logger(__name__)

REPORT_SUFFIX = ".report.csv"
SUMMARY_SUFFIX = ".summary.json"
_OUTBOX_SUFFIXES = {".csv": REPORT_SUFFIX, ".xlsx": ".report.xlsx", ".json": SUMMARY_SUFFIX}


class WatchSettings(BaseSettings):
    """Knobs of the watcher, read from ``ONBOARD_WATCH__<NAME>`` (like a nested setting)."""

    model_config = SettingsConfigDict(
        env_prefix="ONBOARD_WATCH__", env_file=".env", extra="ignore"
    )

    # A file written in place counts as arrived once its size and mtime held this long.
    settle_seconds: float = Field(default=5.0, ge=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    # Batches run at once; further arrived files wait in the inbox.
    max_concurrent: int = Field(default=2, ge=1)
    allow_duplicates: bool = False
    # A file whose batch hit an unexpected error (Redis down, ...) is retried this much later.
    retry_seconds: float = Field(default=30.0, ge=0)
    # How long a content hash is remembered for duplicate detection.
    remember_days: float = Field(default=90.0, gt=0)
    # Completion is polled at this interval by the real runner.
    completion_poll_seconds: float = Field(default=0.5, gt=0)
    # Where the ID scans rows name are found (paths may not leave it); default
    # <folder>/documents.
    documents_dir: Path | None = None


class UnusableFile(UserError):
    """The file cannot be run (the pipeline's exit-2 cases); the message is one line."""


class BatchRunner(Protocol):
    """What the watcher needs from the pipeline. Every method may raise :class:`UnusableFile`.

    ``submit`` must be resumable: called again for a batch whose enqueueing stopped midway
    (the watcher was killed), it continues without enqueuing any row twice.
    """

    def open_batch(self, path: Path) -> str:
        """Register a batch for ``path`` (nothing enqueued yet) and return its id."""
        ...

    def submit(self, batch_id: str, path: Path) -> None:
        """Enqueue the rows of ``path`` for ``batch_id`` (or the ones not enqueued yet)."""
        ...

    def wait(self, batch_id: str, stop: threading.Event) -> bool:
        """Block until the batch is complete (True) or ``stop`` is set (False)."""
        ...

    def write_report(self, batch_id: str, path: Path, out_dir: Path) -> Sequence[Path]:
        """Write the report (``.csv``, maybe ``.xlsx``) and summary (``.json``) into ``out_dir``.

        Returns the paths written; the watcher names them in the outbox by their suffix.
        """
        ...


# retry: left in processing/ after an unexpected error; stopped: the watcher was stopping.
JobStatus = Literal["running", "done", "failed", "retry", "stopped"]


@dataclass(slots=True)
class Job:
    """One file in ``processing/`` and what became of it."""

    path: Path
    sidecar: df.Sidecar | None = None
    status: JobStatus = "running"
    result: Path | None = None
    reports: tuple[Path, ...] = ()
    error: str | None = None


@dataclass(slots=True)
class _Slot:
    """A job being run and its future."""

    job: Job
    future: Future[None]


@dataclass(slots=True)
class _Retry:
    """When a file in processing that hit an unexpected error may be tried again."""

    after: float


class Watcher:
    """Polls one drop folder and runs each arrived file as one batch through ``runner``.

    ``scan_once()`` does one pass (resume or retry files in ``processing/``, take arrived
    files from ``inbox/`` up to ``max_concurrent`` running jobs) and returns the jobs it
    started; the jobs run on worker threads. ``wait_idle()`` waits for them. ``run()`` loops
    until ``stop`` is set. Tests drive ``scan_once()`` with their own clock.
    """

    def __init__(
        self,
        root: Path,
        runner: BatchRunner,
        settings: WatchSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_finish: Callable[[Job], None] | None = None,
    ) -> None:
        self.settings = settings or WatchSettings()
        self.layout = df.Layout(Path(root))
        self.layout.create()
        self.runner = runner
        self.clock = clock
        self.on_finish = on_finish
        self.stop_event = threading.Event()
        self._lock = df.FolderLock(self.layout.lock_file)
        self._lock.acquire()
        try:
            self.state = df.StateFile(
                self.layout.state_file, keep_seconds=self.settings.remember_days * 86400
            )
        except BaseException:
            self._lock.release()
            raise
        self.settle = df.SettleTracker(self.settings.settle_seconds, clock)
        self._pool = ThreadPoolExecutor(
            max_workers=self.settings.max_concurrent, thread_name_prefix="watch"
        )
        self._running: dict[str, _Slot] = {}
        self._retry: dict[str, _Retry] = {}
        self._guard = threading.Lock()
        # The last jobs that ended, newest last (bounded: the watcher runs for months).
        self.finished: deque[Job] = deque(maxlen=1000)

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        """Scan every ``poll_seconds`` until :attr:`stop_event` is set."""
        log.info("watch_started", folder=str(self.layout.root))
        while not self.stop_event.is_set():
            try:
                self.scan_once()
            except Exception as exc:  # the folder on a flaky share, a full disk: keep going
                log.error("watch_scan_failed", error=f"{type(exc).__name__}: {exc}")
            self.stop_event.wait(self.settings.poll_seconds)
        log.info("watch_stopping", running=self.running)

    def run_until_idle(self) -> None:
        """Scan until nothing runs and the inbox holds no file left to take (``--once``)."""
        while not self.stop_event.is_set():
            started = self.scan_once()
            if not started and self.running == 0 and not self._inbox_pending():
                return
            self.stop_event.wait(self.settings.poll_seconds)

    def _inbox_pending(self) -> bool:
        """True while a regular, non-temporary file waits in the inbox."""
        return any(df.is_regular(st) for _, st in df.inbox_entries(self.layout.inbox))

    def close(self, *, wait: bool = True) -> None:
        """Stop: running jobs are told to stop waiting (they resume on the next start)."""
        self.stop_event.set()
        self._pool.shutdown(wait=wait)
        self._lock.release()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job is running (True) or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._guard:
                futures = [slot.future for slot in self._running.values()]
            if not futures:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            wait_futures(futures, timeout=remaining)

    @property
    def running(self) -> int:
        """Jobs currently running."""
        with self._guard:
            return len(self._running)

    def scan_once(self) -> list[Job]:
        """One pass over ``processing/`` (resume, retry) then ``inbox/`` (arrivals)."""
        started = self._scan_processing()
        started += self._scan_inbox()
        return started

    # -- processing/: resume after a restart, retry after an error ----------------------

    def _scan_processing(self) -> list[Job]:
        """Start a job for every input in processing/ that is neither running nor waiting."""
        started: list[Job] = []
        now = self.clock()
        inputs = _processing_inputs(self.layout.processing)
        _drop_orphan_sidecars(self.layout.processing, set(inputs))
        for name in sorted(inputs):
            if self._free_slots() == 0:
                break
            with self._guard:
                if name in self._running:
                    continue
                retry = self._retry.get(name)
                if retry is not None and now < retry.after:
                    continue
                self._retry.pop(name, None)
            path = self.layout.processing / name
            # A job pops itself from _running only after moving its input away, so an input
            # listed earlier that is gone now belongs to a job that just ended.
            if not os.path.lexists(path):
                continue
            try:
                job = self._resume_or_claim(path, name)
            except OSError as exc:
                log.warning("watch_resume_failed", file=name, error=exc.strerror)
                continue
            if job is not None:
                started.append(job)
        return started

    def _resume_or_claim(self, path: Path, name: str) -> Job | None:
        """Continue the batch named by the sidecar, or treat a bare file as newly arrived."""
        sidecar = df.Sidecar.load(path)
        if sidecar is not None:
            log.info("watch_resume", file=name, batch_id=sidecar.batch_id)
            job = Job(path, sidecar)
            # Rewrite the state entry: a crash may have come between sidecar and state.
            self.state.put(
                sidecar.sha256, batch_id=sidecar.batch_id, name=sidecar.original,
                status="processing",
            )
            self._start(job)
            return job
        return self._claim(path, df.display_name(name))

    # -- inbox/: arrivals ---------------------------------------------------------------

    def _scan_inbox(self) -> list[Job]:
        """Take every arrived file of the inbox while slots are free."""
        started: list[Job] = []
        try:
            entries = sorted(df.inbox_entries(self.layout.inbox))
        except FileNotFoundError:
            self.layout.create()
            return started
        self.settle.keep_only({name for name, _ in entries})
        for name, st in entries:
            if self.stop_event.is_set() or self._free_slots() == 0:
                break
            try:
                job = self._take(name, st)
            except OSError as exc:
                # Gone or moved by someone else between the listing and the move: the next
                # scan sees the folder as it is then.
                self.settle.forget(name)
                log.warning("watch_take_failed", file=df.safe_name(name), error=exc.strerror)
                continue
            if job is not None:
                started.append(job)
        return started

    def _take(self, name: str, st: os.stat_result) -> Job | None:
        """Move one inbox entry on if it has arrived: to processing/ (and a job) or failed/."""
        source = self.layout.inbox / name
        if not df.is_regular(st):
            if not stat.S_ISDIR(st.st_mode):  # folders are left for a person to look at
                self.settle.forget(name)
                self._reject(source, df.display_name(name), "not a regular file (links, "
                             "pipes and devices are not accepted)")
            return None
        if not self.settle.arrived(name, st):
            return None
        self.settle.forget(name)
        target = df.move_unique(source, self.layout.processing, df.safe_name(name))
        log.info("watch_arrived", file=target.name)
        return self._claim(target, df.display_name(name))

    def _free_slots(self) -> int:
        """How many more jobs may start now."""
        with self._guard:
            return self.settings.max_concurrent - len(self._running)

    def _claim(self, path: Path, original: str) -> Job | None:
        """Hash, check for a duplicate, open the batch, write the sidecar, start the job."""
        try:
            sha = file_sha256(path)  # never through a symbolic link (the default)
        except OSError as exc:
            self._reject(path, original, f"cannot be read ({exc.strerror})")
            return None
        seen = self.state.get(sha)
        if seen is not None and not self.settings.allow_duplicates:
            batch = seen.get("batch_id")
            self._reject(
                path, original,
                f"duplicate: the same content (sha256 {sha[:16]}…) was already taken as "
                f"batch {batch} from file {seen.get('name')!s}; set "
                "ONBOARD_WATCH__ALLOW_DUPLICATES=true to run it again",
            )
            return None
        try:
            batch_id = self.runner.open_batch(path)
        except UnusableFile as exc:
            self._reject(path, original, str(exc))
            return None
        except Exception as exc:  # any other trouble: keep the file, retry later
            self._later(path.name, exc, stage="open_batch")
            return None
        sidecar = df.Sidecar(batch_id=batch_id, sha256=sha, original=original)
        sidecar.save(path)
        self.state.put(sha, batch_id=batch_id, name=original, status="processing")
        job = Job(path, sidecar)
        self._start(job)
        return job

    def _start(self, job: Job) -> None:
        """Run a job on the pool and track it."""
        with self._guard:
            future = self._pool.submit(self._run_job, job)
            self._running[job.path.name] = _Slot(job, future)

    # -- one job ------------------------------------------------------------------------

    def _run_job(self, job: Job) -> None:
        """Submit, wait, report, move; never lets an exception escape the worker thread."""
        assert job.sidecar is not None
        batch_id = job.sidecar.batch_id
        staging = job.path.with_name(job.path.name + df.STAGING_SUFFIX)
        try:
            self.runner.submit(batch_id, job.path)
            if not self.runner.wait(batch_id, self.stop_event):
                job.status = "stopped"
                return
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            written = self.runner.write_report(batch_id, job.path, staging)
            job.reports = self._publish(job.path.name, batch_id, written)
            job.result = df.move_unique(job.path, self.layout.done, job.path.name)
            self.state.put(job.sidecar.sha256, status="done")
            job.status = "done"
            log.info("watch_done", file=job.path.name, batch_id=batch_id)
        except UnusableFile as exc:
            self.state.remove(job.sidecar.sha256, batch_id)
            job.result = self._fail(job.path, job.sidecar.original, str(exc))
            job.status = "failed"
            job.error = df.one_line(str(exc))
        except Exception as exc:  # a worker thread must not die silently
            job.status = "retry"
            job.error = df.one_line(f"{type(exc).__name__}: {exc}")
            self._later(job.path.name, exc, stage="run")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if job.status in ("done", "failed"):
                df.Sidecar.path_for(job.path).unlink(missing_ok=True)
            with self._guard:
                self._running.pop(job.path.name, None)
                self.finished.append(job)
            if self.on_finish is not None:
                self.on_finish(job)

    def _publish(self, name: str, batch_id: str, written: Sequence[Path]) -> tuple[Path, ...]:
        """Move the runner's report files to ``outbox/<stem>.<batch_id>.<kind>``.

        A resumed job publishes under the same names: a report is replaced, never doubled.
        """
        stem = df.split_name(name)[0]
        published: list[Path] = []
        for path in written:
            suffix = _OUTBOX_SUFFIXES.get(path.suffix.lower())
            if suffix is None:
                continue
            target = self.layout.outbox / f"{stem}.{batch_id}{suffix}"
            path.replace(target)
            published.append(target)
        if not any(p.name.endswith(REPORT_SUFFIX) for p in published):
            raise RuntimeError(f"batch {batch_id}: the runner wrote no .csv report")
        for path in published:
            if path.name.endswith(SUMMARY_SUFFIX):
                _point_summary_at(path, [p for p in published if p != path])
        return tuple(published)

    def _later(self, name: str, exc: BaseException, *, stage: str) -> None:
        """Leave a file in processing/ and try it again after ``retry_seconds``."""
        log.warning(
            "watch_retry_later", file=name, stage=stage, error=type(exc).__name__,
            retry_seconds=self.settings.retry_seconds,
        )
        with self._guard:
            self._retry[name] = _Retry(self.clock() + self.settings.retry_seconds)

    def _reject(self, path: Path, original: str, reason: str) -> None:
        """Fail a file before any job ran for it, and report it like a finished job."""
        job = Job(path, status="failed", error=df.one_line(reason))
        job.result = self._fail(path, original, reason)
        with self._guard:
            self.finished.append(job)
        if self.on_finish is not None:
            self.on_finish(job)

    def _fail(self, path: Path, original: str, reason: str) -> Path:
        """Move a file to failed/ and write ``<name>.error.txt`` (one line) next to it."""
        target = df.move_unique(path, self.layout.failed, df.safe_name(original))
        message = df.one_line(reason)
        atomic_write_text(target.with_name(target.name + df.ERROR_SUFFIX), message + "\n")
        df.Sidecar.path_for(path).unlink(missing_ok=True)
        log.warning("watch_failed", file=target.name, reason=message)
        return target


def _processing_inputs(processing: Path) -> list[str]:
    """Regular files of processing/ that are inputs rather than the watcher's own files."""
    names: list[str] = []
    for name, st in df.inbox_entries(processing):
        if name.endswith(df.RESERVED_SUFFIXES) or not df.is_regular(st):
            continue
        names.append(name)
    return names


def _drop_orphan_sidecars(processing: Path, inputs: set[str]) -> None:
    """Remove sidecars whose input is gone (killed between the move to done/ and cleanup)."""
    for name, _ in df.inbox_entries(processing):
        if name.endswith(df.SIDECAR_SUFFIX) and name[: -len(df.SIDECAR_SUFFIX)] not in inputs:
            (processing / name).unlink(missing_ok=True)


def _point_summary_at(summary: Path, reports: list[Path]) -> None:
    """Make a summary's ``reports`` list name the outbox files, not the staging ones."""
    try:
        data = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(data, dict) and "reports" in data:
        data["reports"] = [str(p) for p in reports]
        atomic_write_text(summary, json.dumps(data, indent=2) + "\n")
