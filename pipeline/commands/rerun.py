"""``onboard rerun SOURCE``: send the rows of a batch or report whose outcome is selected
again, as a new batch (see :mod:`pipeline.batch.rerun`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.batch.follow import follow_and_report
from pipeline.batch.rerun import (
    DEFAULT_OUTCOMES,
    launch_rerun,
    outcome_names,
    parse_outcomes,
    rerun_source,
)
from pipeline.batch.submit import Queue
from pipeline.commands.setup import (
    DEFAULT_CHUNKS_IN_PROGRESS,
    command,
    load_settings,
    open_pipeline,
)
from pipeline.core.errors import ExitCode
from pipeline.core.outcomes import Outcome
from pipeline.core.results import CommandResult
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console


@command
def rerun(
    source: str,
    *,
    outcomes: frozenset[Outcome] | str = frozenset(DEFAULT_OUTCOMES),
    out_dir: Path = Path("reports"),
    settings: Settings | None = None,
    sandbox: bool = False,
    column_map: Path | None = None,
    master_data_dir: Path | None = None,
    parent: str | None = None,
    worker: bool | None = None,
    wait: bool = True,
    timeout: float | None = None,
    console: Console | None = None,
    concurrency: int = DEFAULT_CHUNKS_IN_PROGRESS,
) -> CommandResult:
    """Submit the selected rows of ``source`` (batch id or report file) as a new batch.

    With ``wait`` (always on the embedded Redis) follow it to the end and write its report.
    ``outcomes`` may be given as the command line does (``failed,rejected``). Nothing
    selected: exit code 0, no batch, and the reason as ``error``.
    """
    if isinstance(outcomes, str):
        outcomes = parse_outcomes(outcomes)
    settings = settings or load_settings()
    with open_pipeline(settings, sandbox=sandbox) as env:
        chosen = rerun_source(
            source, env.store, outcomes, env.settings, column_map=column_map,
            master_data_dir=master_data_dir, parent=parent,
        )
        if not chosen.select:
            return CommandResult(
                ExitCode.DONE,
                error=f"nothing to rerun: no row of {source} is {outcome_names(outcomes)}",
            )
        # Only this process can work the rerun off (embedded Redis or private sandbox).
        wait = wait or env.local
        if wait and (worker or (worker is None and env.local)):
            env.start_worker(concurrency)
        queue = Queue(env.app, env.store, env.settings)
        sub = launch_rerun(queue, chosen, outcomes)
        if not wait:
            summary = {"batch_id": sub.batch_id, "parent": chosen.parent, "rows": sub.rows}
            return CommandResult(ExitCode.DONE, summary, batch_id=sub.batch_id)
        result = follow_and_report(queue, sub.batch_id, out_dir, console=console,
                                   timeout=timeout)
    if result.error is None and result.summary is not None:
        result.summary["parent_batch_id"] = chosen.parent
    return result
