"""Unusable input files: each is one InputError whose one-line message names the file."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest

from pipeline.ingest.table import InputError, open_table

DATA = Path(__file__).resolve().parent.parent / "data"
CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def fails(path: Path, match: str, **kwargs: object) -> str:
    """Open and read ``path``; assert one InputError naming the file and matching ``match``."""
    with pytest.raises(InputError) as info:
        table = open_table(path, **kwargs)  # type: ignore[arg-type]
        for _ in table.chunks():
            pass
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert re.search(match, message), message
    return message


def _write(data: bytes, name: str = "in.csv") -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return make


def _encrypted_xlsx(tmp_path: Path) -> Path:
    # What Excel writes for a password-protected workbook: an OLE compound file holding
    # EncryptionInfo and EncryptedPackage streams (directory names are UTF-16LE).
    body = b"\x00" * 504 + "EncryptionInfo".encode("utf-16-le") + b"\x00" * 50
    body += "EncryptedPackage".encode("utf-16-le") + b"\x00" * 2000
    path = tmp_path / "locked.xlsx"
    path.write_bytes(CFB_MAGIC + body)
    return path


def _zip_not_workbook(tmp_path: Path) -> Path:
    path = tmp_path / "archive.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a workbook")
    return path


def _empty_sheet(tmp_path: Path) -> Path:
    path = tmp_path / "empty.xlsx"
    openpyxl.Workbook().save(path)
    return path


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p / "missing.csv", "file not found"),
        (lambda p: p, "is a directory"),
        (_write(b""), "file is empty"),
        (_write(b"\xef\xbb\xbf\r\n\r\n  \n"), "file is empty"),
        (_write(b",,,\n,,,\n"), "no header row"),
        (_write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), r"not a table \(the file is a PDF"),
        (_write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "not a table .*PNG image"),
        (_write(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"), "binary content"),
        (_encrypted_xlsx, "password-protected"),
        (_write(CFB_MAGIC + b"\x00" * 600, "old.xls"), "not a readable xls workbook"),
        (_zip_not_workbook, "not a readable xlsx workbook"),
        (_empty_sheet, "sheet 'Sheet' is empty"),
    ],
)
def test_unusable_files(tmp_path: Path, make: Callable[[Path], Path], match: str) -> None:
    """Missing, empty, header-less, binary, encrypted and broken files are refused clearly."""
    fails(make(tmp_path), match, required=())


def test_missing_required_columns_are_listed(tmp_path: Path) -> None:
    """Every missing mandatory column is named, in the list's order."""
    path = tmp_path / "in.csv"
    path.write_text("first_name,last_name,id_number\nAnn,Lee,1\n")
    message = fails(path, r"missing required column\(s\): nationality, date_of_birth",
                    required=("first_name", "nationality", "date_of_birth", "id_number"))
    assert "first_name" not in message.split("column(s):")[1]
    fails(path, "missing required column.*channel, agent_location_id")


def test_duplicate_headers_after_normalisation(tmp_path: Path) -> None:
    """'First Name' and 'first_name' are one column to the rules, so the file is refused."""
    path = tmp_path / "in.csv"
    path.write_text("First Name,first_name,Notes,NOTES\nA,B,C,D\n")
    fails(path, "duplicate column 'first_name' \\(same as 'First Name'", required=())


def test_two_headers_mapped_onto_one_column(tmp_path: Path) -> None:
    """A column map that makes two headers mean the same column names both."""
    path = tmp_path / "in.csv"
    path.write_text("Emirates ID No,ID Number\n1,2\n")
    fails(path, "'Emirates ID No' and 'ID Number' both mean 'id_number'",
          column_map=DATA / "column_map.toml", required=())


def test_bad_column_map_names_the_map_file(tmp_path: Path) -> None:
    """A broken column-map file is an InputError naming that file, before the data is read."""
    path = tmp_path / "in.csv"
    path.write_text("first_name\nAnn\n")
    with pytest.raises(InputError, match=r"bad_column_map\.toml: column map is not valid TOML"):
        open_table(path, column_map=DATA / "bad_column_map.toml", required=())


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("first_name,last_name,nationality\nAnn,Lee,AE\nBob,Ray,Dubai, UAE\nCy,Day,IN\n",
         "line 3 has 4 fields but the header has 3"),
        ("first_name,last_name,nationality\nAnn,Lee,AE\n\nBob,Ray\n",
         "line 4 has 2 fields but the header has 3"),
        ('first_name,last_name,nationality\nAnn,"Lee\nSmith",AE\nBob,Ray,AE,X\n',
         "line 4 has 4 fields"),
    ],
)
def test_rows_with_the_wrong_number_of_fields_name_the_line(
    tmp_path: Path, text: str, match: str
) -> None:
    """A record with more or fewer fields than the header (values would shift columns) stops
    the read with the line where that record starts."""
    path = tmp_path / "in.csv"
    path.write_text(text)
    fails(path, match, required=())


def test_committed_ragged_file_is_refused() -> None:
    """The hand-made ragged file in tests/data is refused naming its line 3."""
    fails(DATA / "ragged.csv", "line 3 has 4 fields", required=())


def test_unclosed_quote_names_its_line(tmp_path: Path) -> None:
    """A quote opened and never closed would swallow the rest of the file into one cell: the
    file is refused, naming the line where that record starts."""
    path = tmp_path / "in.csv"
    path.write_text('first_name,last_name\nAnn,Lee\nBob,"Ray\nCy,Day\nDee,Eve\n')
    fails(path, "line 3 opens a quoted value that is never closed", required=())


def test_bom_with_broken_utf8_is_refused(tmp_path: Path) -> None:
    """A file that claims UTF-8 by its marker but holds other bytes says so."""
    path = tmp_path / "in.csv"
    path.write_bytes(b"\xef\xbb\xbffirst_name\nRen\xe9\n")
    fails(path, "starts with a UTF-8 marker but is not UTF-8", required=())


def test_mixed_trailing_delimiters_still_fail(tmp_path: Path) -> None:
    """Only a consistent extra delimiter is forgiven; a single odd line is named."""
    path = tmp_path / "in.csv"
    path.write_text("first_name,last_name\nAnn,Lee,\nBob,Ray\n")
    fails(path, "line 2 has 3 fields but the header has 2", required=())


def test_unclosed_quote_in_a_big_file(tmp_path: Path) -> None:
    """An unclosed quote followed by more text than the csv module's field limit is still
    reported at its own line."""
    path = tmp_path / "in.csv"
    path.write_text('first_name,last_name\nAnn,"Lee\n' + "Bob,Ray\n" * 30_000)
    fails(path, "line 2 opens a quoted value that is never closed", required=())


def test_line_of_spaces_is_named(tmp_path: Path) -> None:
    """A line holding only spaces is not a record; the message says so and where."""
    path = tmp_path / "in.csv"
    path.write_text("first_name,last_name\nAnn,Lee\n   \nBob,Ray\n")
    fails(path, "line 3 holds only spaces", required=())
