"""Low-level readers behind :mod:`pipeline.ingest.table`: what a file is, and its cells as text.

``inspect_file`` looks at the bytes (never the file name) to tell a CSV from a workbook, an
encrypted workbook or something that is no table at all, and hashes the file on the way.
``CsvReader`` streams a delimited text file through pyarrow's CSV reader; ``ExcelReader`` walks
a sheet with python-calamine. Both hand out :class:`RawFrame` blocks: every cell as text, plus
the line (or sheet row) each record starts on. Column meaning is ingest's business; the Excel
reader is only told which positions hold dates and the ID number, because only it can see that
a cell was a date or a number.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.ingest.schema import InputError

_BLOCK = 1 << 20
_SAMPLE = 1 << 16
# What the CSV reader decodes to find the delimiter, the header and its width.
_TEXT_SAMPLE = 1 << 18
_DELIMITERS = (",", ";", "\t", "|")
_CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"
_ENCRYPTED_MARK = "EncryptedPackage".encode("utf-16-le")
# Formats people rename to .csv by mistake; named in the message so the user knows what it is.
_KNOWN_BINARY = (
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)
# Single-byte code pages a bank export plausibly uses; charset-normalizer picks among these so
# that a short sample cannot be "detected" as some exotic multi-byte encoding.
_LEGACY_ENCODINGS = (
    "cp1252",
    "latin_1",
    "iso8859_15",
    "cp1250",
    "cp1251",
    "cp1253",
    "cp1254",
    "cp1256",
    "iso8859_2",
    "iso8859_5",
    "iso8859_6",
    "iso8859_7",
    "cp850",
    "cp437",
)
_EXCEL_EPOCH = dt.date(1899, 12, 30)
_MAX_SERIAL = 2958465  # 9999-12-31
_MIDNIGHT = dt.time()
_LINE_BREAK = re.compile(b"\n")
_SEP_LINE = re.compile(r"sep=([,;\t|])\r?\n")


def blank_header(position: int) -> str:
    """The stand-in name for a column whose header cell is empty (1-based position)."""
    return f"(column {position})"


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the bytes say about a file: its format, hash and (for text) encoding hints."""

    path: Path
    format: str  # "csv", "xlsx", "xls" or "ods"
    sha256: str
    size: int
    encoding: str | None = None
    has_quotes: bool = True
    # An odd number of quote characters hints at a quoted value that is never closed.
    odd_quotes: bool = False


@dataclass(slots=True)
class RawFrame:
    """One block of records: cells as text under the file's headers, each record's start line,
    the positions whose ID-number cell Excel held as a number, and (CSV) the same cells as an
    Arrow table in header order, so column work can skip the pandas layer."""

    frame: pd.DataFrame
    row_numbers: np.ndarray[Any, np.dtype[np.int64]]
    numeric_ids: list[int] = field(default_factory=list)
    arrow: Any = None


def inspect_file(path: Path) -> FileFacts:
    """Identify the file by content and hash it; raise InputError if it is no usable table."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(_SAMPLE)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{path}: cannot be read (permission denied)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file")
    if size == 0 or (size == len(head) and not head.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe")):
        raise InputError(f"{path}: file is empty")
    if head.startswith(_CFB_MAGIC):
        scan = _scan(path, check_utf8=False, marker=_ENCRYPTED_MARK)
        if scan.marker_found:
            raise InputError(
                f"{path}: workbook is password-protected (encrypted); "
                "save a copy without a password and use that"
            )
        return FileFacts(path, "xls", scan.sha256, size)
    if head.startswith(_ZIP_MAGIC):
        scan = _scan(path, check_utf8=False)
        is_ods = head[30:38] == b"mimetype" and b"opendocument.spreadsheet" in head[:200]
        return FileFacts(path, "ods" if is_ods else "xlsx", scan.sha256, size)
    for magic, what in _KNOWN_BINARY:
        if head.startswith(magic):
            raise InputError(f"{path}: not a table (the file is {what})")
    encoding = _bom_encoding(head) or _utf16_without_bom(head)
    if encoding is None and b"\x00" in head:
        raise InputError(f"{path}: not a table (binary content, not text)")
    if encoding is not None and encoding != "utf-8-sig":
        return FileFacts(path, "csv", _scan(path, check_utf8=False).sha256, size, encoding)
    scan = _scan(path, check_utf8=True, quote=ord('"'))
    if scan.utf8_ok:
        return FileFacts(
            path, "csv", scan.sha256, size, encoding or "utf-8", scan.quotes > 0,
            scan.quotes % 2 == 1,
        )
    if encoding == "utf-8-sig":
        raise InputError(
            f"{path}: starts with a UTF-8 marker but is not UTF-8 text "
            f"(bad byte at offset {scan.bad_offset}); save it again as UTF-8"
        )
    legacy = _legacy_encoding(path, head, scan.bad_offset)
    return FileFacts(
        path, "csv", scan.sha256, size, legacy, scan.quotes > 0, scan.quotes % 2 == 1
    )


@dataclass(slots=True)
class _Scan:
    sha256: str = ""
    utf8_ok: bool = True
    bad_offset: int = 0
    quotes: int = 0
    marker_found: bool = False


def _scan(
    path: Path, *, check_utf8: bool, quote: int | None = None, marker: bytes = b""
) -> _Scan:
    """One pass over the file: hash it, and optionally check UTF-8 and look for bytes."""
    result = _Scan()
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    tail = b""
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
            if check_utf8 and result.utf8_ok:
                # Pure-ASCII blocks (the common case) skip the decoder entirely.
                pending = decoder.getstate()[0]
                if pending or not block.isascii():
                    try:
                        decoder.decode(block)
                    except UnicodeDecodeError as exc:
                        result.utf8_ok = False
                        result.bad_offset = max(0, offset - len(pending) + exc.start)
            if quote is not None:
                # numpy's vectorised compare counts ~5x faster than bytes.count here.
                result.quotes += int(np.count_nonzero(np.frombuffer(block, np.uint8) == quote))
            if marker and not result.marker_found:
                result.marker_found = marker in tail + block
                tail = block[-len(marker) :]
            offset += len(block)
    if check_utf8 and result.utf8_ok:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            result.utf8_ok = False
            result.bad_offset = max(0, offset - 4)
    result.sha256 = digest.hexdigest()
    return result


def _bom_encoding(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _utf16_without_bom(head: bytes) -> str | None:
    """Spot BOM-less UTF-16 by its pattern of zero bytes in ASCII-heavy text."""
    sample = head[: len(head) // 2 * 2][:4096]
    if len(sample) < 4:
        return None
    even_zero = sample[0::2].count(0) / (len(sample) / 2)
    odd_zero = sample[1::2].count(0) / (len(sample) / 2)
    if odd_zero > 0.6 and even_zero < 0.1:
        return "utf-16-le"
    if even_zero > 0.6 and odd_zero < 0.1:
        return "utf-16-be"
    return None


def _legacy_encoding(path: Path, head: bytes, bad_offset: int) -> str:
    """Name the single-byte code page of a file that is not UTF-8.

    charset-normalizer judges a sample that contains the first non-UTF-8 byte; cp1252 (what
    Excel writes on western Windows) wins any near tie. The answer must decode the whole file,
    else latin-1, which decodes any byte, keeps the run going.
    """
    from charset_normalizer import from_bytes

    with path.open("rb") as handle:
        handle.seek(max(0, bad_offset - _SAMPLE // 2))
        window = handle.read(_SAMPLE)
    sample = head + b"\n" + window if bad_offset > len(head) else head
    matches = from_bytes(sample, cp_isolation=list(_LEGACY_ENCODINGS))
    best = matches.best()
    choice = "cp1252"
    if best is not None:
        # Code pages that decode the sample equally well are tied; cp1252 wins any tie.
        tied = set(best.could_be_from_charset)
        for match in matches:
            if match.chaos <= best.chaos + 0.02:
                tied.update(match.could_be_from_charset)
        choice = "cp1252" if "cp1252" in tied else best.encoding
    for encoding in (choice, "cp1252"):
        if _decodes(path, encoding):
            return encoding
    return "latin_1"


def _decodes(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with path.open("rb") as handle:
            while block := handle.read(_BLOCK):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _text_sample(path: Path, encoding: str) -> tuple[str, bool]:
    """The file's first bytes decoded, and whether they are the whole file."""
    with path.open("rb") as handle:
        data = handle.read(_TEXT_SAMPLE)
        complete = not handle.read(1)
    return data.decode(encoding, errors="replace"), complete


def sniff_delimiter(sample: str) -> str:
    """Pick the delimiter among ``, ; TAB |`` that splits the sample's first lines into the
    same number of fields most consistently (more fields breaks a tie); ``,`` for one column."""
    best = ","
    best_score: tuple[float, int] = (0.0, 1)
    for delimiter in _DELIMITERS:
        reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, strict=False)
        records: list[list[str]] = []
        try:
            for record in reader:
                if record:
                    records.append(record)
                if len(records) > 30:
                    break
        except csv.Error:
            continue
        if len(records) > 1:
            records = records[:-1]  # the last one may be cut off by the end of the sample
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        consistency = sum(len(r) == width for r in records) / len(records)
        score = (consistency, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


class CsvReader:
    """A delimited text file read in blocks by pyarrow, every cell kept as text."""

    def __init__(self, facts: FileFacts) -> None:
        self.path = facts.path
        self.encoding = facts.encoding or "utf-8"
        self.has_quotes = facts.has_quotes
        sample, self._sample_complete = _text_sample(self.path, self.encoding)
        # Excel honours (and some exports write) a first line "sep=;" naming the delimiter.
        declared = _SEP_LINE.match(sample)
        self.delimiter = declared.group(1) if declared else sniff_delimiter(sample)
        reader = csv.reader(io.StringIO(sample, newline=""), delimiter=self.delimiter)
        header: list[str] = []
        self._records_before_data = 0
        try:
            for record in reader:
                self._records_before_data += 1
                if declared and self._records_before_data == 1:
                    continue
                if any(cell.strip() for cell in record):
                    header = record
                    break
        except csv.Error:
            header = []
        if not header:
            raise InputError(f"{self.path}: no header row (the file has no column names)")
        # Physical lines up to and including the header, so data lines are numbered as seen.
        self.header_lines = reader.line_num
        # pyarrow skips rows by counting lines, blind to quotes: fine for a one-line header;
        # a header with a quoted line break is parsed as the first record and dropped instead.
        self._skip_header = self.header_lines == self._records_before_data
        header = self._fit_trailing_delimiter(header, reader)
        self.headers = [
            cell.strip() or blank_header(i) for i, cell in enumerate(header, start=1)
        ]
        if facts.odd_quotes:
            # pyarrow would silently read everything after an unclosed quote as one value.
            line = self._unclosed_quote_line()
            if line is not None:
                raise InputError(
                    f"{self.path}: line {line} opens a quoted value that is never closed "
                    "(the rest of the file would become one cell)"
                )

    def _fit_trailing_delimiter(self, header: list[str], reader: Any) -> list[str]:
        """Accept a delimiter that ends every data line but not the header (or the reverse),
        which some exports write: judged on the records in the sample, the header gains (or
        loses) one blank column so that the widths agree. Other mismatches are left to fail."""
        records: list[list[str]] = []
        try:
            for record in reader:
                if record:
                    records.append(record)
                if len(records) > 200:
                    break
        except csv.Error:
            return header
        if len(records) > 1 and not self._sample_complete:
            records.pop()  # the sample may end inside the last record
        widths = {len(record) for record in records}
        last_empty = all(not record[-1].strip() for record in records)
        if len(widths) != 1:
            return header
        (width,) = widths
        if width == len(header) + 1 and last_empty:
            return [*header, ""]
        if width == len(header) - 1 and not header[-1].strip() and self._skip_header:
            return header[:-1]
        return header

    def _arrow_encoding(self) -> str:
        # pyarrow skips a UTF-8 BOM itself and decodes UTF-8 natively (no transcoding cost).
        return "utf8" if self.encoding in ("utf-8", "utf-8-sig") else self.encoding

    def frames(self, size: int) -> Iterator[RawFrame]:
        """Yield blocks of ``size`` records (the last may be shorter), blank lines left out."""
        names = [f"c{i}" for i in range(len(self.headers))]
        try:
            stream = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(
                    encoding=self._arrow_encoding(),
                    column_names=names,
                    skip_rows=self._records_before_data - (0 if self._skip_header else 1),
                    # Bigger blocks buy little speed but raise peak memory steeply.
                    block_size=1 << 20,
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.delimiter,
                    # Without a quote in the file no value can hold a line break, and the
                    # parser is much faster when it need not look for them.
                    newlines_in_values=self.has_quotes,
                    ignore_empty_lines=False,
                ),
                convert_options=pacsv.ConvertOptions(
                    # pandas keeps Arrow strings as large_string; reading them that way
                    # spares a cast (a copy of every offset) when chunks become DataFrames.
                    column_types=dict.fromkeys(names, pa.large_string()),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                    null_values=[],
                ),
            )
            yield from self._rechunk(stream, size)
        except pa.ArrowInvalid:
            raise self._explain_parse_failure() from None

    def _rechunk(self, stream: Any, size: int) -> Iterator[RawFrame]:
        pending: list[Any] = []
        buffered = 0
        next_line = self.header_lines + 1
        header_pending = not self._skip_header
        for batch in stream:
            if header_pending and batch.num_rows:
                batch, header_pending = batch.slice(1), False
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            buffered += batch.num_rows
            while buffered >= size:
                table = pa.Table.from_batches(pending)
                frame, next_line = self._to_frame(table.slice(0, size), next_line)
                rest = table.slice(size)
                pending, buffered = rest.to_batches(), rest.num_rows
                if frame is not None:
                    yield frame
        if buffered:
            frame, next_line = self._to_frame(pa.Table.from_batches(pending), next_line)
            if frame is not None:
                yield frame

    def _to_frame(self, table: Any, first_line: int) -> tuple[RawFrame | None, int]:
        n = table.num_rows
        spans = np.ones(n, dtype=np.int64)
        if self.has_quotes:
            # A quoted value may hold line breaks; the record then covers more lines, and the
            # next record starts that much further down. A raw scan of each column's character
            # buffer is far cheaper than counting per value, so only columns with a hit count.
            for column in table.columns:
                if any(_has_line_break(a) for a in column.chunks):
                    breaks = pc.count_substring(column, "\n")
                    spans += breaks.to_numpy(zero_copy_only=False).astype(np.int64)
        starts = first_line + np.concatenate(([0], np.cumsum(spans)[:-1]))
        next_line = first_line + int(spans.sum())
        lengths = np.zeros(n, dtype=np.int64)
        for column in table.columns:
            lengths += pc.binary_length(column).to_numpy(zero_copy_only=False)
        keep = lengths > 0
        if not keep.all():
            table = table.filter(pa.array(keep))
            starts = starts[keep]
        if table.num_rows == 0:
            return None, next_line
        frame = table.to_pandas()
        frame.columns = pd.Index(self.headers)
        return RawFrame(frame, starts.astype(np.int64), arrow=table), next_line

    def _unclosed_quote_line(self) -> int | None:
        """Line where a record starts whose quoted value runs to the end of the file."""
        with self.path.open(encoding=self.encoding, newline="", errors="replace") as handle:
            reader = csv.reader(handle, delimiter=self.delimiter, strict=True)
            while True:
                start = reader.line_num + 1
                try:
                    next(reader)
                except StopIteration:
                    return None
                except csv.Error as exc:
                    # Strict mode also objects to stray quotes pyarrow reads literally; only
                    # running off the end inside quotes (or into the csv module's field size
                    # limit on the way there) is the fatal case.
                    if "unexpected end of data" in str(exc) or "field limit" in str(exc):
                        return start

    def _explain_parse_failure(self) -> InputError:
        """Re-read with the csv module to find the first record whose field count is off."""
        width = len(self.headers)
        start = 1
        try:
            with self.path.open(encoding=self.encoding, newline="", errors="replace") as fh:
                reader = csv.reader(fh, delimiter=self.delimiter)
                for _ in range(self._records_before_data):
                    next(reader, None)
                start = reader.line_num + 1
                for record in reader:
                    if record and not "".join(record).strip():
                        return InputError(
                            f"{self.path}: line {start} holds only spaces; delete that line"
                        )
                    if record and len(record) != width:
                        return InputError(
                            f"{self.path}: line {start} has {len(record)} fields but the "
                            f"header has {width} (a '{_shown(self.delimiter)}' inside an "
                            "unquoted value, or a missing quote?)"
                        )
                    start = reader.line_num + 1
        except csv.Error as exc:
            return InputError(f"{self.path}: cannot be read as CSV near line {start} ({exc})")
        return InputError(f"{self.path}: cannot be read as CSV (unbalanced quotes?)")


def _has_line_break(array: Any) -> bool:
    data = array.buffers()[2]
    return data is not None and _LINE_BREAK.search(data) is not None


def _shown(delimiter: str) -> str:
    return "TAB" if delimiter == "\t" else delimiter


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
