"""A streaming one-sheet .xlsx writer whose cells are built from Arrow columns.

openpyxl's write-only mode builds and serialises an object per cell in Python, far too slow for
an Excel report of 100,000 rows. Here the sheet XML of a whole chunk is assembled with
vectorised Arrow string functions and its bytes go straight into the zip stream; the Python
work per chunk is a fixed handful of calls. The package holds only what Excel, LibreOffice,
openpyxl and calamine need: the workbook, one worksheet with inline strings (no shared-string
table to keep in memory), a minimal style sheet, and the header row frozen.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml"

_STATIC_PARTS = {
    "[Content_Types].xml": (
        f'{_HEAD}<Types xmlns="{_PKG}/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="{_TYPE}.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        f'ContentType="{_TYPE}.worksheet+xml"/>'
        f'<Override PartName="/xl/styles.xml" ContentType="{_TYPE}.styles+xml"/>'
        "</Types>"
    ),
    "_rels/.rels": (
        f'{_HEAD}<Relationships xmlns="{_PKG}/relationships">'
        f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
        "</Relationships>"
    ),
    "xl/_rels/workbook.xml.rels": (
        f'{_HEAD}<Relationships xmlns="{_PKG}/relationships">'
        f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{_REL}/styles" Target="styles.xml"/>'
        "</Relationships>"
    ),
    "xl/styles.xml": (
        f'{_HEAD}<styleSheet xmlns="{_MAIN}">'
        '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        "</cellStyleXfs>"
        '<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        "</cellXfs>"
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        "</styleSheet>"
    ),
}

# Characters XML 1.0 cannot carry at all; they are dropped (the CSV report keeps them).
_ILLEGAL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
_TEXT_OPEN = '" t="inlineStr"><is><t xml:space="preserve">'
_TEXT_CLOSE = "</t></is></c>"


def column_letter(index: int) -> str:
    """Spreadsheet column name of a 0-based column index (0 → A, 26 → AA)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _large(text: str) -> pa.Scalar:
    """A large-string scalar (Arrow's string functions want one type throughout)."""
    return pa.scalar(text, pa.large_string())


def _escaped(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Text made safe inside an XML element."""
    values = pc.replace_substring_regex(values, _ILLEGAL, "")
    values = pc.replace_substring(values, "&", "&amp;")
    values = pc.replace_substring(values, "<", "&lt;")
    return pc.replace_substring(values, ">", "&gt;")


def _concatenated(values: pa.Array | pa.ChunkedArray) -> memoryview:
    """All strings of an array back to back: the used slice of its data buffer, no copy."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    _, offsets_buffer, data_buffer = array.buffers()
    if len(array) == 0 or data_buffer is None:
        return memoryview(b"")
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)
    start = int(offsets[array.offset])
    end = int(offsets[array.offset + len(array)])
    return memoryview(data_buffer)[start:end]


class XlsxStream:
    """Writes one sheet to ``path``: a header row, then chunks of rows, then ``close()``.

    Text cells are inline strings; ``number_columns`` (0-based) hold integers and are written
    as numbers. Empty text cells are left out, as Excel itself does.
    """

    def __init__(
        self,
        path: Path,
        headers: Sequence[str],
        *,
        number_columns: Sequence[int] = (),
        sheet_name: str = "report",
    ) -> None:
        self.path = Path(path)
        self._letters = [column_letter(i) for i in range(len(headers))]
        self._numbers = set(number_columns)
        self._next_row = 2
        self._zip = zipfile.ZipFile(self.path, "w", zipfile.ZIP_DEFLATED, compresslevel=1)
        for name, text in _STATIC_PARTS.items():
            self._zip.writestr(name, text)
        self._zip.writestr(
            "xl/workbook.xml",
            f'{_HEAD}<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
            f'<sheet name="{escape(sheet_name, {chr(34): "&quot;"})}" sheetId="1" r:id="rId1"/>'
            "</sheets></workbook>",
        )
        self._sheet = self._zip.open("xl/worksheets/sheet1.xml", "w", force_zip64=True)
        header_cells = "".join(
            f'<c r="{letter}1{_TEXT_OPEN}{escape(re.sub(_ILLEGAL, "", text))}{_TEXT_CLOSE}'
            for letter, text in zip(self._letters, headers, strict=True)
        )
        self._sheet.write(
            (
                f'{_HEAD}<worksheet xmlns="{_MAIN}"><sheetViews><sheetView workbookViewId="0">'
                '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
                "</sheetView></sheetViews><sheetData>"
                f'<row r="1">{header_cells}</row>'
            ).encode()
        )

    @property
    def rows_written(self) -> int:
        """Data rows written so far (the header not counted)."""
        return self._next_row - 2

    def append(self, columns: Sequence[pa.Array | pa.ChunkedArray]) -> None:
        """Write the next rows; ``columns`` are in header order, all of one length."""
        count = len(columns[0]) if columns else 0
        if count == 0:
            return
        numbers = pa.array(np.arange(self._next_row, self._next_row + count), pa.int64())
        row_text = numbers.cast(pa.large_string())
        parts: list[pa.Array | pa.ChunkedArray | pa.Scalar] = [
            _large('<row r="'),
            row_text,
            _large('">'),
        ]
        for i, column in enumerate(columns):
            letter = self._letters[i]
            if i in self._numbers:
                text = pc.cast(column, pa.large_string())
                cell = pc.binary_join_element_wise(
                    _large(f'<c r="{letter}'), row_text, _large('"><v>'), text,
                    _large("</v></c>"), _large(""),
                )  # fmt: skip
                parts.append(pc.if_else(pc.is_null(column), _large(""), cell))
                continue
            text = column if column.type == pa.large_string() else column.cast(pa.large_string())
            cell = pc.binary_join_element_wise(
                _large(f'<c r="{letter}'), row_text, _large(_TEXT_OPEN), _escaped(text),
                _large(_TEXT_CLOSE), _large(""),
            )  # fmt: skip
            parts.append(pc.if_else(pc.equal(text, _large("")), _large(""), cell))
        parts.append(_large("</row>"))
        rows = pc.binary_join_element_wise(*parts, _large(""))
        self._sheet.write(_concatenated(rows))
        self._next_row += count

    def close(self) -> None:
        """Finish the sheet and the zip file."""
        self._sheet.write(b"</sheetData></worksheet>")
        self._sheet.close()
        self._zip.close()

    def abort(self) -> None:
        """Close the file without finishing it (the caller removes it)."""
        try:
            self._sheet.close()
        finally:
            self._zip.close()
