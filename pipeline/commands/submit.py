"""``onboard submit``: validate and enqueue a file on the shared Redis; print the batch id.

By default it resumes: started again for the same file after a submit died mid-enqueue
(a nightly job), it continues that batch instead of opening another
(:mod:`pipeline.batch.nightly`). ``resume=False`` always opens a new batch.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.batch.inputs import InputSpec
from pipeline.batch.nightly import find_unfinished
from pipeline.batch.submit import Queue, launch_batch, resume_batch
from pipeline.commands.setup import command, load_settings, make_store, shared_app
from pipeline.core.digest import file_sha256
from pipeline.core.errors import ExitCode, UserError
from pipeline.core.results import CommandResult
from pipeline.core.settings import Settings


@command
def submit(
    path: Path,
    *,
    resume: bool = True,
    column_map: Path | None = None,
    master_data_dir: Path | None = None,
    sheet: str | None = None,
    settings: Settings | None = None,
) -> CommandResult:
    """Validate and enqueue ``path`` on the shared Redis; return with the batch id."""
    settings = settings or load_settings()
    url, app = shared_app(settings, "submit")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    spec = InputSpec(path, sheet, column_map, master_data_dir)
    store = make_store(url, settings)
    try:
        queue = Queue(app, store, settings)
        # Followed like ingest follows it: the sha256 the batch recorded is the target's.
        sha256 = file_sha256(path, follow_symlinks=True) if resume else ""
        resumed = find_unfinished(store, path, sha256) if resume else None
        if resumed is not None:
            sub = resume_batch(spec, queue, resumed)
        else:
            sub = launch_batch(spec, queue)
    finally:
        store.close()
    summary = {"batch_id": sub.batch_id, "rows": sub.rows, "valid": sub.valid,
               "invalid": sub.invalid, "messages": sub.messages}
    if resume:
        summary["resumed"] = resumed is not None
    return CommandResult(ExitCode.DONE, summary, batch_id=sub.batch_id)
