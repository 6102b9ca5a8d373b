"""``onboard status [BATCH] [--follow]``: a batch's progress, or the recent batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.batch.follow import follow, progress_line, recent_lines
from pipeline.commands.setup import command, load_settings, open_store
from pipeline.core.errors import ExitCode, UserError
from pipeline.core.results import CommandResult
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console


@command
def batch_status(
    batch_id: str | None = None, *, follow_batch: bool = False, console: Console | None = None,
    settings: Settings | None = None, limit: int = 20,
) -> CommandResult:
    """One line per recent batch (no ``batch_id``), or the batch's progress (followed live
    to the end with ``follow_batch``)."""
    with open_store(settings or load_settings()) as store:
        if batch_id is None:
            return CommandResult(ExitCode.DONE, lines=recent_lines(store, limit))
        state = store.batch_state(batch_id)
        if state is None:
            raise UserError(f"batch {batch_id}: unknown (or expired) batch")
        if follow_batch:
            state = follow(store, batch_id, console=console)
        return CommandResult(ExitCode.DONE, batch_id=batch_id, lines=[progress_line(state)])
