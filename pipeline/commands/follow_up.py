"""``onboard follow-up BATCH``: ask the partner about customers left in a non-final state
(KYC pending, AML under investigation) and write the batch's report with their latest
``customer_status`` / ``aml_scan_status``. The status calls themselves are
``workers.followup``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.commands.run import (
    RunResult,
    _check_timing,
    _redis,
    _store,
    _with_sandbox,
    load_settings,
    require_partner,
)
from pipeline.commands.validate import UnusableInput
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from workers.followup import FollowUp


def follow_up_batch(
    batch_id: str, *, out_dir: Path = Path("reports"), settings: Settings | None = None,
    sandbox_url: str | None = None,
) -> tuple[RunResult, FollowUp | None]:
    """Follow up a batch (and its reruns) and write its report; never raises for a user
    mistake (exit code 2, one line). ``sandbox_url`` points the partner at a sandbox."""
    from pipeline.batch.report import write_batch_report
    from pipeline.batch.rerun import find_reruns
    from workers.followup import FollowUp, check_statuses, open_rows, save_statuses
    from workers.runtime import Runtime

    try:
        settings = settings or load_settings()
        if sandbox_url:
            settings = _with_sandbox(settings, sandbox_url)
        require_partner(settings, sandbox=bool(sandbox_url))
        _check_timing(settings)
        with _redis(settings) as info:
            store = _store(info.redis_url, settings)
            try:
                if store.batch_state(batch_id) is None:
                    raise UnusableInput(f"batch {batch_id}: unknown (or expired) batch")
                batches = [batch_id, *find_reruns(store, batch_id)]
                pending = open_rows(store, batches)
                done = FollowUp()
                if pending:
                    runtime = Runtime(settings, info.redis_url)
                    try:
                        done = runtime.run(check_statuses(
                            runtime, batch_id, {n: s for n, (_, s) in pending.items()}
                        ))
                        grants = runtime.take_grants()
                        if grants:
                            store.count_calls(batch_id, "token", grants)
                    finally:
                        runtime.close()
                # Each answer goes to the followed batch (its report shows it) and to the
                # rerun that held the row's latest status, so the merged report (latest
                # batch wins) shows it too.
                save_statuses(store, batch_id, done.rows)
                for holder in batches[1:]:
                    save_statuses(store, holder, {
                        n: s for n, s in done.rows.items() if pending[n][0] == holder
                    })
                report = write_batch_report(store, batch_id, Path(out_dir), settings=settings)
            finally:
                store.close()
    except UnusableInput as exc:
        return RunResult(2, error=str(exc)), None
    report.summary["follow_up"] = {
        "checked": done.checked, "updated": done.updated, "failed": done.failed,
        "still_open": done.still_open,
    }
    code = 0 if done.still_open == 0 else 1
    return RunResult(code, report.summary, None, report.paths, batch_id), done
