"""The report of a pipeline batch, built by the submitting side from the store.

The input file is read again, chunk by chunk, with the same ingest as at submit time; each
chunk's outcomes come from the store in one round trip; the report carries the input's
columns unchanged and in order, then ``row_number, outcome, ecrn, error_code, error_field,
error_message, attempts``. A row without an outcome yet (the batch is still running) says
``pending`` and the summary says ``complete: false``. The file must be the one submitted:
its sha256 is checked against the batch's.

Files: ``<out>/<batch_id>/report.csv`` (+ ``report.xlsx`` when the input was a spreadsheet or
has at most 100,000 rows) and ``summary.json``, all written atomically.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline.batch.inputs import input_spec, iter_chunks, open_input
from pipeline.batch.rerun import ReportRows
from pipeline.core.errors import UserError, file_error
from pipeline.core.outcomes import Outcome
from pipeline.core.settings import Settings
from pipeline.reports.writer import (
    PIPELINE_REPORT_COLUMNS,
    ReportWriter,
    write_summary,
)

if TYPE_CHECKING:
    from workers.state import BatchStore, RowRecord

PENDING = "pending"
XLSX_MAX_ROWS = 100_000
SUMMARY_NAME = "summary.json"
REPORT_NAME = "report"
# The report with a batch's reruns folded in (``onboard report --merged``).
MERGED_NAME = "merged"
MERGED_SUMMARY = "merged.summary.json"


@dataclass(slots=True)
class BatchReport:
    """What was written: the summary, the files, and whether the batch was complete."""

    summary: dict[str, Any]
    paths: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every row had its final outcome when the report was written."""
        return bool(self.summary["complete"])

    @property
    def all_done(self) -> bool:
        """Every row is ``onboarded`` or ``already_exists`` (exit code 0 of ``run``)."""
        counts: dict[str, int] = self.summary["outcomes"]
        done = counts.get(Outcome.ONBOARDED.value, 0) + counts.get(
            Outcome.ALREADY_EXISTS.value, 0
        )
        return self.complete and done == self.summary["rows"]


def _outcome_frame(
    records: list[RowRecord | None], numbers: list[int], index: Any, input_ecrn: list[str]
) -> pd.DataFrame:
    """The outcome columns of one chunk, row for row.

    The report's ``ecrn`` column replaces an input ``ecrn`` column (a report fed back must not
    carry it twice), so a row without an ecrn from the partner keeps the one it was sent with.
    """
    outcome, ecrn, code, fld, msg, attempts = [], [], [], [], [], []
    for rec, given in zip(records, input_ecrn, strict=True):
        if rec is None:
            outcome.append(PENDING)
            ecrn.append(given)
            code.append("")
            fld.append("")
            msg.append("")
            attempts.append("")
        else:
            outcome.append(rec.outcome.value)
            ecrn.append(rec.ecrn or given)
            code.append(rec.error_code)
            fld.append(rec.error_field)
            msg.append(rec.error_message)
            attempts.append(str(rec.attempts))
    return pd.DataFrame(
        {
            "row_number": pd.Series(numbers, index=index, dtype="int64"),
            "outcome": outcome, "ecrn": ecrn, "error_code": code, "error_field": fld,
            "error_message": msg, "attempts": attempts,
        },
        index=index,
    )


def write_batch_report(
    store: BatchStore, batch_id: str, out_dir: Path, *, settings: Settings,
    merge: Sequence[str] = (), name: str = REPORT_NAME, summary_name: str = SUMMARY_NAME,
) -> BatchReport:
    """Write the batch's report and summary under ``out_dir/batch_id``.

    A rerun batch's report lists its own rows only; ``merge`` (rerun batch ids, in fold
    order) folds those batches' outcomes in (``pipeline.batch.rerun.ReportRows``).

    Raises :class:`~pipeline.core.errors.UserError` (one line) for an unknown batch, an
    input file that is gone or changed, or an unwritable output directory.
    """

    state = store.batch_state(batch_id)
    if state is None:
        raise UserError(f"batch {batch_id}: unknown (or expired) batch")
    spec = input_spec(state)
    if not spec.path.is_file():
        raise UserError(f"{spec.path}: the batch's input file is gone; the report needs it")
    target = Path(out_dir) / batch_id
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UserError(f"{out_dir}: --out must be a directory, this is a file")
    source = ReportRows(store, batch_id, merge)
    complete = state.complete and source.complete
    counts: Counter[str] = Counter()
    rows = 0
    try:
        table = open_input(spec, settings)
        info = table.info
        if info.sha256 != state.meta.sha256:
            raise UserError(
                f"{spec.path}: the file changed since batch {batch_id} was submitted "
                "(sha256 differs); restore it to write the report"
            )
        xlsx = info.format != "csv" or 0 < state.total <= XLSX_MAX_ROWS
        with ReportWriter(
            target, info.headers, name=name, xlsx=xlsx,
            columns=(*PIPELINE_REPORT_COLUMNS, *source.extra_columns),
        ) as writer:
            for chunk in iter_chunks(table):
                part = source.part(
                    chunk.raw, [int(n) for n in chunk.row_numbers.tolist()],
                    [str(v) for v in chunk.rows["ecrn"].tolist()],
                )
                frame = _outcome_frame(part.records, part.numbers, part.raw.index, part.given_ecrn)
                for column, values in part.extra.items():
                    frame[column] = values
                counts.update(frame["outcome"].tolist())
                writer.write(part.raw, frame)
                rows += len(part.numbers)
        paths = writer.paths
    except OSError as exc:
        raise file_error(exc, target) from None
    # A row still pending means the batch was not complete, whatever the counters said.
    complete = complete and counts.get(PENDING, 0) == 0
    calls = store.calls(batch_id)
    outcomes = {o.value: counts.get(o.value, 0) for o in Outcome}
    outcomes[PENDING] = counts.get(PENDING, 0)
    summary: dict[str, Any] = {
        "batch_id": batch_id,
        "input": {
            "file": state.meta.file_name,
            "path": str(spec.path),
            "sha256": state.meta.sha256,
            "format": info.format,
            "sheet": info.sheet,
        },
        "master_data": {"version": state.meta.master_data_version},
        "rows": rows,
        "outcomes": outcomes,
        "complete": complete,
        "started": state.meta.started_at,
        "finished": state.meta.finished_at if complete else None,
        "partner_calls": {k: v for k, v in calls.items() if k != "token"},
        "token_grants": calls.get("token", 0),
        "reports": [os.fspath(p) for p in paths],
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if error := state.input.get("error"):
        summary["error"] = error
    if state.meta.parent_batch_id:
        summary["parent_batch_id"] = state.meta.parent_batch_id
    if merge:
        summary["merged"] = list(merge)
    try:
        summary_path = write_summary(target / summary_name, summary)
    except OSError as exc:
        raise UserError(f"{target / summary_name}: {exc.strerror or exc}") from None
    return BatchReport(summary, [*paths, summary_path])
