"""Report writer: formula neutralisation, column order, joined errors, atomic files, xlsx."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pytest

from pipeline.core.outcomes import RowError
from pipeline.reports.writer import (
    PIPELINE_REPORT_COLUMNS,
    REPORT_COLUMNS,
    ReportError,
    ReportWriter,
    _neutralise_array,
    neutralise,
    validation_outcomes,
    write_summary,
)
from pipeline.reports.xlsxstream import column_letter

NEUTRALISE_TABLE = [
    # (cell, expected) — formulas and at-functions become text, phones and numbers stay.
    ("=1+1", "'=1+1"),
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("+HYPERLINK(\"x\")", "'+HYPERLINK(\"x\")"),
    ("-2+3", "'-2+3"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-1e5", "'-1e5"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("+971501234567", "+971501234567"),
    ("+971 50 123 4567", "+971 50 123 4567"),
    ("+1 (555) 123-4567", "+1 (555) 123-4567"),
    ("-12.50", "-12.50"),
    ("-", "-"),
    ("", ""),
    ("Ahmed", "Ahmed"),
    ("a=b", "a=b"),
    ("784198090000005", "784198090000005"),
    ("0501234567", "0501234567"),
]


@pytest.mark.parametrize(("cell", "expected"), NEUTRALISE_TABLE)
def test_neutralise_table(cell: str, expected: str) -> None:
    """Only cells a spreadsheet would evaluate get the ``'`` prefix."""
    assert neutralise(cell) == expected


def test_vectorised_neutralise_agrees_with_scalar() -> None:
    """The Arrow (RE2) path used for whole columns gives exactly the scalar results."""
    cells = [cell for cell, _ in NEUTRALISE_TABLE]
    result = _neutralise_array(pa.array(cells, type=pa.string())).to_pylist()
    assert result == [expected for _, expected in NEUTRALISE_TABLE]


@pytest.mark.parametrize("arrow_type", [pa.string(), pa.large_string()])
def test_vectorised_neutralise_on_slices_and_chunks(arrow_type: pa.DataType) -> None:
    """Sliced and chunked Arrow columns (as pandas hands them over) are read correctly."""
    cells = ["Ahmed", "=1+1", "", "+971501234567", "@x", "plain"]
    whole = pa.array(cells, type=arrow_type)
    chunked = pa.chunked_array([whole.slice(0, 2), whole.slice(2)])
    assert _neutralise_array(whole.slice(2)).to_pylist() == ["", "+971501234567", "'@x", "plain"]
    assert _neutralise_array(whole.slice(5)).to_pylist() == ["plain"]
    assert _neutralise_array(chunked).to_pylist() == [neutralise(c) for c in cells]


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def _raw(rows: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, dtype=object)


def test_columns_in_input_order_then_report_columns(tmp_path: Path) -> None:
    """Input columns keep their order and values; outcome columns and extras follow."""
    raw = _raw([{"Zeta": "007", "alpha": "NA", "First Name": "Ahmed"}])
    outcomes = validation_outcomes(pd.Series([2]), {})
    outcomes["ecrn"] = ["1000000000000005"]
    with ReportWriter(tmp_path, list(raw.columns), name="r", extra_columns=("ecrn",)) as writer:
        writer.write(raw, outcomes)
    header, row = _read_csv(tmp_path / "r.csv")
    assert header == ["Zeta", "alpha", "First Name", *REPORT_COLUMNS, "ecrn"]
    assert row == ["007", "NA", "Ahmed", "2", "valid", "", "", "", "1000000000000005"]


def test_pipeline_column_order_replaces_the_default(tmp_path: Path) -> None:
    """``columns`` sets the outcome columns outright (ecrn after outcome, attempts last);
    a list that does not start with row_number is refused."""
    raw = _raw([{"first_name": "Sara"}])
    frame = pd.DataFrame(
        {
            "row_number": [2],
            "outcome": ["onboarded"],
            "ecrn": ["1000000000000005"],
            "error_code": [""],
            "error_field": [""],
            "error_message": [""],
            "attempts": ["1"],
        }
    )
    with ReportWriter(tmp_path, ["first_name"], name="r", columns=PIPELINE_REPORT_COLUMNS) as w:
        w.write(raw, frame)
    header, row = _read_csv(tmp_path / "r.csv")
    assert header == ["first_name", *PIPELINE_REPORT_COLUMNS]
    assert row == ["Sara", "2", "onboarded", "1000000000000005", "", "", "", "1"]
    with pytest.raises(ValueError, match="row_number"):
        ReportWriter(tmp_path / "x", ["a"], name="r", columns=("outcome", "row_number"))


def test_report_columns_of_a_previous_report_are_replaced(tmp_path: Path) -> None:
    """A report fed back as input gets fresh outcome columns, not duplicated ones."""
    raw = _raw([{"first_name": "Sara", "row_number": "9", "outcome": "invalid"}])
    with ReportWriter(tmp_path, list(raw.columns), name="r") as writer:
        writer.write(raw, validation_outcomes(pd.Series([2]), {}))
    header, row = _read_csv(tmp_path / "r.csv")
    assert header == ["first_name", *REPORT_COLUMNS]
    assert row == ["Sara", "2", "valid", "", "", ""]


def test_errors_joined_in_order_one_row_per_input_row(tmp_path: Path) -> None:
    """Several errors of one row are joined with " | " in the order given; order kept."""
    raw = _raw([{"a": str(i)} for i in range(4)])
    errors = {
        3: [
            RowError("required", "first_name", "First name is missing"),
            RowError("bad_format", "email_id", "Not an email address"),
        ],
        5: [RowError("unknown_code", "gender", "Unknown gender 'Q'")],
    }
    outcomes = validation_outcomes(pd.Series([2, 3, 4, 5]), errors)
    with ReportWriter(tmp_path, ["a"], name="r") as writer:
        writer.write(raw.iloc[:2], outcomes.iloc[:2])
        writer.write(raw.iloc[2:], outcomes.iloc[2:])
    rows = _read_csv(tmp_path / "r.csv")[1:]
    assert [r[0] for r in rows] == ["0", "1", "2", "3"]
    assert rows[0][2:] == ["valid", "", "", ""]
    assert rows[1][2:] == [
        "invalid",
        "required | bad_format",
        "first_name | email_id",
        "First name is missing | Not an email address",
    ]
    assert rows[3][2:] == ["invalid", "unknown_code", "gender", "Unknown gender 'Q'"]


def test_outcomes_follow_the_chunk_index_and_row_numbers() -> None:
    """Outcome columns line up with a chunk whose index does not start at 0."""
    numbers = pd.Series([50_001, 50_002, 50_003], index=[50_000, 50_001, 50_002])
    errors = {50_002: [RowError("bad_id", "id_number", "check digit is wrong")], 7: []}
    frame = validation_outcomes(numbers, errors)
    assert list(frame.index) == [50_000, 50_001, 50_002]
    assert frame["row_number"].tolist() == [50_001, 50_002, 50_003]
    assert frame["outcome"].tolist() == ["valid", "invalid", "valid"]
    assert frame["error_code"].tolist() == ["", "bad_id", ""]
    assert frame["error_message"].tolist() == ["", "check digit is wrong", ""]


def test_cells_and_headers_neutralised_in_csv_and_xlsx(tmp_path: Path) -> None:
    """Formulas are defused in both files; phone numbers and text come through unchanged."""
    raw = _raw([{"=Header": "=cmd|' /C calc'!A0", "phone": "+971501234567", "n": "0042"}])
    with ReportWriter(tmp_path, list(raw.columns), name="r", xlsx=True) as writer:
        writer.write(raw, validation_outcomes(pd.Series([2]), {}))
    header, row = _read_csv(tmp_path / "r.csv")
    assert header[0] == "'=Header"
    assert row[:3] == ["'=cmd|' /C calc'!A0", "+971501234567", "0042"]
    sheet = openpyxl.load_workbook(tmp_path / "r.xlsx").active
    assert sheet is not None
    values = list(sheet.values)
    assert values[0][0] == "'=Header"
    assert values[1][:5] == ("'=cmd|' /C calc'!A0", "+971501234567", "0042", 2, "valid")
    assert all(cell.data_type != "f" for row_cells in sheet.iter_rows() for cell in row_cells)


def test_xlsx_drops_characters_excel_cannot_hold(tmp_path: Path) -> None:
    """Control characters that openpyxl refuses are dropped in .xlsx, kept in the CSV."""
    raw = _raw([{"note\x02": "a\x01b"}])
    with ReportWriter(tmp_path, ["note\x02"], name="r", xlsx=True) as writer:
        writer.write(raw, validation_outcomes(pd.Series([2]), {}))
    assert _read_csv(tmp_path / "r.csv")[1][0] == "a\x01b"
    sheet = openpyxl.load_workbook(tmp_path / "r.xlsx").active
    assert sheet is not None
    assert next(sheet.iter_rows(max_row=1, values_only=True))[0] == "note"
    assert next(sheet.iter_rows(min_row=2, values_only=True))[0] == "ab"


def test_xlsx_round_trips_special_text_through_both_readers(tmp_path: Path) -> None:
    """Markup characters, Arabic, spaces and empty cells survive the streamed .xlsx as read
    back by openpyxl and by calamine (the reader ingest uses for workbooks)."""
    from python_calamine import CalamineWorkbook

    cells = ["a & b <c> \"d\"", "محمد الهاشمي", "  padded ", "", "O'Brien"]
    raw = _raw([{f"h{i}": value for i, value in enumerate(cells)}] * 3)
    headers = [f"h{i}" for i in range(len(cells))]
    with ReportWriter(tmp_path, headers, name="r", xlsx=True) as writer:
        writer.write(raw.iloc[:2], validation_outcomes(pd.Series([2, 3]), {}))
        writer.write(raw.iloc[2:], validation_outcomes(pd.Series([4]), {}))
    sheet = openpyxl.load_workbook(tmp_path / "r.xlsx").active
    assert sheet is not None
    rows = list(sheet.values)
    assert len(rows) == 4
    assert rows[3][:6] == (*cells[:3], None, cells[4], 4)
    table = CalamineWorkbook.from_path(str(tmp_path / "r.xlsx")).get_sheet_by_index(0)
    values = table.to_python()
    assert values[0][:5] == headers
    assert values[1][:5] == cells
    assert values[3][5] == 4


@pytest.mark.parametrize(
    ("index", "letters"), [(0, "A"), (25, "Z"), (26, "AA"), (55, "BD"), (701, "ZZ"), (702, "AAA")]
)
def test_column_letters(index: int, letters: str) -> None:
    """Column indexes map to spreadsheet column names."""
    assert column_letter(index) == letters


def test_close_renames_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    """Until close() only hidden temp files exist; afterwards only the final files."""
    writer = ReportWriter(tmp_path, ["a"], name="r", xlsx=True)
    writer.write(_raw([{"a": "x"}]), validation_outcomes(pd.Series([2]), {}))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert all(name.startswith(".r.") and name.endswith(".tmp") for name in names)
    assert writer.close() == [tmp_path / "r.csv", tmp_path / "r.xlsx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.xlsx"]


def test_report_files_get_ordinary_permissions(tmp_path: Path) -> None:
    """Reports follow the umask like any other file, not the 0600 of a private temp file."""
    old = os.umask(0o022)
    try:
        with ReportWriter(tmp_path, ["a"], name="r", xlsx=True) as writer:
            writer.write(_raw([{"a": "x"}]), validation_outcomes(pd.Series([2]), {}))
        summary = write_summary(tmp_path / "summary.json", {})
    finally:
        os.umask(old)
    for path in (tmp_path / "r.csv", tmp_path / "r.xlsx", summary):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_failure_inside_block_keeps_previous_report(tmp_path: Path) -> None:
    """An exception while writing removes temp files and leaves the earlier report intact."""
    (tmp_path / "r.csv").write_text("old report\n")
    with pytest.raises(RuntimeError), ReportWriter(tmp_path, ["a"], name="r") as writer:
        writer.write(_raw([{"a": "x"}]), validation_outcomes(pd.Series([2]), {}))
        raise RuntimeError("validation blew up")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]
    assert (tmp_path / "r.csv").read_text() == "old report\n"


def test_too_many_rows_for_excel_is_a_report_error(tmp_path: Path) -> None:
    """Asking for .xlsx with more rows than a sheet holds fails with a clear message."""
    writer = ReportWriter(tmp_path, ["a"], name="r", xlsx=True)
    writer.rows_written = 1_048_575
    with pytest.raises(ReportError, match="do not fit in an Excel sheet"):
        writer.write(_raw([{"a": "x"}]), validation_outcomes(pd.Series([2]), {}))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_write_summary_is_atomic_json(tmp_path: Path) -> None:
    """summary.json holds the mapping as JSON and no temp file is left behind."""
    path = write_summary(tmp_path / "summary.json", {"rows": 3, "codes": {"required": 1}})
    assert json.loads(path.read_text()) == {"rows": 3, "codes": {"required": 1}}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
