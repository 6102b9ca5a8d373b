"""Reading CSV files: encodings, delimiters, everything-is-text, row numbers, column maps."""

from __future__ import annotations

import codecs
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from pipeline.core.settings import MANDATORY_COLUMNS
from pipeline.ingest.schema import CANONICAL_COLUMNS, ColumnMap
from pipeline.ingest.schema import InputError as SchemaInputError
from pipeline.ingest.sniffing import sniff_delimiter
from pipeline.ingest.table import Chunk, InputError, Table, open_table

DATA = Path(__file__).resolve().parent.parent / "data"
NAMES = "first_name,last_name,nationality\nZoë,Lefèvre,NA\nJosé,Núñez,AE\n"


def write(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def read_all(table: Table, size: int = 50_000) -> list[Chunk]:
    return list(table.chunks(size))


def rows_of(path: Path, **kwargs: object) -> list[dict[str, str]]:
    table = open_table(path, required=(), **kwargs)  # type: ignore[arg-type]
    records: list[dict[str, str]] = []
    for chunk in table.chunks():
        records += chunk.raw.to_dict("records")  # type: ignore[arg-type]
    return records


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str) -> None:
    """Comma, semicolon, tab and pipe files read to the same rows; the delimiter is reported."""
    path = write(tmp_path, NAMES.replace(",", delimiter))
    table = open_table(path, required=())
    assert table.info.delimiter == delimiter
    assert rows_of(path) == [
        {"first_name": "Zoë", "last_name": "Lefèvre", "nationality": "NA"},
        {"first_name": "José", "last_name": "Núñez", "nationality": "AE"},
    ]


def test_sniffer_prefers_the_consistent_delimiter() -> None:
    """Commas inside values do not fool the sniffer when another delimiter splits every line."""
    sample = "name;city\nLee, Ann;Dubai, Marina\nRay, Bob;Abu Dhabi\n"
    assert sniff_delimiter(sample) == ";"
    assert sniff_delimiter("just one column\nvalue\n") == ","


@pytest.mark.parametrize(
    ("encoding", "reported"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),
        ("utf-16-be-bom", "utf-16"),
        ("cp1252", "cp1252"),
    ],
)
def test_encodings_are_detected(tmp_path: Path, encoding: str, reported: str) -> None:
    """UTF-8 with and without BOM, UTF-16 with either BOM and legacy cp1252 all read right."""
    text = NAMES + "Renée,Dupré,FR\n"
    if encoding == "utf-16-be-bom":
        path = tmp_path / "in.csv"
        path.write_bytes(codecs.BOM_UTF16_BE + text.encode("utf-16-be"))
    else:
        path = write(tmp_path, text, encoding)
    table = open_table(path, required=())
    assert table.info.encoding == reported
    assert table.info.headers == ["first_name", "last_name", "nationality"]
    chunk = read_all(table)[0]
    assert chunk.raw["last_name"].tolist() == ["Lefèvre", "Núñez", "Dupré"]
    assert chunk.row_numbers.tolist() == [2, 3, 4]


def test_excel_unicode_text_is_tab_separated_utf16(tmp_path: Path) -> None:
    """Excel's "Unicode text" export (UTF-16 LE with BOM, tabs, CRLF) reads cleanly."""
    path = write(tmp_path, NAMES.replace(",", "\t").replace("\n", "\r\n"), "utf-16")
    table = open_table(path, required=())
    assert (table.info.encoding, table.info.delimiter) == ("utf-16", "\t")
    assert rows_of(path)[1] == {"first_name": "José", "last_name": "Núñez", "nationality": "AE"}


def test_utf16_without_bom_is_recognised(tmp_path: Path) -> None:
    """UTF-16 LE text without a BOM is spotted by its zero bytes instead of refused as binary."""
    path = write(tmp_path, NAMES, "utf-16-le")
    assert open_table(path, required=()).info.encoding == "utf-16-le"
    assert rows_of(path)[0]["first_name"] == "Zoë"


def test_legacy_bytes_far_into_the_file_are_found(tmp_path: Path) -> None:
    """A cp1252 file whose first accent sits beyond the first megabyte is still not read as
    UTF-8 (which would fail half-way); the euro sign comes out right."""
    filler = "".join(f"Name{i},Plain,AE\n" for i in range(80_000))
    text = "first_name,last_name,nationality\n" + filler + "René,€uro,FR\n"
    path = write(tmp_path, text, "cp1252")
    assert path.stat().st_size > 1 << 20
    table = open_table(path, required=())
    assert table.info.encoding not in ("utf-8", "utf-8-sig")
    last = read_all(table)[-1]
    assert last.raw.iloc[-1].tolist() == ["René", "€uro", "FR"]
    assert last.row_numbers.iloc[-1] == 80_002


def test_bytes_undefined_in_cp1252_fall_back_without_crashing(tmp_path: Path) -> None:
    """A byte cp1252 does not define (0x81) cannot crash the read: some single-byte code page
    that decodes it is chosen, so the row arrives with one character for that byte."""
    path = tmp_path / "in.csv"
    path.write_bytes(b"first_name,last_name\nAnn\x81,Lee\n")
    table = open_table(path, required=())
    assert table.info.encoding not in ("utf-8", "utf-8-sig", "cp1252")
    (name,) = read_all(table)[0].raw["first_name"].tolist()
    assert name.startswith("Ann")
    assert len(name) == 4


def test_everything_stays_text(tmp_path: Path) -> None:
    """NA stays Namibia, leading zeros stay, null-like words and numbers are not converted."""
    path = write(
        tmp_path,
        "nationality,id_number,address_zip,notes,occupation_id\n"
        "NA,0012345,00501,NULL,1.50\n"
        "N/A,007,,nan,1e3\n",
    )
    records = rows_of(path)
    assert records == [
        {"nationality": "NA", "id_number": "0012345", "address_zip": "00501", "notes": "NULL",
         "occupation_id": "1.50"},
        {"nationality": "N/A", "id_number": "007", "address_zip": "", "notes": "nan",
         "occupation_id": "1e3"},
    ]


def test_rows_are_trimmed_canonical_and_raw_is_untouched(tmp_path: Path) -> None:
    """``rows`` holds every canonical column in order, trimmed, "" when absent; ``raw`` keeps
    the file's own headers, unknown columns and untrimmed values."""
    path = write(tmp_path, "First Name,Notes,LAST NAME\n  Ann \t,keep me , Lee\n")
    chunk = read_all(open_table(path, required=()))[0]
    assert list(chunk.raw.columns) == ["First Name", "Notes", "LAST NAME"]
    assert chunk.raw.iloc[0].tolist() == ["  Ann \t", "keep me ", " Lee"]
    assert tuple(chunk.rows.columns) == CANONICAL_COLUMNS
    assert chunk.rows.loc[0, "first_name"] == "Ann"
    assert chunk.rows.loc[0, "last_name"] == "Lee"
    assert chunk.rows.loc[0, "email_id"] == ""
    assert "Notes" not in chunk.rows.columns


def test_quoted_newlines_keep_the_line_where_the_record_starts() -> None:
    """Records spanning lines (CRLF inside quotes) are numbered by their first line; a blank
    line is skipped but still counted."""
    chunk = read_all(open_table(DATA / "quoted_newlines.csv", required=()))[0]
    assert chunk.row_numbers.tolist() == [2, 5, 8]
    assert chunk.raw["address_street_name"].tolist() == [
        "Villa 5\r\nStreet 12",
        "Tower A\r\nFloor 3\r\nFlat 301",
        "plain",
    ]
    assert chunk.raw["notes"].tolist() == ["x", 'say "hi"', ""]


def test_blank_and_empty_rows_are_skipped_but_counted(tmp_path: Path) -> None:
    """Leading blank lines, blank lines and rows of bare delimiters produce no rows, and the
    rows after them keep the line numbers a user sees in an editor."""
    path = write(tmp_path, "\n\nfirst_name,last_name\nAnn,Lee\n,\n\nBob,Ray\n\n")
    chunks = read_all(open_table(path, required=()))
    assert [c.row_numbers.tolist() for c in chunks] == [[4, 7]]
    assert chunks[0].raw["first_name"].tolist() == ["Ann", "Bob"]


def test_header_spanning_two_lines_shifts_the_numbers(tmp_path: Path) -> None:
    """A quoted header with a line break makes the first record start on line 3."""
    path = write(tmp_path, 'first_name,"last\nname"\nAnn,Lee\nBob,Ray\n')
    table = open_table(path, required=())
    assert table.info.headers == ["first_name", "last\nname"]
    assert read_all(table)[0].row_numbers.tolist() == [3, 4]


def test_chunks_share_one_index_and_number_continuously(tmp_path: Path) -> None:
    """Chunks hold at most ``size`` rows, each part on a fresh RangeIndex, numbers continuing;
    reading twice gives the same chunks."""
    lines = "".join(f"Name{i},\"two\nlines\",{i:04d}\n" for i in range(7))
    path = write(tmp_path, "first_name,address_street_name,id_number\n" + lines)
    table = open_table(path, required=())
    chunks = read_all(table, size=3)
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [c.row_numbers.tolist() for c in chunks] == [[2, 4, 6], [8, 10, 12], [14]]
    for chunk in chunks:
        expected = pd.RangeIndex(len(chunk))
        assert chunk.raw.index.equals(expected)
        assert chunk.rows.index.equals(expected)
        assert chunk.row_numbers.index.equals(expected)
    assert chunks[2].rows.loc[0, "id_number"] == "0006"
    again = read_all(table, size=3)
    assert [c.row_numbers.tolist() for c in again] == [[2, 4, 6], [8, 10, 12], [14]]


def test_many_blocks_keep_exact_numbers(tmp_path: Path) -> None:
    """Across the reader's internal blocks (about 1 MB each) numbering stays exact when some
    records span lines and some lines are blank."""
    parts = ["first_name,address_street_name,notes\n"]
    expected: list[int] = []
    line = 2
    for i in range(40_000):
        if i % 997 == 0:
            parts.append("\n")
            line += 1
        expected.append(line)
        if i % 1000 == 0:
            parts.append(f'N{i},"a\nb\nc",{"x" * 20}\n')
            line += 3
        else:
            parts.append(f"N{i},street,{'x' * 20}\n")
            line += 1
    path = write(tmp_path, "".join(parts))
    assert path.stat().st_size > 1 << 20
    chunks = read_all(open_table(path, required=()), size=15_000)
    assert all(len(c) <= 15_000 for c in chunks)
    numbers = [n for c in chunks for n in c.row_numbers.tolist()]
    assert numbers == expected


def test_unquoted_file_takes_the_fast_path_with_same_numbers(tmp_path: Path) -> None:
    """A file with no quote character at all (no line breaks in values possible) numbers
    rows exactly as well."""
    path = write(tmp_path, "first_name,last_name\n" + "Ann,Lee\n" * 5 + "\nBob,Ray\n")
    chunk = read_all(open_table(path, required=()))[0]
    assert chunk.row_numbers.tolist() == [2, 3, 4, 5, 6, 8]


def test_table_info_describes_the_file(tmp_path: Path) -> None:
    """Info carries format, encoding, delimiter, original headers, the canonical mapping of
    recognised headers only, and the file's sha256."""
    path = write(tmp_path, "First Name;Family;Emirates ID No\nAnn;Lee;784199554586091\n")
    cmap = ColumnMap.from_dict({"columns": {"Emirates ID No": "id_number"}})
    info = open_table(path, column_map=cmap, required=()).info
    assert info.path == path
    assert (info.format, info.encoding, info.delimiter, info.sheet) == ("csv", "utf-8", ";", None)
    assert info.headers == ["First Name", "Family", "Emirates ID No"]
    assert info.canonical == {"First Name": "first_name", "Emirates ID No": "id_number"}
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_column_map_renames_and_constants_fill_empty_cells(tmp_path: Path) -> None:
    """Mapped headers reach their canonical column; a constant fills empty cells only (the
    file's value wins) and fills a column the file lacks entirely."""
    path = write(
        tmp_path,
        "Cust First Nm,Emirates ID No,channel,Branch\n"
        "Ann,784199554586091,,B1\n"
        "Bob,784199554586092,BRANCH,B2\n",
    )
    table = open_table(path, column_map=DATA / "column_map.toml", required=())
    rows = read_all(table)[0].rows
    assert rows["first_name"].tolist() == ["Ann", "Bob"]
    assert rows["id_number"].tolist() == ["784199554586091", "784199554586092"]
    assert rows["channel"].tolist() == ["BULK", "BRANCH"]
    assert rows["id_type"].tolist() == ["4", "4"]
    assert rows["agent_location_id"].tolist() == ["1001", "1001"]
    assert table.info.canonical["Cust First Nm"] == "first_name"
    assert "Branch" in read_all(table)[0].raw.columns


def test_constants_satisfy_required_columns(tmp_path: Path) -> None:
    """A required column supplied by a constant is not missing."""
    header = [c for c in MANDATORY_COLUMNS if c not in ("channel", "id_type")]
    path = write(tmp_path, ",".join(header) + "\n" + ",".join("x" for _ in header) + "\n")
    cmap = ColumnMap.from_dict({"constants": {"channel": "BULK", "id_type": "4"}})
    chunk = read_all(open_table(path, column_map=cmap))[0]
    assert chunk.rows.loc[0, "channel"] == "BULK"
    with pytest.raises(InputError, match="missing required column"):
        open_table(path)


def test_id_numbers_excel_turned_into_numbers_are_read_errors(tmp_path: Path) -> None:
    """'7.84199554586091E+14' or '784199554586091.0' in id_number (a CSV saved by Excel) is a
    read error keyed by row number; a proper ID and numbers in other columns are not."""
    path = write(
        tmp_path,
        "id_number,notes\n"
        "7.84199554586091E+14,a\n"
        "784199554586091,1.5E+10\n"
        "784199554586091.0,b\n"
        " 7.8e14 ,c\n",
    )
    chunk = read_all(open_table(path, required=()))[0]
    assert set(chunk.read_errors) == {2, 4, 5}
    (error,) = chunk.read_errors[2]
    assert (error.code, error.field) == ("excel_number", "id_number")
    assert "Excel stored this ID number as a number" in error.message
    assert "Text" in error.message


def test_input_error_is_one_class_everywhere() -> None:
    """ingest re-exports the schema's InputError, so one except clause catches both."""
    assert InputError is SchemaInputError


def test_excel_sep_line_names_the_delimiter(tmp_path: Path) -> None:
    """A first line "sep=;" (written and honoured by Excel) sets the delimiter and is not the
    header; numbering still counts it."""
    path = write(tmp_path, "sep=;\nfirst_name;last_name\nLee, Ann;Dubai, UAE\n")
    table = open_table(path, required=())
    assert (table.info.delimiter, table.info.headers) == (";", ["first_name", "last_name"])
    chunk = read_all(table)[0]
    assert chunk.raw.iloc[0].tolist() == ["Lee, Ann", "Dubai, UAE"]
    assert chunk.row_numbers.tolist() == [3]


def test_stray_quotes_inside_values_are_kept(tmp_path: Path) -> None:
    """A quote inside an unquoted value (odd quote count, but no open quote) is plain text."""
    path = write(tmp_path, 'first_name,notes\nAnn,5" screen\nBob,x\n')
    chunk = read_all(open_table(path, required=()))[0]
    assert chunk.raw["notes"].tolist() == ['5" screen', "x"]
    assert chunk.row_numbers.tolist() == [2, 3]


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    """A file with a header and no records is usable and yields no chunks."""
    path = write(tmp_path, "first_name,last_name\r\n\r\n")
    table = open_table(path, required=())
    assert table.info.headers == ["first_name", "last_name"]
    assert read_all(table) == []


def test_sheet_argument_is_ignored_for_text_files(tmp_path: Path) -> None:
    """A sheet name given for a CSV (e.g. a drop-folder default) does not break reading."""
    path = write(tmp_path, NAMES)
    table = open_table(path, sheet="Customers", required=())
    assert table.info.sheet is None
    assert len(read_all(table)[0]) == 2


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        ("first_name,last_name\nJoão,São Tomé\nZoë,Müller\n", "cp1252", "cp1252"),
        ("first_name,last_name\nПётр,Иванов\nАнна,Смирнова\n", "cp1251", "cp1251"),
        ("first_name,last_name\nأحمد,محمد\nفاطمة,علي\n", "cp1256", "cp1256"),
    ],
)
def test_legacy_code_pages_are_told_apart(
    tmp_path: Path, text: str, encoding: str, expected: str
) -> None:
    """Western, Cyrillic and Arabic Windows code pages decode to the right letters (cp1252 wins
    when several western pages decode alike, so 'São' does not become 'Săo')."""
    path = write(tmp_path, text, encoding)
    table = open_table(path, required=())
    assert table.info.encoding == expected
    chunk = read_all(table)[0]
    assert chunk.raw.to_dict("list") == {
        "first_name": [line.split(",")[0] for line in text.splitlines()[1:]],
        "last_name": [line.split(",")[1] for line in text.splitlines()[1:]],
    }


def test_trailing_delimiter_on_data_lines_only(tmp_path: Path) -> None:
    """Data lines that all end with a delimiter the header lacks get a blank extra column
    instead of failing."""
    path = write(tmp_path, "first_name,last_name\nAnn,Lee,\nBob,Ray,\n")
    table = open_table(path, required=())
    assert table.info.headers == ["first_name", "last_name", "(column 3)"]
    chunk = read_all(table)[0]
    assert chunk.rows["last_name"].tolist() == ["Lee", "Ray"]
    assert chunk.row_numbers.tolist() == [2, 3]


def test_trailing_delimiter_on_the_header_only(tmp_path: Path) -> None:
    """A header ending in a delimiter the data lines lack loses that empty column."""
    path = write(tmp_path, "first_name;last_name;\nAnn;Lee\nBob;Ray\n")
    table = open_table(path, required=())
    assert table.info.headers == ["first_name", "last_name"]
    assert read_all(table)[0].rows["first_name"].tolist() == ["Ann", "Bob"]


def test_quoted_file_with_an_all_empty_column(tmp_path: Path) -> None:
    """A column with no text at all (no character buffer) does not upset line counting."""
    path = write(tmp_path, 'first_name,notes\n"x",\n"y\nz",\n')
    chunk = read_all(open_table(path, required=()))[0]
    assert chunk.raw["notes"].tolist() == ["", ""]
    assert chunk.row_numbers.tolist() == [2, 3]
