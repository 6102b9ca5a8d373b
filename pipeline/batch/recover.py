"""Re-enqueue the rows of a batch that have no outcome yet (their message was lost).

kombu's Redis transport can lose a message when a worker is SIGKILLed between taking it off
the queue list and recording it as unacknowledged: its rows would stay pending forever.
Sending them again is safe at any time, since the per-row flow is idempotent (first outcome
wins, the ledger, fenced create claims). The rows are re-read from the batch's input through
:func:`pipeline.batch.submit.submit_file`, told which rows already have an outcome.

Two triggers: ``onboard recover BATCH``, and :class:`StallWatch`, which the follow loop of
``onboard run``/``rerun`` calls every poll: when the batch is fully enqueued but incomplete,
its queue is empty, no message of the queue is unacknowledged and no row got an outcome for
``recover_stall_seconds``, it recovers once (and waits a whole stall time again after).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

    from workers.state import BatchStore

def recover_batch(
    store: BatchStore, app: Celery, settings: Settings, batch_id: str
) -> int:
    """Send again every row of ``batch_id`` with no outcome; return how many rows were.

    Does nothing (0) for a complete batch. Raises :class:`~pipeline.batch.submit.SubmitError`
    (one line) for an unknown batch, one still being enqueued, or a changed input file.
    """
    from pipeline.batch.submit import SubmitError, input_spec, submit_file

    state = store.batch_state(batch_id)
    if state is None:
        raise SubmitError(f"batch {batch_id}: unknown (or expired) batch")
    if state.complete:
        return 0
    if not state.enqueue_done:
        raise SubmitError(f"batch {batch_id}: not fully enqueued yet; nothing to recover")
    recorded = store.recorded_rows(batch_id)
    spec = input_spec(state)
    scans = state.input.get("documents_dir")
    sub = submit_file(
        spec.path, app=app, store=store, settings=settings, column_map=spec.column_map,
        master_data_dir=spec.master_data_dir, sheet=spec.sheet, batch_id=batch_id,
        select=store.selection(batch_id), recorded=recorded,
        documents_dir=Path(scans) if scans else None,
    )
    return sub.valid + sub.invalid


class StallWatch:
    """A follow-loop check that recovers a batch once per stall (see the module doc)."""

    def __init__(
        self, store: BatchStore, batch_id: str, recover: Callable[[], int], *, queue: str,
        stall_seconds: float, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._batch_id = batch_id
        self._recover = recover
        self._queue = queue
        self._stall = stall_seconds
        self._clock = clock
        self._seen: tuple[int, bool] | None = None
        self._since = clock()
        self.recoveries = 0
        self.rows_recovered = 0

    def __call__(self) -> None:
        """Look once: note progress, or recover when the batch has stalled."""

        state = self._store.batch_state(self._batch_id)
        now = self._clock()
        if state is None or state.complete:
            return
        seen = (state.done, state.enqueue_done)
        if seen != self._seen:
            self._seen, self._since = seen, now
            return
        if not state.enqueue_done or now - self._since < self._stall:
            return
        if not self._store.queue_idle(self._queue):
            return
        import structlog

        rows = self._recover()
        self.recoveries += 1
        self.rows_recovered += rows
        # A whole stall time again before another recovery: the rows just sent need workers.
        self._since = now
        structlog.get_logger(__name__).warning(
            "batch.stall_recovered", batch_id=self._batch_id, rows=rows
        )


def recover_command(batch_id: str, *, settings: Settings | None = None) -> tuple[int, str]:
    """``onboard recover``: exit code and the line to print (or the one-line error)."""
    from pipeline.commands.run import EXIT_DONE, EXIT_UNUSABLE, _shared_app, _store, load_settings
    from pipeline.commands.validate import UnusableInput

    try:
        settings = settings or load_settings()
        url, app = _shared_app(settings, "recover")
        store = _store(url, settings)
        try:
            rows = recover_batch(store, app, settings, batch_id)
        finally:
            store.close()
    except UnusableInput as exc:
        return EXIT_UNUSABLE, str(exc)
    return EXIT_DONE, f"{batch_id}: {rows:,} rows with no outcome re-enqueued"
