"""``onboard follow-up BATCH``: ask the partner about customers left in a non-final state and
write the batch's report with their latest ``customer_status`` / ``aml_scan_status``."""

from __future__ import annotations

from pathlib import Path

from pipeline.batch.followup import follow_up
from pipeline.batch.report import write_batch_report
from pipeline.commands.setup import (
    check_timing,
    command,
    load_settings,
    make_store,
    open_redis,
    require_partner,
    with_sandbox,
)
from pipeline.core.errors import ExitCode
from pipeline.core.results import CommandResult
from pipeline.core.settings import Settings


@command
def follow_up_batch(
    batch_id: str, *, out_dir: Path = Path("reports"), settings: Settings | None = None,
    sandbox_url: str | None = None,
) -> CommandResult:
    """Follow up a batch (and its reruns) and write its report. ``sandbox_url`` points the
    partner at a sandbox. Exit code 0: none left open; 1: some still open."""
    settings = settings or load_settings()
    if sandbox_url:
        settings = with_sandbox(settings, sandbox_url)
    require_partner(settings, sandbox=bool(sandbox_url))
    check_timing(settings)
    with open_redis(settings) as info:
        store = make_store(info.redis_url, settings)
        try:
            done = follow_up(store, settings, info.redis_url, batch_id)
            report = write_batch_report(store, batch_id, Path(out_dir), settings=settings)
        finally:
            store.close()
    report.summary["follow_up"] = {
        "checked": done.checked, "updated": done.updated, "failed": done.failed,
        "still_open": done.still_open,
    }
    code = ExitCode.DONE if done.still_open == 0 else ExitCode.OTHER
    line = (f"checked {done.checked}, updated {done.updated}, failed {done.failed}, "
            f"still open {done.still_open}")
    return CommandResult(code, report.summary, None, report.paths, batch_id, lines=[line])
