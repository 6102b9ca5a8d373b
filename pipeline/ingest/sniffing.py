"""What a file is, told by its bytes: format, encoding and delimiter; and what both readers share.

A customer file's name says little (a workbook saved as ``.csv``, a PDF renamed to one), so
``inspect_file`` looks only at the content: it tells a CSV from a workbook, an encrypted
workbook or something that is no table at all, names a text file's encoding, and hashes the
file on the way. ``sniff_delimiter`` picks the delimiter of a text sample.

This judgement is kept apart from the readers so that it can be tested and changed without
touching either of them, and so that neither reader imports the other: :class:`FileFacts`
(what a reader is given), :class:`RawFrame` (what it hands back: every cell as text, plus the
line or sheet row each record starts on) and ``blank_header`` live here for both.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.ingest.schema import InputError

_BLOCK = 1 << 20
_SAMPLE = 1 << 16
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
