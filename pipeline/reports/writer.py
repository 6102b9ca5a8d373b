"""Row-outcome reports: the input's own columns plus the outcome columns, as CSV and .xlsx.

A report is written while the input streams through, chunk by chunk, to temporary files in
the target directory; ``close()`` renames them into place, so a reader never sees half a
report and a crash leaves the previous report intact. ``summary.json`` is written the same way.

Because a report carries the input columns unchanged, it is also a valid input: a user fixes
the invalid rows in it and feeds it back. Report columns already present in the input (the
previous run's ``row_number``, ``outcome``, ...) are therefore dropped from the carried input
columns and written afresh, rather than duplicated.

Formula injection: a cell that a spreadsheet would evaluate (``=cmd|...``, ``@SUM(...)``,
``+HYPERLINK(...)``) is prefixed with ``'`` so it shows as text. A leading ``+`` or ``-``
followed only by digits, spaces and ``( ) . -`` is *not* touched: that is a phone number
(``+971 50 123 4567``) or a plain number, which a spreadsheet cannot turn into a function
call, and prefixing it would change a value that a rerun feeds back to the partner.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.core.atomic import atomic_write_text, temp_path
from pipeline.core.errors import UserError
from pipeline.core.outcomes import Outcome, RowError, join_errors
from pipeline.reports.xlsxstream import XlsxStream

REPORT_COLUMNS = ("row_number", "outcome", "error_code", "error_field", "error_message")
"""Outcome columns every report ends with, in this order (extra columns follow them)."""

PIPELINE_REPORT_COLUMNS = (
    "row_number", "outcome", "ecrn", "error_code", "error_field", "error_message", "attempts",
)
"""Outcome columns of a pipeline run's report, in the order the issue specifies."""

VALID = "valid"
"""Outcome of a row that passed every local rule in a validate-only report.

The pipeline's closed outcome set (``pipeline.core.outcomes.Outcome``) has no such value because a
row that passes validation goes on to the partner; ``onboard validate`` stops before that, so
its reports say ``valid`` or ``invalid``."""

EXCEL_MAX_ROWS = 1_048_576
"""Rows one Excel sheet holds, header included."""

# Always dangerous first characters (OWASP's list): formula, DDE/at-function, and the
# tab/carriage return that some spreadsheets skip before evaluating what follows.
_ALWAYS = "=@\t\r"
_SIGNED_SAFE = re.compile(r"[+-][0-9 ().\-]*")
# The same test as one RE2 pattern for the vectorised path: a `+`/`-` cell is dangerous when
# any later character is outside the safe set; (?s) lets `.` cross embedded newlines.
_RE2_DANGEROUS = r"(?s)^(?:[=@\t\r]|[+-].*[^0-9 ().\-])"
_TRIGGER_BYTES = np.zeros(256, dtype=bool)
_TRIGGER_BYTES[[ord(c) for c in "=@\t\r+-"]] = True


class ReportError(UserError):
    """A report cannot be written (e.g. more rows than an Excel sheet holds)."""


def neutralise(value: str) -> str:
    """Return ``value`` made safe to open in a spreadsheet: formulas get a leading ``'``.

    Cells starting with ``=``, ``@``, tab or carriage return are always prefixed; cells
    starting with ``+`` or ``-`` only when something other than digits, spaces and
    ``( ) . -`` follows, so phone numbers and plain numbers keep their value.
    """
    if not value:
        return value
    first = value[0]
    if first in _ALWAYS:
        return "'" + value
    if first in "+-" and not _SIGNED_SAFE.fullmatch(value):
        return "'" + value
    return value


def _has_trigger(values: pa.Array | pa.ChunkedArray) -> bool:
    """Whether any cell starts with a byte that could make it a formula (``= @ + -`` tab CR).

    Reads the first byte of every cell straight from the Arrow buffers: far cheaper than a
    regular expression, and most columns (names, codes, dates) never hold such a byte.
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        _, offsets_buffer, data_buffer = chunk.buffers()
        if data_buffer is None or data_buffer.size == 0:
            continue
        width = np.dtype(np.int64 if pa.types.is_large_string(chunk.type) else np.int32)
        offsets = np.frombuffer(offsets_buffer, dtype=width)[
            chunk.offset : chunk.offset + len(chunk) + 1
        ].astype(np.int64, copy=False)
        starts = offsets[:-1][offsets[1:] > offsets[:-1]]
        if _TRIGGER_BYTES[np.frombuffer(data_buffer, dtype=np.uint8)[starts]].any():
            return True
    return False


def _neutralise_array(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Vectorised ``neutralise`` over an Arrow string array (same rules, RE2 engine)."""
    if not _has_trigger(values):
        return values
    dangerous = pc.match_substring_regex(values, _RE2_DANGEROUS)
    if not pc.any(dangerous).as_py():
        return values
    quote, nothing = pa.scalar("'", values.type), pa.scalar("", values.type)
    prefixed = pc.binary_join_element_wise(quote, values, nothing)
    return pc.if_else(dangerous, prefixed, values)


def _as_text(series: pd.Series) -> pa.Array | pa.ChunkedArray:
    """One column as an Arrow large-string array; missing values become empty strings."""
    try:
        # Zero-copy for pandas' Arrow-backed strings (what ingest produces).
        array = pa.array(series)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = pa.array(series.astype(str).to_numpy(dtype=object), type=pa.large_string())
    if not pa.types.is_large_string(array.type):
        array = array.cast(pa.large_string())
    if array.null_count:
        array = pc.fill_null(array, "")
    return array


def validation_outcomes(
    row_numbers: pd.Series,
    errors: Mapping[int, Sequence[RowError]],
) -> pd.DataFrame:
    """The outcome columns of a validate-only report for one chunk.

    ``errors`` is keyed by row number and holds only rows with errors; every other row is
    ``valid``. The frame has the chunk's index so it lines up with the chunk's raw frame.
    Columns are Arrow-backed and built column-wise: only the failing rows cost Python work.
    """
    numbers = row_numbers.to_numpy(dtype=np.int64)
    count = len(numbers)
    failing = sorted((int(n), list(e)) for n, e in errors.items() if e)
    keys = np.array([n for n, _ in failing], dtype=np.int64)
    # Row numbers rise through a chunk, so a binary search finds each failing row.
    positions = np.searchsorted(numbers, keys) if len(keys) else keys
    found = positions < count
    found[found] &= numbers[positions[found]] == keys[found]
    mask = np.zeros(count, dtype=bool)
    mask[positions[found]] = True
    joined = [join_errors(e) for (_, e), ok in zip(failing, found, strict=True) if ok]
    empty = pa.array(np.full(count, "", dtype=object), type=pa.large_string())
    outcome = pc.if_else(
        pa.array(mask),
        pa.scalar(Outcome.INVALID.value, pa.large_string()),
        pa.scalar(VALID, pa.large_string()),
    )

    def scatter(part: int) -> pa.Array:
        if not joined:
            return empty
        values = pa.array([j[part] for j in joined], type=pa.large_string())
        return pc.replace_with_mask(empty, pa.array(mask), values)

    columns = {
        "row_number": pd.Series(numbers, index=row_numbers.index),
        "outcome": outcome,
        "error_code": scatter(0),
        "error_field": scatter(1),
        "error_message": scatter(2),
    }
    return pd.DataFrame(
        {
            name: column
            if isinstance(column, pd.Series)
            else pd.Series(pd.arrays.ArrowExtensionArray(column), index=row_numbers.index)
            for name, column in columns.items()
        },
        index=row_numbers.index,
    )


class ReportWriter:
    """Streams report rows to ``<out_dir>/<name>.csv`` (and ``.xlsx``), renamed into place
    by ``close()``.

    Columns: the input headers in their order (minus any that are report columns), then
    ``REPORT_COLUMNS``, then ``extra_columns``. Use as a context manager: leaving the block
    with an exception removes the temporary files and keeps any earlier report.
    """

    def __init__(
        self,
        out_dir: Path,
        input_headers: Sequence[str],
        *,
        name: str,
        extra_columns: Sequence[str] = (),
        xlsx: bool = False,
        columns: Sequence[str] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        # ``columns`` replaces the default outcome columns outright (the pipeline's report puts
        # ``ecrn`` right after ``outcome``); it must start with ``row_number``.
        self.outcome_columns = (
            tuple(columns) if columns is not None else (*REPORT_COLUMNS, *extra_columns)
        )
        if self.outcome_columns[:1] != ("row_number",):
            raise ValueError("report columns must start with row_number")
        reserved = {c.strip().lower() for c in self.outcome_columns}
        # Positions of the input columns carried into the report (see module docstring).
        self._keep = [i for i, h in enumerate(input_headers) if h.strip().lower() not in reserved]
        self.headers = [input_headers[i] for i in self._keep] + list(self.outcome_columns)
        self.csv_path = self.out_dir / f"{name}.csv"
        self.xlsx_path: Path | None = self.out_dir / f"{name}.xlsx" if xlsx else None
        self.rows_written = 0
        self._closed = False
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._csv_tmp = temp_path(self.csv_path)
        self._xlsx_tmp = temp_path(self.xlsx_path) if self.xlsx_path else None
        self._csv_file: IO[bytes] = self._csv_tmp.open("wb")
        # A BOM so that Excel opens the CSV as UTF-8 (Arabic names, accents); our reader and
        # every other common one skip it.
        self._csv_file.write(b"\xef\xbb\xbf")
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow([neutralise(h) for h in self.headers])
        self._csv_file.write(header.getvalue().encode("utf-8"))
        self._schema = pa.schema(
            [pa.field(f"c{i}", pa.large_string()) for i in range(len(self.headers) - 1)]
        )
        self._csv_writer: pacsv.CSVWriter | None = None
        self._xlsx: XlsxStream | None = None
        if self._xlsx_tmp is not None:
            self._xlsx = XlsxStream(
                self._xlsx_tmp,
                [neutralise(h) for h in self.headers],
                number_columns=[len(self._keep)],
            )

    def write(self, raw_chunk: pd.DataFrame, outcome_columns: pd.DataFrame) -> None:
        """Append one chunk: ``raw_chunk`` holds the input columns in input order (values
        exactly as read), ``outcome_columns`` the report columns, row for row."""
        if self._closed:
            raise ReportError(f"{self.csv_path}: report already closed")
        count = len(raw_chunk)
        if len(outcome_columns) != count:
            raise ValueError("raw chunk and outcome columns differ in length")
        if count == 0:
            return
        if self._xlsx is not None and self.rows_written + count + 1 > EXCEL_MAX_ROWS:
            raise ReportError(
                f"{self.xlsx_path}: more than {EXCEL_MAX_ROWS - 1:,} rows do not fit in an "
                "Excel sheet; write the CSV report only"
            )
        empty = pa.array([""] * count, type=pa.large_string())
        arrays: list[pa.Array | pa.ChunkedArray] = []
        for i in self._keep:
            column = _as_text(raw_chunk.iloc[:, i]) if i < raw_chunk.shape[1] else empty
            arrays.append(_neutralise_array(column))
        for column_name in self.outcome_columns:
            if column_name == "row_number":
                continue
            if column_name in outcome_columns.columns:
                arrays.append(_neutralise_array(_as_text(outcome_columns[column_name])))
            else:
                arrays.append(empty)
        numbers = pa.array(outcome_columns["row_number"].to_numpy(dtype="int64"), type=pa.int64())
        row_position = len(self._keep)
        table = pa.Table.from_arrays(arrays, schema=self._schema)
        csv_table = table.add_column(row_position, pa.field("row_number", pa.int64()), numbers)
        if self._csv_writer is None:
            # Quoting every cell skips the writer's per-cell scan for characters needing quotes.
            options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
            self._csv_writer = pacsv.CSVWriter(
                self._csv_file, csv_table.schema, write_options=options
            )
        self._csv_writer.write_table(csv_table)
        if self._xlsx is not None:
            self._xlsx.append(csv_table.columns)
        self.rows_written += count

    def close(self) -> list[Path]:
        """Finish the files and rename them into place; returns the final paths."""
        if self._closed:
            return self.paths
        if self._csv_writer is not None:
            self._csv_writer.close()
        self._csv_file.flush()
        os.fsync(self._csv_file.fileno())
        self._csv_file.close()
        if self._xlsx is not None:
            self._xlsx.close()
        os.replace(self._csv_tmp, self.csv_path)
        if self._xlsx_tmp is not None and self.xlsx_path is not None:
            os.replace(self._xlsx_tmp, self.xlsx_path)
        self._closed = True
        return self.paths

    def abort(self) -> None:
        """Drop the temporary files; any earlier report at the final paths stays as it was."""
        if self._closed:
            return
        self._closed = True
        self._csv_file.close()
        if self._xlsx is not None:
            self._xlsx.abort()
        for tmp in (self._csv_tmp, self._xlsx_tmp):
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    @property
    def paths(self) -> list[Path]:
        """The report files this writer produces (CSV first)."""
        return [self.csv_path] + ([self.xlsx_path] if self.xlsx_path else [])

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_summary(path: Path, summary: Mapping[str, Any]) -> Path:
    """Write ``summary`` as indented JSON to ``path`` atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n"
    return atomic_write_text(path, text)
