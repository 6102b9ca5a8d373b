"""Rebuild ``customers.xlsx`` from ``customers.csv`` the way Excel users produce such files.

    .venv/bin/python sample_data/make_xlsx.py

Cells are text, except that ISO dates become real date cells (so the reader's date handling
is exercised) and an ID number written as ``7.84199554586091E+14`` becomes the number Excel
would have stored, which the reader must flag. Both files therefore give the same report.
"""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

from openpyxl import Workbook

HERE = Path(__file__).resolve().parent
DATE_COLUMNS = {"date_of_birth", "id_issued_on", "id_date_of_expiry", "id_visa_expiry_date"}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")
_SCIENTIFIC = re.compile(r"\d+(?:\.\d*)?[eE][+-]?\d+")


def cell(column: str, value: str) -> object:
    """The value as Excel would hold it: a date, a float for a mangled ID, else text."""
    if column in DATE_COLUMNS and _ISO.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return value  # not a real date (the bad_date row): Excel keeps it as text
    if column == "id_number" and _SCIENTIFIC.fullmatch(value):
        return float(value)
    return value


def main() -> None:
    """Write customers.xlsx next to customers.csv."""
    with (HERE / "customers.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "customers"
    sheet.append(header)
    for row in rows:
        sheet.append([cell(column, value) for column, value in zip(header, row, strict=True)])
    for cells in sheet.iter_rows(min_row=2):
        for item in cells:
            if isinstance(item.value, date):
                item.number_format = "yyyy-mm-dd"
            elif isinstance(item.value, str):
                item.number_format = "@"  # Text, as a careful clerk formats ID columns
    book.save(HERE / "customers.xlsx")
    print(f"wrote {len(rows)} rows to {HERE / 'customers.xlsx'}")


if __name__ == "__main__":
    main()
