"""``onboard validate`` as a user runs it: a real subprocess, real files, real exit codes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_data"

# Expected error codes of every invalid row of sample_data/customers.csv (row number as the
# user sees it, header = 1). Every other row (2-35: plain customers and one row per sandbox
# scenario) must be valid.
SAMPLE_INVALID = {
    36: "required",
    37: "too_long",
    38: "bad_date",
    39: "future_date",
    40: "too_young",
    41: "expiry_before_issue",
    42: "expired",
    43: "bad_email",
    44: "bad_phone",
    45: "bad_boolean",
    46: "unknown_code",
    47: "bad_id",
    48: "duplicate_in_file",
    49: "file_missing",
    50: "bad_file_type",
    51: "bad_path",
    52: "excel_number",
    53: "required | unknown_code | bad_email",
}
SAMPLE_ROWS = 52
SCENARIO_IDS = {
    "784198090000005", "784198190000012", "784198290000029", "784198390000036",
    "784198490000043", "784198590000059", "784198690000066", "784198790000073",
    "784198890000080", "784198990000097", "784199090000102", "784199190000119",
    "784199290000126", "784199390000133", "784199490000140", "784199590000156",
    "784199690000163", "784199790000170",
}  # fmt: skip


def run_validate(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``onboard validate`` in a fresh interpreter with no ONBOARD_* settings leaking in."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ONBOARD_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "validate", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def read_report(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV report as dicts."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_sample_file_names_every_problem(tmp_path: Path) -> None:
    """The sample CSV exits 1; each broken row carries exactly its expected codes, the rest
    (including every sandbox scenario row) are valid, and summary.json adds up."""
    done = run_validate(str(SAMPLES / "customers.csv"), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "report:" in done.stdout and "invalid" in done.stdout
    reports = tmp_path / "reports"  # the default --out, relative to where the user is
    rows = read_report(reports / "customers.validation.csv")
    assert [int(r["row_number"]) for r in rows] == list(range(2, SAMPLE_ROWS + 2))
    codes = {int(r["row_number"]): r["error_code"] for r in rows if r["outcome"] == "invalid"}
    assert codes == SAMPLE_INVALID
    valid = [r for r in rows if r["outcome"] == "valid"]
    assert {r["id_number"] for r in valid} >= SCENARIO_IDS
    assert all(r["error_code"] == "" for r in valid)
    # The unknown column is carried, and the one formula-like note is defused.
    assert rows[7]["branch_note"] == "'+ call after 5pm"
    summary = json.loads((reports / "summary.json").read_text())
    assert (summary["rows"], summary["valid"], summary["invalid"]) == (SAMPLE_ROWS, 34, 18)
    assert summary["error_codes"]["required"] == 2
    assert summary["error_codes"]["bad_email"] == 2
    assert summary["error_codes"]["duplicate_in_file"] == 1
    expected_sha = hashlib.sha256((SAMPLES / "customers.csv").read_bytes()).hexdigest()
    assert summary["input"]["file"] == "customers.csv"
    assert summary["input"]["sha256"] == expected_sha
    assert len(summary["master_data"]["version"]) == 12
    assert summary["started"] <= summary["finished"]


def test_sample_workbook_gives_the_same_outcomes_and_an_xlsx_report(tmp_path: Path) -> None:
    """The Excel sample (real date cells, one ID stored as a number) reads like the CSV and
    also gets an .xlsx report."""
    done = run_validate(str(SAMPLES / "customers.xlsx"), "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    rows = read_report(tmp_path / "customers.validation.csv")
    codes = {int(r["row_number"]): r["error_code"] for r in rows if r["outcome"] == "invalid"}
    assert codes == SAMPLE_INVALID
    sheet = openpyxl.load_workbook(tmp_path / "customers.validation.xlsx").active
    assert sheet is not None
    table = list(sheet.values)
    header = list(table[0])
    assert header[-5:] == ["row_number", "outcome", "error_code", "error_field", "error_message"]
    assert len(table) == SAMPLE_ROWS + 1
    excel_row = table[52 - 1]
    assert excel_row[header.index("error_code")] == "excel_number"


def _valid_copy(tmp_path: Path, *, rows: range, extra: dict[str, str] | None = None) -> Path:
    """A copy of some sample rows (with the documents folder they refer to) in tmp_path."""
    source = read_report_plain(SAMPLES / "customers.csv")
    header = list(source[0].keys())
    target = tmp_path / "input" / "batch.csv"
    target.parent.mkdir()
    shutil.copytree(SAMPLES / "docs", target.parent / "docs")
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, header, lineterminator="\n")
        writer.writeheader()
        for number in rows:
            writer.writerow({**source[number - 2], **(extra or {})})
    return target


def read_report_plain(path: Path) -> list[dict[str, str]]:
    """Rows of a plain CSV file as dicts."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_all_valid_file_exits_0_and_xlsx_on_request(tmp_path: Path) -> None:
    """A file whose rows are all valid exits 0; --xlsx adds an .xlsx report for a CSV."""
    batch = _valid_copy(tmp_path, rows=range(2, 36))
    done = run_validate(str(batch), "--out", str(tmp_path / "out"), "--xlsx", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["batch.validation.csv", "batch.validation.xlsx", "summary.json"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["rows"], summary["invalid"], summary["error_codes"]) == (34, 0, {})


def test_day_first_option_reads_dd_mm_yyyy(tmp_path: Path) -> None:
    """14/03/1985 is a bad date by default and a good one with --day-first."""
    batch = _valid_copy(tmp_path, rows=range(2, 3), extra={"date_of_birth": "14/03/1985"})
    plain = run_validate(str(batch), "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert plain.returncode == 1
    assert read_report(tmp_path / "a" / "batch.validation.csv")[0]["error_code"] == "bad_date"
    day_first = run_validate(
        str(batch), "--out", str(tmp_path / "b"), "--day-first", cwd=tmp_path
    )
    assert day_first.returncode == 0, day_first.stdout


def test_document_size_limit_comes_from_settings(tmp_path: Path) -> None:
    """A document over ONBOARD_VALIDATION__MAX_DOCUMENT_BYTES is named as file_too_large."""
    batch = _valid_copy(tmp_path, rows=range(6, 7))  # the passport row with a PDF scan
    done = run_validate(
        str(batch),
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
        env={"ONBOARD_VALIDATION__MAX_DOCUMENT_BYTES": "100"},
    )
    assert done.returncode == 1
    row = read_report(tmp_path / "out" / "batch.validation.csv")[0]
    assert (row["error_code"], row["error_field"]) == ("file_too_large", "id_front_file")


def _unusable_cases(tmp: Path) -> dict[str, tuple[list[str], str, dict[str, str]]]:
    """Case name → (arguments, text the one-line message must contain, environment)."""
    empty = tmp / "empty.csv"
    empty.write_bytes(b"")
    headers_only = tmp / "few_columns.csv"
    headers_only.write_text("first_name,last_name\nSara,Khan\n")
    binary = tmp / "photo.csv"
    binary.write_bytes((SAMPLES / "docs" / "eid_front.jpg").read_bytes() * 4)
    bad_map = tmp / "map.toml"
    bad_map.write_text("[columns\n")
    out_file = tmp / "taken"
    out_file.write_text("not a directory")
    sample = str(SAMPLES / "customers.csv")
    workbook = str(SAMPLES / "customers.xlsx")
    bad_age = {"ONBOARD_VALIDATION__MIN_AGE_YEARS": "eighteen"}
    return {
        "empty": ([str(empty)], "empty.csv", {}),
        "missing_columns": ([str(headers_only)], "few_columns.csv", {}),
        "not_a_table": ([str(binary)], "photo.csv", {}),
        "no_such_file": ([str(tmp / "nowhere.csv")], "nowhere.csv", {}),
        "bad_column_map": ([sample, "--column-map", str(bad_map)], "map.toml", {}),
        "no_master_data": ([sample, "--master-data", str(tmp / "nomd")], "nomd", {}),
        "out_is_a_file": ([sample, "--out", str(out_file)], "taken", {}),
        "unknown_sheet": ([workbook, "--sheet", "Nope"], "Nope", {}),
        "bad_setting": ([sample], "ONBOARD_VALIDATION__MIN_AGE_YEARS", bad_age),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "missing_columns",
        "not_a_table",
        "no_such_file",
        "bad_column_map",
        "no_master_data",
        "out_is_a_file",
        "unknown_sheet",
        "bad_setting",
    ],
)
def test_unusable_input_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    """A file, column map, master data or option that cannot be used: exit 2, one line on
    stderr naming the culprit, no traceback, and no report written."""
    args, named, env = _unusable_cases(tmp_path)[case]
    done = run_validate(*args, cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "reports").exists()


def test_report_fed_back_as_input_gives_the_same_report(tmp_path: Path) -> None:
    """A report is a valid input: validating it again yields the same outcomes, its old
    outcome columns are replaced (not duplicated), and defused cells are not re-prefixed."""
    batch = _valid_copy(tmp_path, rows=range(2, SAMPLE_ROWS + 2))
    first = run_validate(str(batch), "--out", str(batch.parent), cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    report = batch.parent / "batch.validation.csv"
    again = report.with_name("again.csv")
    again.write_bytes(report.read_bytes())
    second = run_validate(str(again), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert second.returncode == 1, second.stderr
    before = read_report(report)
    after = read_report(tmp_path / "out" / "again.validation.csv")
    assert list(after[0].keys()) == list(before[0].keys())
    assert after == before


@pytest.mark.parametrize(("rate", "invalid"), [(0.0, 0), (1.0, 1_999)])
def test_generated_customers_break_exactly_as_asked(
    tmp_path: Path, rate: float, invalid: int
) -> None:
    """bench/make_customers.py writes rows our rules accept, except the broken fraction
    (every row but the first when the rate is 1), so benchmark figures mean what they say."""
    data = tmp_path / "gen.csv"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "make_customers.py"), "--rows", "2000",
         "--invalid-rate", str(rate), "--out", str(data), "--seed", "3"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    done = run_validate(str(data), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == (1 if invalid else 0), done.stdout + done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["rows"], summary["invalid"]) == (2000, invalid)
    if invalid:
        assert len(summary["error_codes"]) >= 8  # broken in varied ways


def test_file_broken_after_the_first_chunks_leaves_no_report(tmp_path: Path) -> None:
    """A file that turns out unusable deep inside (after chunks were already reported) exits
    2 naming the line, and leaves neither a report nor a temporary file behind."""
    data = tmp_path / "long.csv"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "make_customers.py"), "--rows", "120000",
         "--invalid-rate", "0", "--out", str(data)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with data.open("a", encoding="utf-8") as handle:
        handle.write("BULK,AGT001,Mr,Omar\n")
    out = tmp_path / "out"
    done = run_validate(str(data), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "long.csv" in lines[0] and "120002" in lines[0]
    assert list(out.iterdir()) == []
