"""Following a batch until it is complete (a live rich progress bar on a terminal), then its
report; and the one-line views of batches that ``onboard status`` prints.

The bar shows rows done out of the total (the rows read so far while submit still streams),
the rows per outcome, the rate and the ETA. Off a terminal it prints one plain line every
``line_every`` seconds instead, so logs of a scheduled run stay readable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipeline.batch.recover import StallWatch, recover_batch
from pipeline.batch.report import write_batch_report
from pipeline.batch.submit import Queue
from pipeline.core.errors import ExitCode
from pipeline.core.outcomes import Outcome
from pipeline.core.results import CommandResult

if TYPE_CHECKING:
    from pathlib import Path

    from workers.state import BatchState, BatchStore

POLL_SECONDS = 0.25


def describe(state: BatchState) -> str:
    """Rows per outcome, only those that occurred, e.g. ``onboarded 40 · invalid 3``."""
    parts = [f"{o.value} {state.counts.get(o, 0):,}" for o in Outcome if state.counts.get(o, 0)]
    return " · ".join(parts) or "waiting for the first rows"


def follow(
    store: BatchStore,
    batch_id: str,
    *,
    console: Console | None = None,
    poll: float = POLL_SECONDS,
    line_every: float = 5.0,
    check: Callable[[], None] | None = None,
    timeout: float | None = None,
) -> BatchState:
    """Poll the batch until complete; return its final state.

    ``check`` is called every poll and may raise to stop following (e.g. the in-process
    worker died). ``timeout`` (seconds) raises TimeoutError when the batch is not complete
    by then.
    """

    console = console or Console(stderr=True, highlight=False)
    deadline = None if timeout is None else time.monotonic() + timeout
    live = console.is_terminal
    progress = Progress(
        TextColumn("{task.fields[outcomes]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not live,
        transient=False,
    )
    started = time.monotonic()
    last_line = started
    with progress:
        task = progress.add_task(batch_id, total=None, outcomes="", rate="")
        while True:
            state = store.batch_state(batch_id)
            if state is None:
                raise LookupError(f"batch {batch_id}: unknown (or expired) batch")
            total = state.total if state.enqueue_done else max(state.meta.rows_enqueued, 1)
            elapsed = max(time.monotonic() - started, 1e-6)
            rate = f"{state.done / elapsed:,.0f} rows/s"
            progress.update(
                task, completed=state.done, total=total, outcomes=describe(state), rate=rate
            )
            if state.complete:
                return state
            now = time.monotonic()
            if not live and now - last_line >= line_every:
                console.print(
                    f"{batch_id}: {state.done:,}/{total:,} rows done ({describe(state)})",
                    markup=False,
                )
                last_line = now
            if check is not None:
                check()
            if deadline is not None and now > deadline:
                raise TimeoutError(f"batch {batch_id} not complete after {timeout:g} s")
            time.sleep(poll)


def follow_and_report(
    queue: Queue, batch_id: str, out_dir: Path, *, console: Console | None = None,
    timeout: float | None = None,
) -> CommandResult:
    """Follow ``batch_id`` to the end (or ``timeout``) and write its report.

    Exit code 0 every row done, 1 otherwise; past the timeout the report is still written
    (a partial one that says so) with the timeout as the error.
    """
    # Rows whose message was lost (a SIGKILLed worker) are sent again once the batch stalls.
    pipeline = queue.settings.pipeline
    stall = StallWatch(
        queue.store, batch_id, lambda: recover_batch(queue, batch_id),
        queue=pipeline.queue, stall_seconds=pipeline.recover_stall_seconds,
    )
    error: str | None = None
    try:
        follow(queue.store, batch_id, console=console, timeout=timeout, check=stall)
    except TimeoutError as exc:
        error = str(exc)
    report = write_batch_report(queue.store, batch_id, out_dir, settings=queue.settings)
    code = ExitCode.DONE if report.all_done and error is None else ExitCode.OTHER
    return CommandResult(code, report.summary, error, report.paths, batch_id)


def batch_line(state: BatchState) -> str:
    """One line about a batch: id, file, started, progress (rows done / total, or / enqueued
    so far), state, outcome counts."""
    meta = state.meta
    if state.complete:
        flag, total = "complete", f"{state.total:,}"
    elif state.input.get("error"):
        flag, total = "stopped", f"{meta.rows_enqueued:,}"
    elif state.enqueue_done:
        flag, total = "running", f"{state.total:,}"
    else:
        flag, total = "enqueuing", f"{meta.rows_enqueued:,}+"
    started = (meta.started_at or meta.created_at)[:19].replace("T", " ")
    rerun = f"  rerun of {meta.parent_batch_id}" if meta.parent_batch_id else ""
    return (
        f"{state.batch_id}  {meta.file_name}  {started}  {state.done:,}/{total}  {flag}  "
        f"{describe(state)}{rerun}"
    )


def recent_lines(store: BatchStore, limit: int = 20) -> list[str]:
    """``onboard status`` without a batch: one :func:`batch_line` per recent batch, newest
    first."""
    states = (store.batch_state(batch_id) for batch_id in store.recent_batches(limit))
    return [batch_line(state) for state in states if state is not None]


def progress_line(state: BatchState) -> str:
    """``onboard status BATCH``: rows done, complete or running, outcome counts."""
    flag = "complete" if state.complete else "running"
    return (
        f"{state.batch_id}: {state.done:,}/{state.total:,} rows done, {flag} "
        f"({describe(state)})"
    )

