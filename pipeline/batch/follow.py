"""Following a batch until it is complete: a live rich progress bar on a terminal.

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

from pipeline.core.outcomes import Outcome

if TYPE_CHECKING:
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
