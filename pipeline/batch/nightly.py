"""Nightly runs: ``onboard submit`` that resumes a killed enqueue of the same file.

A scheduled submit (cron, or the Celery beat schedule of ``workers.beat``) may die while it
enqueues a large file. Started again for the same file (same resolved path, same sha256) it
finds that batch among the recent ones and continues it: the store's enqueue cursor counts the
messages already sent, and those are not sent again (``pipeline.batch.submit.submit_file``'s
``resume``). A batch whose enqueue finished is never resumed: the same file submitted again
after that is a new batch (its done rows are answered by the ledger).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.commands.validate import UnusableInput
from pipeline.core.digest import file_sha256
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from pipeline.commands.run import RunResult
    from workers.state.store import BatchStore


def find_unfinished(store: BatchStore, path: Path, sha256: str) -> str | None:
    """The newest recent batch of this very file whose enqueue did not finish, if any."""
    from workers.state.store import RECENT_BATCHES_KEPT

    wanted = str(path.resolve())
    metas = store.recent_meta(
        "input_path", "sha256", "enqueue_done", "error", "parent_batch_id",
        limit=RECENT_BATCHES_KEPT,
    )
    for batch_id, meta in metas.items():
        where, sha, done, error, parent = meta.values()
        # A rerun reads the same file but is a different set of rows; an error (a ragged
        # line) would stop the resumed run at the same place again.
        if where == wanted and sha == sha256 and done != "1" and not error and not parent:
            return batch_id
    return None


def submit_resumable(
    path: Path,
    *,
    column_map: Path | None = None,
    master_data_dir: Path | None = None,
    sheet: str | None = None,
    settings: Settings | None = None,
) -> RunResult:
    """``onboard submit`` that continues an interrupted enqueue of the same file."""
    from pipeline.batch.submit import SubmitError, submit_file
    from pipeline.commands.run import (
        EXIT_DONE,
        EXIT_UNUSABLE,
        RunResult,
        _check_timing,
        _require_redis,
        _store,
        load_settings,
    )
    from workers.tasks import make_worker_app

    try:
        settings = settings or load_settings()
        url = _require_redis(settings, "submit")
        _check_timing(settings)
        path = Path(path)
        if not path.is_file():
            raise UnusableInput(f"{path}: no such file")
        app = make_worker_app(settings, broker_url=url, redis_url=url)
        store = _store(url, settings)
        try:
            # Followed like ingest follows it: the sha256 the batch recorded is the target's.
            sha256 = file_sha256(path, follow_symlinks=True)
            resumed = find_unfinished(store, path, sha256)
            sub = submit_file(
                path, app=app, store=store, settings=settings, column_map=column_map,
                master_data_dir=master_data_dir, sheet=sheet, batch_id=resumed,
                resume=resumed is not None,
            )
        except SubmitError as exc:
            raise UnusableInput(str(exc)) from None
        except OSError as exc:
            raise UnusableInput(f"{exc.filename or path}: {exc.strerror or exc}") from None
        finally:
            store.close()
    except UnusableInput as exc:
        return RunResult(EXIT_UNUSABLE, error=str(exc))
    summary = {"batch_id": sub.batch_id, "rows": sub.rows, "valid": sub.valid,
               "invalid": sub.invalid, "messages": sub.messages, "resumed": resumed is not None}
    return RunResult(EXIT_DONE, summary, batch_id=sub.batch_id)


def recent_lines(store: BatchStore, limit: int = 20) -> list[str]:
    """``onboard status`` without a batch: one line per recent batch, newest first: id, file,
    started, progress (rows done / total, or / enqueued so far), state, outcome counts."""
    from pipeline.batch.follow import describe

    lines = []
    for batch_id in store.recent_batches(limit):
        state = store.batch_state(batch_id)
        if state is None:
            continue
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
        lines.append(
            f"{batch_id}  {meta.file_name}  {started}  {state.done:,}/{total}  {flag}  "
            f"{describe(state)}{rerun}"
        )
    return lines
