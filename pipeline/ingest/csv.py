"""The CSV reader: a delimited text file as blocks of text cells, numbered by the lines users see.

:class:`CsvReader` streams the file through pyarrow's CSV reader, which is fast and holds only
a block at a time, and keeps every cell as text. The standard library's csv module reads only a
sample (to find the header and its width) and the failure paths, to turn a pyarrow parse error
into a message naming the line to fix. Record numbers are physical line numbers, so a quoted
value that holds a line break moves the records after it down, as in an editor.

The module is named after what it reads; every import in the project is absolute, so
``import csv`` (here and anywhere else) is still the standard library's module.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.ingest.schema import InputError
from pipeline.ingest.sniffing import FileFacts, RawFrame, blank_header, sniff_delimiter

# What the CSV reader decodes to find the delimiter, the header and its width.
_TEXT_SAMPLE = 1 << 18
_LINE_BREAK = re.compile(b"\n")
_SEP_LINE = re.compile(r"sep=([,;\t|])\r?\n")


def _text_sample(path: Path, encoding: str) -> tuple[str, bool]:
    """The file's first bytes decoded, and whether they are the whole file."""
    with path.open("rb") as handle:
        data = handle.read(_TEXT_SAMPLE)
        complete = not handle.read(1)
    return data.decode(encoding, errors="replace"), complete


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
