"""``onboard report BATCH [--merged]``: write a batch's report, complete or not."""

from __future__ import annotations

from pathlib import Path

from pipeline.batch.report import MERGED_NAME, MERGED_SUMMARY, write_batch_report
from pipeline.batch.rerun import find_reruns
from pipeline.commands.setup import command, load_settings, open_store
from pipeline.core.errors import ExitCode
from pipeline.core.results import CommandResult
from pipeline.core.settings import Settings


@command
def report_batch(
    batch_id: str, *, out_dir: Path = Path("reports"), settings: Settings | None = None,
    merged: bool = False,
) -> CommandResult:
    """Write the report of a batch; ``merged``: with its reruns folded in
    (``<out>/<batch>/merged.csv``)."""
    settings = settings or load_settings()
    with open_store(settings) as store:
        if merged:
            report = write_batch_report(
                store, batch_id, Path(out_dir), settings=settings,
                merge=find_reruns(store, batch_id), name=MERGED_NAME, summary_name=MERGED_SUMMARY,
            )
        else:
            report = write_batch_report(store, batch_id, Path(out_dir), settings=settings)
    code = ExitCode.DONE if report.all_done else ExitCode.OTHER
    return CommandResult(code, report.summary, None, report.paths, batch_id)
