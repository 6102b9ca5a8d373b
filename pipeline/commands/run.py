"""``onboard run``: validate, open a batch, enqueue, follow to the end, write the report.

Embedded default: without ``ONBOARD_REDIS_URL``, ``run`` starts a private Redis on a unix
socket in the state directory (persistent, so the ledger serves later reruns) and a real
in-process Celery worker, and stops both at the end. ``--sandbox`` starts the partner
sandbox on a free loopback port and points the partner settings at it; since only this
process knows that address, a ``--sandbox`` run always has its own in-process worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.batch.follow import follow_and_report
from pipeline.batch.inputs import InputSpec
from pipeline.batch.submit import Queue, launch_batch
from pipeline.commands.setup import (
    DEFAULT_CHUNKS_IN_PROGRESS,
    command,
    load_settings,
    open_pipeline,
)
from pipeline.core.errors import UserError
from pipeline.core.results import CommandResult
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console


@command
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
) -> CommandResult:
    """Validate, open a batch, enqueue, follow to the end, write the report.

    ``worker``: run an in-process worker (default: when the Redis is embedded or
    ``sandbox`` is set; otherwise workers elsewhere consume the batch). Exit code 0: every
    row onboarded or already there; 1: other outcomes; 2: unusable.
    """
    settings = settings or load_settings()
    path, out_dir = Path(path), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: --out must be a directory, this is a file")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with open_pipeline(settings, sandbox=sandbox) as env:
        if worker or (worker is None and env.local):
            env.start_worker(concurrency)
        queue = Queue(env.app, env.store, env.settings)
        sub = launch_batch(InputSpec(path, sheet, column_map, master_data_dir), queue)
        return follow_and_report(queue, sub.batch_id, out_dir, console=console, timeout=timeout)
