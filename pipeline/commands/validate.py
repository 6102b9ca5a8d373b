"""``onboard validate``: run one file through ingest and the local rules, write the report.

No Redis and no partner are involved: 0 every row valid, 1 some rows invalid, 2 the file
(or an option, or the master data) cannot be used, with a one-line message saying what and
where.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.commands.setup import command, load_settings
from pipeline.core.errors import ExitCode, UserError, file_error
from pipeline.core.masterdata import load_master_data
from pipeline.core.results import CommandResult
from pipeline.core.settings import Settings
from pipeline.reports.writer import ReportWriter, validation_outcomes, write_summary

if TYPE_CHECKING:
    from pipeline.ingest.table import TableInfo

SUMMARY_NAME = "summary.json"


@dataclass(frozen=True, slots=True)
class ValidateOptions:
    """What ``onboard validate`` was asked for besides the file."""

    master_data_dir: Path | None = None
    column_map: Path | None = None
    out_dir: Path = Path("reports")
    sheet: str | None = None
    xlsx: bool = False
    day_first: bool | None = None


def _now() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@command
def validate_file(
    path: Path,
    *,
    master_data_dir: Path | None = None,
    column_map: Path | None = None,
    out_dir: Path = Path("reports"),
    sheet: str | None = None,
    xlsx: bool = False,
    day_first: bool | None = None,
    settings: Settings | None = None,
    today: date | None = None,
) -> CommandResult:
    """Validate ``path`` and write ``<out_dir>/<stem>.validation.csv`` (+ ``.xlsx`` when the
    input is a spreadsheet or ``xlsx`` is set) and ``<out_dir>/summary.json``."""
    options = ValidateOptions(master_data_dir, column_map, Path(out_dir), sheet, xlsx, day_first)
    return _validate(Path(path), options, settings or load_settings(), today or date.today())


def _validate(path: Path, options: ValidateOptions, settings: Settings, today: date
              ) -> CommandResult:
    # Imported here: ingest and validation pull in pandas and the rules, which the
    # CLI's other commands and ``--help`` do not need.
    from pipeline.ingest.schema import ColumnMap
    from pipeline.ingest.table import open_table
    from pipeline.rules.stream import validated_chunks
    from pipeline.rules.validation import Validator

    started = _now()
    updates: dict[str, Any] = {}
    if options.master_data_dir is not None:
        updates["master_data_dir"] = options.master_data_dir
    if options.day_first is not None:
        updates["day_first_dates"] = options.day_first
    rules = settings.validation.model_copy(update=updates)
    out_dir = options.out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: --out must be a directory, this is a file")
    try:
        master = load_master_data(rules.master_data_dir)
        mapping = ColumnMap.load(options.column_map) if options.column_map is not None else None
        table = open_table(path, sheet=options.sheet, column_map=mapping)
        info = table.info
        validator = Validator(master, rules, base_dir=path.resolve().parent, today=today)
        rows = invalid = 0
        codes: Counter[str] = Counter()
        with ReportWriter(
            out_dir, info.headers, name=f"{path.stem}.validation",
            xlsx=options.xlsx or info.format != "csv",
        ) as writer:
            for chunk, result in validated_chunks(table, validator):
                writer.write(chunk.raw, validation_outcomes(chunk.row_numbers, result.errors))
                rows += len(chunk.raw)
                for row_errors in result.errors.values():
                    if row_errors:
                        invalid += 1
                        codes.update(error.code for error in row_errors)
                # The normalised frame is as big as the chunk and not needed here: let it go
                # before the next chunk is taken, not after.
                del result
        reports = writer.paths
    except OSError as exc:
        # An unwritable output directory or a file vanishing mid-run: name the path.
        raise file_error(exc, out_dir) from None
    summary = _summary(path, info, master.version, master.source, rows, invalid, codes)
    summary.update(reports=[os.fspath(p) for p in reports], started=started, finished=_now())
    try:
        write_summary(out_dir / SUMMARY_NAME, summary)
    except OSError as exc:
        raise file_error(exc, out_dir / SUMMARY_NAME) from None
    return CommandResult(
        ExitCode.OTHER if invalid else ExitCode.DONE, summary=summary,
        reports=[*reports, out_dir / SUMMARY_NAME],
    )


def _summary(
    path: Path, info: TableInfo, version: str, source: str, rows: int, invalid: int,
    codes: Counter[str],
) -> dict[str, Any]:
    return {
        "input": {
            "file": path.name, "sha256": info.sha256, "format": info.format,
            "sheet": info.sheet,
        },
        "master_data": {"version": version, "source": source},
        "rows": rows,
        "valid": rows - invalid,
        "invalid": invalid,
        "error_codes": dict(codes.most_common()),
    }
