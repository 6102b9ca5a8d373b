"""``onboard validate``: run one file through ingest and the local rules, write the report.

No Redis and no partner are involved. The function returns the summary and the exit code
instead of printing or exiting, so the CLI stays a thin shell and tests can call it directly:
0 every row valid, 1 some rows invalid, 2 the file (or an option, or the master data) cannot
be used, with a one-line message saying what and where.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from pipeline.core.masterdata import MasterDataError, load_master_data
from pipeline.core.settings import Settings
from pipeline.reports.writer import ReportError, ReportWriter, validation_outcomes, write_summary

if TYPE_CHECKING:
    from pipeline.ingest.table import Chunk

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNUSABLE = 2

SUMMARY_NAME = "summary.json"
# Rows per chunk: per-chunk overheads of the rules are noticeable below this (25k cost ~10 %
# more CPU), and two chunks alive at once stay within the 400 MB budget for a million rows.
CHUNK_ROWS = 50_000


class UnusableInput(Exception):
    """The run cannot start or finish for a reason the user can fix; one-line message."""


@dataclass(slots=True)
class ValidateResult:
    """What ``validate_file`` produced: exit code, summary (None when unusable), message."""

    exit_code: int
    summary: dict[str, Any] | None = None
    error: str | None = None
    reports: list[Path] = field(default_factory=list)


def _now() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _settings_error(exc: ValidationError) -> str:
    """One line naming the first bad setting (pydantic's own text spans several lines)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"bad setting ONBOARD_{where.upper().replace('.', '__')}: {first['msg']}"


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
) -> ValidateResult:
    """Validate ``path`` and write ``<out_dir>/<stem>.validation.csv`` (+ ``.xlsx`` when the
    input is a spreadsheet or ``xlsx`` is set) and ``<out_dir>/summary.json``.

    Never raises for a user mistake (unusable file, bad column map, bad master data or
    settings, unwritable output directory): those come back with exit code 2 and ``error``.
    """
    try:
        return _run(
            Path(path),
            master_data_dir=master_data_dir,
            column_map=column_map,
            out_dir=Path(out_dir),
            sheet=sheet,
            xlsx=xlsx,
            day_first=day_first,
            settings=settings,
            today=today,
        )
    except UnusableInput as exc:
        # One line whatever the underlying library put in its message.
        return ValidateResult(EXIT_UNUSABLE, error=" ".join(str(exc).splitlines()))


def _run(
    path: Path,
    *,
    master_data_dir: Path | None,
    column_map: Path | None,
    out_dir: Path,
    sheet: str | None,
    xlsx: bool,
    day_first: bool | None,
    settings: Settings | None,
    today: date | None,
) -> ValidateResult:
    """The body of ``validate_file``; user mistakes surface as ``UnusableInput``."""
    # Imported here: ingest and validation pull in pandas and the rules, which the
    # CLI's other commands and ``--help`` do not need.
    from pipeline.ingest.schema import ColumnMap
    from pipeline.ingest.table import InputError, open_table
    from pipeline.rules.validation import Validator

    started = _now()
    try:
        settings = settings or Settings()
    except ValidationError as exc:
        raise UnusableInput(_settings_error(exc)) from None
    updates: dict[str, Any] = {}
    if master_data_dir is not None:
        updates["master_data_dir"] = master_data_dir
    if day_first is not None:
        updates["day_first_dates"] = day_first
    rules = settings.validation.model_copy(update=updates)
    if out_dir.exists() and not out_dir.is_dir():
        raise UnusableInput(f"{out_dir}: --out must be a directory, this is a file")
    try:
        master = load_master_data(rules.master_data_dir)
        mapping = ColumnMap.load(column_map) if column_map is not None else None
        table = open_table(path, sheet=sheet, column_map=mapping)
        info = table.info
        validator = Validator(
            master, rules, base_dir=path.resolve().parent, today=today or date.today()
        )
        rows = invalid = 0
        codes: Counter[str] = Counter()
        # One helper thread writes the previous chunk's report and then reads the next chunk
        # while this thread validates the current one. Reading and writing are mostly Arrow
        # code that releases the GIL, so a second core, when free, takes them off the
        # critical path. One helper, not two: then at most two chunks are alive at once
        # (two helpers held three and went past the memory budget). The pool is left (its
        # work finished) before the writer, so an error never aborts a report mid-write.
        with (
            ReportWriter(
                out_dir,
                info.headers,
                name=f"{path.stem}.validation",
                xlsx=xlsx or info.format != "csv",
            ) as writer,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate-io") as pool,
        ):
            chunks = iter(table.chunks(CHUNK_ROWS))
            ahead: Future[Chunk | None] = pool.submit(next, chunks, None)
            behind: Future[None] | None = None
            while (chunk := ahead.result()) is not None:
                ahead = pool.submit(next, chunks, None)
                result = validator.validate_chunk(chunk)
                outcomes = validation_outcomes(chunk.row_numbers, result.errors)
                if behind is not None:
                    behind.result()
                behind = pool.submit(writer.write, chunk.raw, outcomes)
                rows += len(chunk.raw)
                for row_errors in result.errors.values():
                    if row_errors:
                        invalid += 1
                        codes.update(error.code for error in row_errors)
                # The normalised frame is as big as the chunk and not needed here: let it go
                # before the next chunk is validated, not after.
                del result, outcomes
            if behind is not None:
                behind.result()
        reports = writer.paths
    except (InputError, MasterDataError, ReportError) as exc:
        raise UnusableInput(str(exc)) from None
    except OSError as exc:
        # An unwritable output directory or a file vanishing mid-run: name the path.
        where = exc.filename or out_dir
        raise UnusableInput(f"{where}: {exc.strerror or exc}") from None
    summary: dict[str, Any] = {
        "input": {
            "file": path.name,
            "sha256": info.sha256,
            "format": info.format,
            "sheet": info.sheet,
        },
        "master_data": {"version": master.version, "source": master.source},
        "rows": rows,
        "valid": rows - invalid,
        "invalid": invalid,
        "error_codes": dict(codes.most_common()),
        "reports": [os.fspath(p) for p in reports],
        "started": started,
        "finished": _now(),
    }
    try:
        write_summary(out_dir / SUMMARY_NAME, summary)
    except OSError as exc:
        raise UnusableInput(f"{out_dir / SUMMARY_NAME}: {exc.strerror or exc}") from None
    return ValidateResult(
        EXIT_INVALID if invalid else EXIT_VALID,
        summary=summary,
        reports=[*reports, out_dir / SUMMARY_NAME],
    )
