"""Input files in: ``open_table(path)`` checks a CSV or workbook and streams it as text chunks.

Everything stays text (``NA`` is Namibia, ``0012`` keeps its zeros) until a rule parses it.
Each :class:`Chunk` carries the cells as read under the file's own headers (``raw``, for the
report), the canonical columns trimmed and with column-map constants applied (``rows``, for the
rules), the line each record starts on as the user sees it (``row_numbers``), and problems only
the reader can see (``read_errors``, e.g. an ID number that Excel turned into a number).

Blank lines and fully empty rows are skipped (their line numbers still count). Anything that
makes the whole file unusable raises :class:`InputError` with a one-line message naming the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc

from pipeline.core.outcomes import RowError
from pipeline.core.settings import MANDATORY_COLUMNS
from pipeline.ingest.csv import CsvReader
from pipeline.ingest.excel import ExcelReader
from pipeline.ingest.schema import (
    CANONICAL_COLUMNS,
    DATE_COLUMNS,
    ColumnMap,
    InputError,
    normalise_header,
    resolve_headers,
)
from pipeline.ingest.sniffing import FileFacts, RawFrame, inspect_file

__all__ = ["Chunk", "InputError", "Table", "TableInfo", "open_table"]

EXCEL_NUMBER = "excel_number"
_EXCEL_NUMBER_MESSAGE = (
    "Excel stored this ID number as a number, so digits may be lost; "
    "format the column as Text and enter the number again"
)
# "7.84199554586091E+14" (what Excel writes for a long number) or "784199554586091.0".
_NUMBER_AS_TEXT = r"\d+(?:\.\d*)?[eE][+-]?\d+|\d+\.0*"


@dataclass(frozen=True, slots=True)
class TableInfo:
    """Facts about an opened input file, fixed before any row is read."""

    path: Path
    format: str  # "csv", "xlsx", "xls" or "ods"
    encoding: str | None
    delimiter: str | None
    headers: list[str]  # as in the file, in order (a blank header becomes "(column N)")
    canonical: dict[str, str]  # file header → canonical column, recognised headers only
    sha256: str
    sheet: str | None


@dataclass(slots=True)
class Chunk:
    """A block of consecutive records; all parts share one RangeIndex.

    ``raw``: the file's columns, cells as read ("" when empty). ``rows``: every canonical
    column in canonical order, trimmed, constants applied ("" when empty). ``row_numbers``:
    the line (CSV, header = 1) or sheet row (Excel) where each record starts.
    ``read_errors``: problems the reader saw, keyed by row number.
    """

    raw: pd.DataFrame
    rows: pd.DataFrame
    row_numbers: pd.Series[int]
    read_errors: dict[int, list[RowError]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.raw)


class Table:
    """An opened input file: its :class:`TableInfo` and a stream of :class:`Chunk`."""

    def __init__(
        self, info: TableInfo, reader: CsvReader | ExcelReader, column_map: ColumnMap
    ) -> None:
        self.info = info
        self._reader = reader
        self._constants = column_map.constants
        self._source_of = {canonical: header for header, canonical in info.canonical.items()}
        self._position = {header: i for i, header in enumerate(info.headers)}

    def chunks(self, size: int = 50_000) -> Iterator[Chunk]:
        """Stream the records in chunks of at most ``size``; each call starts from the top."""
        if size < 1:
            raise ValueError("chunk size must be at least 1")
        if isinstance(self._reader, ExcelReader):
            positions = self._position
            dates = [positions[self._source_of[c]] for c in DATE_COLUMNS if c in self._source_of]
            id_header = self._source_of.get("id_number")
            id_position = positions[id_header] if id_header is not None else None
            frames: Iterable[RawFrame] = self._reader.frames(
                size, date_positions=dates, id_position=id_position
            )
        else:
            frames = self._reader.frames(size)
        for raw in frames:
            yield self._chunk(raw)

    def _chunk(self, raw: RawFrame) -> Chunk:
        frame = raw.frame
        index = frame.index
        columns: dict[str, pd.Series[str]] = {}
        for canonical in CANONICAL_COLUMNS:
            header = self._source_of.get(canonical)
            constant = self._constants.get(canonical, "")
            if header is None:
                columns[canonical] = pd.Series(constant, index=index, dtype="str")
                continue
            values = _trimmed(frame[header], raw.arrow, self._position[header])
            if constant:
                values = values.where(values != "", constant)
            columns[canonical] = values
        rows = pd.DataFrame(columns)
        row_numbers = pd.Series(raw.row_numbers, index=index, dtype="int64", name="row_number")
        errors: dict[int, list[RowError]] = {}
        flagged = set(raw.numeric_ids)
        if "id_number" in self._source_of:
            looks_numeric = rows["id_number"].str.fullmatch(_NUMBER_AS_TEXT)
            flagged.update(int(i) for i in looks_numeric[looks_numeric].index)
        for position in sorted(flagged):
            number = int(raw.row_numbers[position])
            errors[number] = [RowError(EXCEL_NUMBER, "id_number", _EXCEL_NUMBER_MESSAGE)]
        return Chunk(raw=frame, rows=rows, row_numbers=row_numbers, read_errors=errors)


def _trimmed(values: pd.Series[str], arrow: Any, position: int) -> pd.Series[str]:
    """The column with surrounding whitespace removed.

    With the Arrow table at hand the trim runs there, and a column the trim leaves unchanged
    (the usual case) is shared with ``raw`` instead of stored twice: a chunk's memory is
    dominated by its text, so this nearly halves it.
    """
    if arrow is None:
        return values.str.strip()
    column = arrow.column(position)
    trimmed = pc.utf8_trim_whitespace(column)
    if pc.sum(pc.binary_length(trimmed)) == pc.sum(pc.binary_length(column)):
        return values
    result: pd.Series[str] = trimmed.to_pandas()
    result.index = values.index
    return result


def open_table(
    path: Path | str,
    *,
    sheet: str | None = None,
    column_map: ColumnMap | Path | str | None = None,
    required: Iterable[str] | None = None,
) -> Table:
    """Open an input file and check its layout; rows are read later by ``Table.chunks``.

    ``sheet`` picks a worksheet by name (workbooks only; the first sheet by default).
    ``column_map`` is a :class:`ColumnMap` or the path of its TOML file. ``required`` lists the
    columns that must be present (from the file or a constant); by default
    ``pipeline.core.settings.MANDATORY_COLUMNS`` (pass ``settings.validation.mandatory_columns``).
    Raises :class:`InputError` when the file cannot be used.
    """
    path = Path(path)
    cmap = _column_map(column_map)
    facts = inspect_file(path)
    reader = _reader(facts, sheet)
    headers = reader.headers
    _check_unique(path, headers)
    try:
        canonical = resolve_headers(headers, cmap)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    present = set(canonical.values()) | {c for c, v in cmap.constants.items() if v}
    wanted = MANDATORY_COLUMNS if required is None else tuple(required)
    missing = [column for column in wanted if column not in present]
    if missing:
        raise InputError(
            f"{path}: missing required column(s): {', '.join(missing)}"
            + ("" if cmap.columns else " (a --column-map can map your own headers)")
        )
    info = TableInfo(
        path=path,
        format=facts.format,
        encoding=reader.encoding if isinstance(reader, CsvReader) else None,
        delimiter=reader.delimiter if isinstance(reader, CsvReader) else None,
        headers=list(headers),
        canonical=canonical,
        sha256=facts.sha256,
        sheet=reader.sheet_name if isinstance(reader, ExcelReader) else None,
    )
    return Table(info, reader, cmap)


def _column_map(column_map: ColumnMap | Path | str | None) -> ColumnMap:
    if column_map is None:
        return ColumnMap()
    if isinstance(column_map, ColumnMap):
        return column_map
    return ColumnMap.load(column_map)


def _reader(facts: FileFacts, sheet: str | None) -> CsvReader | ExcelReader:
    if facts.format == "csv":
        # A sheet name means nothing for a text file; it is ignored rather than refused so one
        # setting can serve a drop folder that receives both kinds of file.
        return CsvReader(facts)
    return ExcelReader(facts, sheet)


def _check_unique(path: Path, headers: list[str]) -> None:
    """Two headers that normalise alike would be one column to the rules: refuse the file."""
    seen: dict[str, str] = {}
    for header in headers:
        key = normalise_header(header) or header
        if key in seen:
            raise InputError(
                f"{path}: duplicate column '{header}' (same as '{seen[key]}' "
                "once case, spaces and punctuation are ignored)"
            )
        seen[key] = header
