"""Nightly runs: the batch an ``onboard submit`` of the same file should resume.

A scheduled submit (cron, or the Celery beat schedule) may die while it enqueues a large
file. Started again for the same file (same resolved path, same sha256) it finds that batch
among the recent ones and continues it with :func:`pipeline.batch.submit.resume_batch`: the
store's enqueue cursor counts the messages already sent, and those are not sent again. A
batch whose enqueue finished is never resumed: the same file submitted again after that is
a new batch (its done rows are answered by the ledger).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.state import BatchStore

def find_unfinished(store: BatchStore, path: Path, sha256: str) -> str | None:
    """The newest recent batch of this very file whose enqueue did not finish, if any."""
    wanted = str(path.resolve())
    metas = store.recent_meta(
        "input_path", "sha256", "enqueue_done", "error", "parent_batch_id",
    )
    for batch_id, meta in metas.items():
        where, sha, done, error, parent = meta.values()
        # A rerun reads the same file but is a different set of rows; an error (a ragged
        # line) would stop the resumed run at the same place again.
        if where == wanted and sha == sha256 and done != "1" and not error and not parent:
            return batch_id
    return None
