"""The drop-folder watcher's batches on the queue (the ``BatchRunner`` of ``onboard watch``).

:class:`PipelineRunner` runs each dropped file as one pipeline batch: launched (or resumed)
with the batch id the watcher wrote to the sidecar beforehand, followed through the store's
counters, reported with :func:`~pipeline.batch.report.write_batch_report`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.batch.inputs import InputSpec, new_batch_id
from pipeline.batch.report import write_batch_report
from pipeline.batch.submit import Queue, launch_batch, resume_batch
from pipeline.core.errors import UserError
from pipeline.core.settings import Settings
from pipeline.dropfolder.watcher import UnusableFile

if TYPE_CHECKING:
    from celery import Celery

    from workers.state import BatchStore


class PipelineRunner:
    """Runs a drop-folder file as one pipeline batch.

    See :class:`~pipeline.dropfolder.watcher.BatchRunner`.

    Resuming: ``submit`` for a batch whose whole file was already enqueued does nothing; for
    one whose enqueueing was cut short it continues the enqueue (:func:`resume_batch`): the
    messages the batch's cursor counts as sent are not sent again, so no row
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
        self.queue = Queue(app, store, settings)
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
        return new_batch_id()

    def submit(self, batch_id: str, path: Path) -> None:
        """Validate and enqueue ``path`` as ``batch_id`` unless that already happened."""
        state = self.store.batch_state(batch_id)
        if state is not None and state.enqueue_done:
            return
        spec = InputSpec(path, self.sheet, self.column_map, self.master_data_dir,
                         self.documents_dir)
        try:
            if state is None:
                launch_batch(spec, self.queue, batch_id=batch_id)
            else:
                resume_batch(spec, self.queue, batch_id)
        except UserError as exc:
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
        try:
            report = write_batch_report(self.store, batch_id, out_dir, settings=self.settings)
        except UserError as exc:
            raise UnusableFile(_without_folder(str(exc), path)) from None
        return report.paths


def _without_folder(message: str, path: Path) -> str:
    """The message with the file's processing/ path shortened to its name."""
    for form in {str(path.resolve()), str(path)}:
        message = message.replace(form, path.name)
    return message
