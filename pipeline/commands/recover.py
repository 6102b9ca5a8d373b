"""``onboard recover BATCH``: re-enqueue the rows of a batch that have no outcome yet."""

from __future__ import annotations

from pipeline.batch.recover import recover_batch
from pipeline.batch.submit import Queue
from pipeline.commands.setup import command, load_settings, make_store, shared_app
from pipeline.core.errors import ExitCode
from pipeline.core.results import CommandResult
from pipeline.core.settings import Settings


@command
def recover(batch_id: str, *, settings: Settings | None = None) -> CommandResult:
    """Send again the rows of ``batch_id`` with no outcome; safe at any time."""
    settings = settings or load_settings()
    url, app = shared_app(settings, "recover")
    store = make_store(url, settings)
    try:
        rows = recover_batch(Queue(app, store, settings), batch_id)
    finally:
        store.close()
    line = f"{batch_id}: {rows:,} rows with no outcome re-enqueued"
    return CommandResult(ExitCode.DONE, batch_id=batch_id, lines=[line])
