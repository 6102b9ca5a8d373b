"""The Excel reader: one sheet of an xlsx, xls or ods workbook as blocks of text cells.

A workbook holds typed cells, but ingest keeps everything as text until a rule parses it, and
the text must be what the user sees: ``cell_text`` writes ``12`` rather than ``12.0`` and dates
in ISO form, and ``date_cell_text`` also turns an Excel serial number in a date column into a
date. The reader is told which positions hold dates and the ID number, because only it can see
that a cell was a date or a number; what the columns mean is ingest's business. python-calamine
holds the sheet in memory; an .xlsx too large for that is streamed with openpyxl instead.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.ingest.schema import InputError
from pipeline.ingest.sniffing import FileFacts, RawFrame, blank_header

_EXCEL_EPOCH = dt.date(1899, 12, 30)
_MAX_SERIAL = 2958465  # 9999-12-31
_MIDNIGHT = dt.time()


def _number_text(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def cell_text(value: Any) -> str:
    """Excel cell value → the text a user would expect (ISO dates, no trailing ``.0``)."""
    kind = type(value)
    if kind is str:
        return str(value)
    if value is None:
        return ""
    if kind is bool:
        return "TRUE" if value else "FALSE"
    if kind is float or kind is int:
        return _number_text(value)
    if kind is dt.datetime:
        if value.time() == _MIDNIGHT:
            return str(value.date().isoformat())
        return str(value.isoformat(sep=" "))
    if kind is dt.date or kind is dt.time:
        return str(value.isoformat())
    return str(value)


def date_cell_text(value: Any) -> str:
    """A cell of a date column: date cells and Excel serial numbers become ISO dates."""
    kind = type(value)
    if kind is dt.datetime:
        return str(value.date().isoformat())
    if (kind is float or kind is int) and 1 <= value <= _MAX_SERIAL:
        return (_EXCEL_EPOCH + dt.timedelta(days=int(value))).isoformat()
    return cell_text(value)


# calamine holds a whole sheet in memory (~80 bytes a cell); above this much sheet XML an
# .xlsx is streamed with openpyxl's read-only mode instead: ~15x slower (about 1,200 rows/s at
# 50 columns), flat memory. 128 MB of XML is roughly 2.5-4 million cells, 200-350 MB held.
STREAM_ABOVE_XML_BYTES = 128 << 20


class ExcelReader:
    """One sheet of a workbook (xlsx, xls or ods): python-calamine, or openpyxl's streaming
    read-only mode for an .xlsx sheet too big to hold in memory."""

    def __init__(
        self,
        facts: FileFacts,
        sheet: str | None,
        *,
        stream_above_xml_bytes: int = STREAM_ABOVE_XML_BYTES,
    ) -> None:
        from python_calamine import CalamineWorkbook

        self.path = facts.path
        try:
            workbook = CalamineWorkbook.from_path(str(self.path))
            names = list(workbook.sheet_names)
        except Exception as exc:  # calamine raises several unrelated types for broken files
            if type(exc).__name__ == "PasswordError":
                raise InputError(
                    f"{self.path}: workbook is password-protected (encrypted); "
                    "save a copy without a password and use that"
                ) from None
            raise InputError(
                f"{self.path}: not a readable {facts.format} workbook ({_first_line(exc)})"
            ) from None
        if not names:
            raise InputError(f"{self.path}: workbook has no sheets")
        if sheet is None:
            # The first sheet a user sees: templates often hide a code-list sheet in front.
            visible = [
                m.name
                for m in workbook.sheets_metadata
                if str(m.visible).endswith("Visible") and str(m.typ).endswith("WorkSheet")
            ]
            self.sheet_name = (visible or names)[0]
        elif sheet in names:
            self.sheet_name = sheet
        else:
            raise InputError(
                f"{self.path}: no sheet named '{sheet}'; sheets: {', '.join(names)}"
            )
        self.streaming = (
            facts.format == "xlsx" and _largest_sheet_xml(self.path) > stream_above_xml_bytes
        )
        if not self.streaming:
            try:
                self._sheet = workbook.get_sheet_by_name(self.sheet_name)
            except Exception as exc:
                raise InputError(
                    f"{self.path}: sheet '{self.sheet_name}' cannot be read ({_first_line(exc)})"
                ) from None
        self.header_row = 0
        header: list[str] = []
        for number, row in enumerate(self._iter_rows(), start=1):
            texts = [cell_text(v).strip() for v in row]
            if any(texts):
                self.header_row, header = number, texts
                break
        if not header:
            raise InputError(f"{self.path}: sheet '{self.sheet_name}' is empty (no header row)")
        while header and not header[-1]:
            header.pop()
        self.headers = [cell or blank_header(i) for i, cell in enumerate(header, start=1)]

    def _iter_rows(self) -> Iterator[Sequence[Any]]:
        """Every sheet row from row 1 on (empty rows included, so positions are row numbers)."""
        if not self.streaming:
            yield from self._sheet.iter_rows()
            return
        import openpyxl

        try:
            book = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        except Exception as exc:
            raise InputError(
                f"{self.path}: not a readable xlsx workbook ({_first_line(exc)})"
            ) from None
        try:
            sheet = book[self.sheet_name]
            # Some writers record a wrong used range; without it rows come as they are.
            sheet.reset_dimensions()
            yield from sheet.iter_rows(values_only=True)
        finally:
            book.close()

    def frames(
        self, size: int, *, date_positions: Sequence[int] = (), id_position: int | None = None
    ) -> Iterator[RawFrame]:
        """Yield blocks of ``size`` non-blank rows, numbered by sheet row."""
        width = len(self.headers)
        dates = frozenset(date_positions)
        names = [f"c{i}" for i in range(width)]
        # Python strings cost ~60 bytes each; rows are packed into Arrow columns every
        # _PACK_ROWS rows so a chunk never holds more than that many of them at once.
        packed: list[Any] = []
        packed_rows = 0
        rows: list[list[str]] = []
        numbers: list[int] = []
        numeric_ids: list[int] = []
        for number, cells in enumerate(self._iter_rows(), start=1):
            if number <= self.header_row:
                continue
            values = cells[:width] if len(cells) >= width else [
                *cells, *([""] * (width - len(cells)))
            ]
            texts = [v if v.__class__ is str else _other_cell(i, v, dates)
                     for i, v in enumerate(values)]
            if not any(texts):
                continue
            if id_position is not None and values[id_position].__class__ in (float, int):
                numeric_ids.append(packed_rows + len(rows))
            rows.append(texts)
            numbers.append(number)
            if packed_rows + len(rows) >= size or len(rows) >= _PACK_ROWS:
                packed.append(pa.Table.from_arrays(_columns(rows, width), names=names))
                packed_rows += len(rows)
                rows = []
                if packed_rows >= size:
                    yield self._frame(packed, numbers, numeric_ids)
                    packed, packed_rows, numbers, numeric_ids = [], 0, [], []
        if rows:
            packed.append(pa.Table.from_arrays(_columns(rows, width), names=names))
        if packed:
            yield self._frame(packed, numbers, numeric_ids)

    def _frame(self, packed: list[Any], numbers: list[int], ids: list[int]) -> RawFrame:
        table = pa.concat_tables(packed)
        frame = table.to_pandas()
        frame.columns = pd.Index(self.headers)
        return RawFrame(frame, np.asarray(numbers, dtype=np.int64), list(ids), arrow=table)


_PACK_ROWS = 4096


def _other_cell(position: int, value: Any, dates: frozenset[int]) -> str:
    return date_cell_text(value) if position in dates else cell_text(value)


def _columns(rows: list[list[str]], width: int) -> list[Any]:
    return [pa.array([row[i] for row in rows], type=pa.large_string()) for i in range(width)]


def _largest_sheet_xml(path: Path) -> int:
    """Uncompressed size of the largest worksheet part of an .xlsx (0 if unreadable).

    The largest rather than the chosen sheet's: mapping names to parts means parsing the
    workbook's XML, and erring towards streaming costs only speed.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return max(
                (
                    info.file_size
                    for info in archive.infolist()
                    if info.filename.startswith("xl/worksheets/") and info.filename.endswith(".xml")
                ),
                default=0,
            )
    except (OSError, zipfile.BadZipFile):
        return 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return re.sub(r"\s+", " ", text[0])[:160] if text else type(exc).__name__
