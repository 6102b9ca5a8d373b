"""Reading workbooks: sheet choice, sheet row numbers, dates, and IDs Excel turned into numbers."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import openpyxl
import pytest

from pipeline.ingest.excel import ExcelReader, cell_text, date_cell_text
from pipeline.ingest.sniffing import inspect_file
from pipeline.ingest.table import InputError, open_table

HEADER = ["First Name", "Date of Birth", "ID Number", "Primary Mobile Number", "Nationality",
          "Notes", "id_issued_on"]


def workbook(tmp_path: Path, rows: list[list[object]], *, start_row: int = 1,
             extra_sheet: str | None = None, name: str = "customers.xlsx") -> Path:
    """Write HEADER and ``rows`` to the first sheet ("Customers") from ``start_row`` on."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Customers"
    for offset, values in enumerate([HEADER, *rows]):
        for column, value in enumerate(values, start=1):
            if value is not None:
                sheet.cell(row=start_row + offset, column=column, value=value)
    if extra_sheet:
        other = book.create_sheet(extra_sheet)
        other.append(["first_name", "nationality"])
        other.append(["Other", "IN"])
    path = tmp_path / name
    book.save(path)
    return path


ROWS: list[list[object]] = [
    ["Ann", dt.date(1990, 1, 2), "784199554586091", "0501234567", "NA", 12.0, 43831],
    ["Bob", 32874, 784199554586091, 971554747002, "AE", "  padded ", dt.datetime(2020, 1, 1)],
    [None, None, None, None, None, None, None],
    ["Cy", dt.datetime(1985, 5, 6, 0, 0), 7.84199554586091e14, "0012", "IN", True, "2021-03-04"],
]


def test_sheet_rows_dates_and_text(tmp_path: Path) -> None:
    """Header found below blank rows; rows numbered by sheet row (blank row skipped); date
    cells and serials in date columns become ISO dates; text like 'NA' and '0012' is kept;
    whole numbers lose Excel's '.0'."""
    path = workbook(tmp_path, ROWS, start_row=3)
    table = open_table(path, required=())
    assert (table.info.format, table.info.sheet) == ("xlsx", "Customers")
    assert (table.info.encoding, table.info.delimiter) == (None, None)
    assert table.info.headers == HEADER
    (chunk,) = list(table.chunks())
    assert chunk.row_numbers.tolist() == [4, 5, 7]
    assert chunk.rows["date_of_birth"].tolist() == ["1990-01-02", "1990-01-01", "1985-05-06"]
    assert chunk.rows["id_issued_on"].tolist() == ["2020-01-01", "2020-01-01", "2021-03-04"]
    assert chunk.rows["nationality"].tolist() == ["NA", "AE", "IN"]
    assert chunk.rows["primary_mobile_number"].tolist() == ["0501234567", "971554747002", "0012"]
    assert chunk.raw["Notes"].tolist() == ["12", "  padded ", "TRUE"]
    assert chunk.raw.columns.tolist() == HEADER


def test_numeric_id_cells_are_read_errors(tmp_path: Path) -> None:
    """An ID number stored as a number cell (whole or in E-notation) is an ``excel_number``
    read error on id_number for that sheet row; a text cell is fine."""
    path = workbook(tmp_path, ROWS)
    (chunk,) = list(open_table(path, required=()).chunks())
    assert sorted(chunk.read_errors) == [3, 5]
    (error,) = chunk.read_errors[3]
    assert (error.code, error.field) == ("excel_number", "id_number")
    assert "format the column as Text" in error.message
    assert chunk.raw["ID Number"].tolist()[:2] == ["784199554586091", "784199554586091"]


def test_sheet_is_chosen_by_name(tmp_path: Path) -> None:
    """``sheet=`` reads another sheet; an unknown name lists the sheets there are."""
    path = workbook(tmp_path, ROWS, extra_sheet="Branch 2")
    table = open_table(path, sheet="Branch 2", required=())
    assert table.info.sheet == "Branch 2"
    (chunk,) = list(table.chunks())
    assert chunk.rows["first_name"].tolist() == ["Other"]
    assert chunk.row_numbers.tolist() == [2]
    with pytest.raises(InputError, match=r"customers\.xlsx: no sheet named 'Nope'; "
                                         r"sheets: Customers, Branch 2$"):
        open_table(path, sheet="Nope", required=())


def test_workbook_chunks_stream_in_order(tmp_path: Path) -> None:
    """A sheet is handed out in chunks of the requested size, numbers continuing."""
    rows: list[list[object]] = [[f"N{i}", None, f"{i:03d}", None, "AE", None, None]
                                for i in range(7)]
    table = open_table(workbook(tmp_path, rows), required=())
    chunks = list(table.chunks(3))
    assert [c.row_numbers.tolist() for c in chunks] == [[2, 3, 4], [5, 6, 7], [8]]
    assert chunks[2].rows.loc[0, "id_number"] == "006"
    assert chunks[1].raw.index.tolist() == [0, 1, 2]


def test_blank_header_cells_get_a_stand_in_name(tmp_path: Path) -> None:
    """A column with data under an empty header cell is kept under "(column N)"."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["first_name", None, "nationality"])
    sheet.append(["Ann", "memo", "AE"])
    path = tmp_path / "blank.xlsx"
    book.save(path)
    table = open_table(path, required=())
    assert table.info.headers == ["first_name", "(column 2)", "nationality"]
    assert next(iter(table.chunks())).raw["(column 2)"].tolist() == ["memo"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("x", "x"),
        (12.0, "12"),
        (1.5, "1.5"),
        (7, "7"),
        (True, "TRUE"),
        (dt.date(2020, 2, 29), "2020-02-29"),
        (dt.datetime(2020, 2, 29, 13, 5), "2020-02-29 13:05:00"),
        (dt.time(9, 30), "09:30:00"),
    ],
)
def test_cell_text(value: object, text: str) -> None:
    """Cell values render as the text a user expects to see."""
    assert cell_text(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (43831, "2020-01-01"),
        (43831.75, "2020-01-01"),
        (dt.datetime(2020, 1, 1, 23, 59), "2020-01-01"),
        ("01/02/1990", "01/02/1990"),
        (0, "0"),
    ],
)
def test_date_cell_text(value: object, text: str) -> None:
    """In a date column, serials and date-times become ISO dates; text is left for the rules."""
    assert date_cell_text(value) == text


def _ods(path: Path) -> Path:
    """A minimal OpenDocument spreadsheet: one sheet, a date cell and a float ID cell."""
    cell = '<table:table-cell office:value-type="{0}" {1}><text:p>{2}</text:p></table:table-cell>'
    header = "".join(cell.format("string", "", h) for h in ("first_name", "date_of_birth",
                                                          "id_number"))
    data = (cell.format("string", "", "Ann")
            + cell.format("date", 'office:date-value="1990-01-02"', "02.01.1990")
            + cell.format("float", 'office:value="784199554586091"', "784199554586091"))
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        '<office:body><office:spreadsheet><table:table table:name="Kunden">'
        f"<table:table-row>{header}</table:table-row><table:table-row>{data}</table:table-row>"
        "</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
        'manifest:version="1.2"><manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"),
                         "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
    return path


def test_ods_is_read_like_xlsx(tmp_path: Path) -> None:
    """An .ods sheet is recognised by content; date cells and numeric IDs behave as in xlsx."""
    table = open_table(_ods(tmp_path / "kunden.ods"), required=())
    assert (table.info.format, table.info.sheet) == ("ods", "Kunden")
    (chunk,) = list(table.chunks())
    assert chunk.rows.loc[0, "date_of_birth"] == "1990-01-02"
    assert [e.code for e in chunk.read_errors[2]] == ["excel_number"]


def test_workbook_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    """An xlsx saved under a .csv name is still read as a workbook."""
    path = workbook(tmp_path, ROWS, name="export.csv")
    table = open_table(path, required=())
    assert table.info.format == "xlsx"
    assert next(iter(table.chunks())).rows.loc[0, "first_name"] == "Ann"


def test_streaming_engine_reads_exactly_like_calamine(tmp_path: Path) -> None:
    """Big .xlsx sheets are streamed with openpyxl; forced here (threshold 0), the streamed
    read gives the same headers, cells, sheet row numbers and numeric-ID positions."""
    path = workbook(tmp_path, ROWS, start_row=3, extra_sheet="Other")
    facts = inspect_file(path)
    held = ExcelReader(facts, None)
    streamed = ExcelReader(facts, None, stream_above_xml_bytes=0)
    assert (held.streaming, streamed.streaming) == (False, True)
    assert streamed.headers == held.headers == HEADER
    kwargs = {"date_positions": [1, 6], "id_position": 2}
    (a,) = list(held.frames(50, **kwargs))  # type: ignore[arg-type]
    (b,) = list(streamed.frames(50, **kwargs))  # type: ignore[arg-type]
    assert b.frame.to_dict("list") == a.frame.to_dict("list")
    assert b.row_numbers.tolist() == a.row_numbers.tolist() == [4, 5, 7]
    assert b.numeric_ids == a.numeric_ids == [1, 2]
    other = ExcelReader(facts, "Other", stream_above_xml_bytes=0)
    assert next(iter(other.frames(10))).frame.to_dict("list") == {
        "first_name": ["Other"], "nationality": ["IN"]}


def test_workbook_can_be_read_twice(tmp_path: Path) -> None:
    """Each ``chunks()`` call starts again at the top of the sheet."""
    table = open_table(workbook(tmp_path, ROWS), required=())
    first = [c.row_numbers.tolist() for c in table.chunks(2)]
    second = [c.row_numbers.tolist() for c in table.chunks(2)]
    assert first == second == [[2, 3], [5]]


def test_default_sheet_is_the_first_visible_one(tmp_path: Path) -> None:
    """A hidden sheet in front (a template's code lists) is passed over by default but can
    still be named."""
    book = openpyxl.Workbook()
    lists = book.active
    assert lists is not None
    lists.title = "Lists"
    lists.append(["code"])
    lists.sheet_state = "hidden"
    customers = book.create_sheet("Customers")
    customers.append(["first_name"])
    customers.append(["Ann"])
    book.active = 1
    path = tmp_path / "template.xlsx"
    book.save(path)
    assert open_table(path, required=()).info.sheet == "Customers"
    assert open_table(path, sheet="Lists", required=()).info.headers == ["code"]
