"""Validation of whole chunks: duplicates across chunks, reader errors, normalised values,
document files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from support import BASE_ROW, make_validator

from pipeline.core.outcomes import RowError
from pipeline.ingest.schema import CANONICAL_COLUMNS
from pipeline.ingest.table import Chunk

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\0" * 64
PDF = b"%PDF-1.7\n" + b"\0" * 64


def make_chunk(
    rows: list[dict[str, str]],
    first_row: int = 2,
    read_errors: dict[int, list[RowError]] | None = None,
) -> Chunk:
    """A chunk as ingest builds it: every canonical column, "" for empty."""
    frame = pd.DataFrame({c: [r.get(c, "") for r in rows] for c in CANONICAL_COLUMNS}, dtype="str")
    numbers = pd.Series(range(first_row, first_row + len(rows)), dtype="int64")
    return Chunk(raw=frame.copy(), rows=frame, row_numbers=numbers, read_errors=read_errors or {})


def test_duplicates_across_chunks_name_the_first_row() -> None:
    """The same (type, number) later in the file, even in another chunk, names the first row."""
    validator = make_validator()
    other = {**BASE_ROW, "id_number": "784199190000119"}
    first = validator.validate_chunk(make_chunk([BASE_ROW, other, BASE_ROW], first_row=2))
    assert first.errors == {4: [RowError("duplicate_in_file", "id_number", "same ID as row 2")]}
    # Dashes and case do not hide a duplicate: keys use the normalised number.
    dashed = {**BASE_ROW, "id_number": "784-1991-9000011-9"}
    second = validator.validate_chunk(
        make_chunk([dashed, {**BASE_ROW, "id_type": "1", "id_number": "A1234567"}], 5)
    )
    assert second.errors == {5: [RowError("duplicate_in_file", "id_number", "same ID as row 3")]}
    third = validator.validate_chunk(
        make_chunk([{**BASE_ROW, "id_type": "Passport", "id_number": "a1234567"}], 7)
    )
    assert third.errors == {7: [RowError("duplicate_in_file", "id_number", "same ID as row 6")]}


def test_read_errors_are_merged_in_column_order() -> None:
    """Reader errors join the row's errors in column order and replace rule errors on the
    same column (the reader names the real cause)."""
    excel = RowError("excel_number", "id_number", "Excel turned the ID into a number")
    row = {**BASE_ROW, "first_name": "", "id_number": "7.84198E+14"}
    result = make_validator().validate_chunk(make_chunk([row, BASE_ROW], 10, {10: [excel]}))
    assert result.errors == {
        10: [RowError("required", "first_name", "first name is required"), excel],
    }


def test_normalised_values() -> None:
    """Codes, countries, phones, dates, booleans and IDs come back in canonical form."""
    row = {
        **BASE_ROW,
        "nationality": "ae",
        "country_of_birth": "United Arab Emirates",
        "gender": "Female",
        "primary_mobile_number": "050 123 4567",
        "secondary_mobile_number": "00971 4 234 5678",
        "email_id": "Amal@Example.COM",
        "political_exposed_person": "yes",
        "id_type": "Emirates ID",
        "id_number": "784-1980-9000000-5",
        "date_of_birth": "1980-5-1",
    }
    result = make_validator().validate_chunk(make_chunk([row]))
    assert result.errors == {}
    got = result.normalised.iloc[0]
    assert got["nationality"] == "AE"
    assert got["country_of_birth"] == "AE"
    assert got["gender"] == "F"
    assert got["primary_mobile_number"] == "+971501234567"
    assert got["secondary_mobile_number"] == "+97142345678"
    assert got["email_id"] == "Amal@example.com"
    assert got["political_exposed_person"] == "true"
    assert got["id_type"] == "4"
    assert got["id_number"] == "784198090000005"
    assert got["date_of_birth"] == "1980-05-01"
    assert list(result.normalised.columns) == list(CANONICAL_COLUMNS)


def test_many_rows_only_failing_rows_have_errors() -> None:
    """A larger chunk reports exactly its failing rows, keyed by the row numbers the user sees."""
    rows = [{**BASE_ROW, "id_number": f"7841980{i:08d}"} for i in range(500)]
    result = make_validator().validate_chunk(make_chunk(rows, first_row=2))
    # About nine in ten random 15-digit numbers fail the Luhn check; the rest pass.
    luhn_ok = [
        i
        for i in range(500)
        if sum(
            int(d) if k % 2 == 0 else sum(divmod(2 * int(d), 10))
            for k, d in enumerate(f"7841980{i:08d}"[::-1])
        )
        % 10
        == 0
    ]
    assert set(result.errors) == {i + 2 for i in range(500) if i not in luhn_ok}
    assert all(e == [RowError("bad_id", "id_number", e[0].message)] for e in result.errors.values())


def test_document_files(tmp_path: Path) -> None:
    """Files must exist inside the input folder, be JPEG/PNG/PDF by content, and be small."""
    (tmp_path / "front.png").write_bytes(PNG)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.png").write_bytes(PNG)
    (tmp_path / "back.pdf").write_bytes(PDF)
    (tmp_path / "scan.jpg").write_bytes(JPEG)
    (tmp_path / "fake.jpg").write_bytes(b"GIF89a not really" + b"\0" * 64)
    (tmp_path / "notes.png").write_bytes(b"just text, named png")
    (tmp_path / "big.png").write_bytes(PNG + b"\0" * 2000)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    outside.write_bytes(PNG)
    (tmp_path / "link.png").symlink_to(outside)
    validator = make_validator(tmp_path, max_document_bytes=1000)
    cases = {
        "front.png": [],
        "scan.jpg": [],
        "back.pdf": [],
        "missing.png": ["file_missing"],
        "fake.jpg": ["bad_file_type"],
        "notes.png": ["bad_file_type"],
        "big.png": ["file_too_large"],
        "../etc/passwd": ["bad_path"],
        "/etc/passwd": ["bad_path"],
        "link.png": ["bad_path"],
        "bad\x00name.png": ["bad_path"],
        "sub\\inner.png": [],
        "..\\outside.png": ["bad_path"],
        "x" * 5000 + ".png": ["file_missing"],
    }
    for path, codes in cases.items():
        errors = validator.validate_row(
            {**BASE_ROW, "id_front_file": path, "id_back_file": "back.pdf"}
        )
        assert [e.code for e in errors] == codes, path
        assert all(e.field == "id_front_file" for e in errors)


def test_chunk_with_an_offset_index_keeps_it() -> None:
    """A chunk indexed from 100 is validated by position; normalised keeps the chunk's index."""
    chunk = make_chunk([BASE_ROW, {**BASE_ROW, "gender": "Q", "id_number": "784199190000119"}], 40)
    chunk.rows.index = pd.RangeIndex(100, 102)
    chunk.row_numbers.index = pd.RangeIndex(100, 102)
    result = make_validator().validate_chunk(chunk)
    assert list(result.errors) == [41]
    assert [e.code for e in result.errors[41]] == ["unknown_code"]
    assert list(result.normalised.index) == [100, 101]
    assert result.normalised.loc[100, "gender"] == "F"


WEIRD = [
    " ",
    "٠٥٠١٢٣٤٥٦٧",
    "x" * 10_000,
    "=cmd|' /C calc'!A0",
    "\x00",
    "😀",
    "NaN",
    "-",
    "+",
    "00",
    "+971",
    "784",
    "1/1/1",
    "\u200b",
    "@",
    "+971 50 123 4567 ext 12",
    "7.84198E+14",
]


def test_odd_cells_in_every_column_give_errors_not_exceptions() -> None:
    """Any odd value in any column yields at most errors; the base row's other cells stay clean."""
    validator = make_validator()
    rows = [
        {**BASE_ROW, "id_number": f"P{i:07d}", "id_type": "1", column: value}
        for i, (column, value) in enumerate(
            (column, value) for value in WEIRD for column in CANONICAL_COLUMNS
        )
    ]
    result = validator.validate_chunk(make_chunk(rows))
    for number, errors in result.errors.items():
        row = rows[number - 2]
        changed = {c for c in CANONICAL_COLUMNS if row.get(c, "") != BASE_ROW.get(c, "")}
        # Only the mutated cell (or the ID pair it belongs to) is blamed.
        assert {e.field for e in errors} <= changed | {"id_number"}, (number, errors)


def test_empty_and_untyped_chunks() -> None:
    """A chunk without rows, and one of plain Python objects with None cells, validate."""
    validator = make_validator()
    empty = validator.validate_chunk(make_chunk([]))
    assert empty.errors == {}
    assert list(empty.normalised.columns) == list(CANONICAL_COLUMNS)
    frame = pd.DataFrame({c: [BASE_ROW.get(c), None] for c in CANONICAL_COLUMNS}, dtype=object)
    chunk = Chunk(raw=frame, rows=frame, row_numbers=pd.Series([2, 3]), read_errors={})
    result = validator.validate_chunk(chunk)
    assert list(result.errors) == [3]
    assert {e.code for e in result.errors[3]} == {"required"}
