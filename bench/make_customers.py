"""Generate a large synthetic customers CSV for benchmarks (fake but plausible UAE customers).

    python bench/make_customers.py --rows 1000000 --invalid-rate 0.05 --out /tmp/c.csv

Every canonical column is present. Valid rows carry distinct Emirates IDs (784, birth year,
serial, Luhn check digit), distinct E.164 UAE mobile numbers and distinct emails. A fraction
``--invalid-rate`` of the rows is broken, each in one of several ways (missing name, bad or
underage date of birth, bad check digit, unknown code, bad email or phone, expired document,
duplicate ID). Everything is vectorised with numpy and written with Arrow's CSV writer, so a
million rows take a few seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

# The canonical column list, in order (pipeline/schema.py holds the same tuple; it is
# repeated here so the generator runs without the package installed).
COLUMNS = (
    "channel", "agent_location_id", "salutation", "first_name", "middle_name", "last_name",
    "preferred_name", "mothers_maiden_name", "nationality", "second_nationality",
    "date_of_birth", "country_of_birth", "place_of_birth", "resident_type_id",
    "country_of_residence", "gender", "primary_mobile_number", "secondary_mobile_number",
    "email_id", "occupation_id", "political_exposed_person",
    "id_type", "id_number", "id_issued_country", "id_issued_on", "id_date_of_expiry",
    "id_name_as_per_id", "id_issued_by", "id_visa_number", "id_visa_expiry_date",
    "id_front_file", "id_back_file",
    "address_type_id", "address_building_name", "address_street_name", "address_landmark",
    "address_city", "address_district", "address_state", "address_country", "address_zip",
    "address_po_box",
    "customer_type_id", "income_type", "annual_income_range_id",
    "annual_income_currency_code", "employer_name", "profession_category", "risk_rating_id",
    "tax_registration_number",
    "ecrn",
)  # fmt: skip

MALE = np.array(["Mohammed", "Ahmed", "Rahul", "Arjun", "Jose", "Imran", "Omar", "Karim",
                 "Sanjay", "Bilal", "Yousef", "Ravi", "Mark", "Hassan", "Tariq", "Rohan"])
FEMALE = np.array(["Fatima", "Aisha", "Priya", "Maria", "Sara", "Mariam", "Anjali", "Noor",
                   "Leila", "Grace", "Huda", "Sunita", "Ayesha", "Rania", "Joy", "Deepa"])
LAST = np.array(["Khan", "Al Mansoori", "Sharma", "Santos", "Hussain", "Nair", "Rahman",
                 "Fernandes", "Haddad", "Iqbal", "Reyes", "Al Hashimi", "Patel", "Menon",
                 "Siddiqui", "Cruz", "Abdullah", "Kumar", "Mahmoud", "Das"])
NATIONALITY = np.array(["IN", "PK", "PH", "BD", "EG", "AE", "NP", "LK", "JO", "GB"])
CITY = np.array(["Dubai", "Abu Dhabi", "Sharjah", "Ajman", "Al Ain", "Ras Al Khaimah"])
STREET = np.array(["Sheikh Zayed Road", "Al Wasl Road", "Hamdan Street", "Al Nahda Street",
                   "King Faisal Street", "Khalid Bin Waleed Road"])
EMPLOYER = np.array(["Emirates Logistics LLC", "Gulf Trading Co", "Al Noor Hospital",
                     "Desert Rose Hotel", "Metro Construction LLC", "City Cafe"])
DOMAINS = np.array(["gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com"])
MOBILE_PREFIX = np.array(["50", "52", "54", "55", "56", "58"])

# Ways a row is broken; each maps to a rule of pipeline/rules.py.
BREAKS = (
    "missing_first_name", "bad_date", "underage", "bad_check_digit", "unknown_nationality",
    "bad_email", "bad_phone", "expired_document", "unknown_gender", "duplicate_id",
    "too_long_name", "missing_id_number",
)  # fmt: skip

# Scenario IDs of the sandbox use serial 9000000 and up; generated serials stay below it.
MAX_SERIAL = 9_000_000


def luhn_check_digits(payload: np.ndarray, width: int) -> np.ndarray:
    """Luhn check digit for each integer in ``payload`` (``width`` digits, no check digit)."""
    digits = np.empty((payload.size, width), dtype=np.int64)
    rest = payload.copy()
    for position in range(width - 1, -1, -1):
        digits[:, position] = rest % 10
        rest //= 10
    # Counting from the right of the full number (check digit is position 0), the digits at
    # odd positions, i.e. the payload's last digit and every second one before it, double.
    doubled_cols = np.arange(width - 1, -1, -2)
    doubled = digits[:, doubled_cols] * 2
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    plain_cols = np.arange(width - 2, -1, -2)
    total = doubled.sum(axis=1) + digits[:, plain_cols].sum(axis=1)
    result: np.ndarray = (10 - total % 10) % 10
    return result


def emirates_ids(birth_years: np.ndarray, serials: np.ndarray) -> np.ndarray:
    """Valid Emirates ID numbers as int64: 784, birth year, 7-digit serial, Luhn digit."""
    payload = 784 * 10**11 + birth_years.astype(np.int64) * 10**7 + serials.astype(np.int64)
    result: np.ndarray = payload * 10 + luhn_check_digits(payload, 14)
    return result


def _const(value: str, n: int) -> pa.Array:
    """``n`` copies of one string."""
    return _pick(np.array([value]), np.zeros(n, dtype=np.int32))


def _pick(choices: np.ndarray, indices: np.ndarray) -> pa.Array:
    """Strings chosen from ``choices`` by ``indices`` (dictionary decode, all in C++)."""
    dictionary = pa.array(choices.tolist(), type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), dictionary).cast(
        pa.string()
    )


def _text(values: np.ndarray) -> pa.Array:
    """Integers or day counts as strings (dates as ISO ``YYYY-MM-DD``)."""
    if values.dtype.kind == "M":
        return pa.array(values, type=pa.date32()).cast(pa.string())
    return pa.array(values).cast(pa.string())


def _cat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise string concatenation of arrays and constants."""
    return pc.binary_join_element_wise(*parts, "")


def generate(rows: int, invalid_rate: float, seed: int = 7) -> dict[str, pa.Array]:
    """Build the columns of a synthetic customers table; returns column → Arrow string array."""
    if rows >= MAX_SERIAL:
        raise ValueError(f"at most {MAX_SERIAL - 1} rows (distinct Emirates ID serials)")
    rng = np.random.default_rng(seed)
    n = rows
    index = np.arange(n)
    empty = _const("", n)
    female = rng.random(n) < 0.45
    first_idx = np.where(female, rng.integers(0, FEMALE.size, n) + MALE.size,
                         rng.integers(0, MALE.size, n))
    first_names = np.concatenate([MALE, FEMALE])
    first = _pick(first_names, first_idx)
    last_idx = rng.integers(0, LAST.size, n)
    last = _pick(LAST, last_idx)
    nationality = _pick(NATIONALITY, rng.integers(0, NATIONALITY.size, n))
    # Birth dates 1950-01-01 .. 2000-12-31 keep everyone an adult for decades of test runs.
    dob = rng.integers(-7305, 11323, n).astype("datetime64[D]")
    birth_years = dob.astype("datetime64[Y]").astype(np.int64) + 1970
    serials = rng.choice(MAX_SERIAL, n, replace=False)
    ids = _text(emirates_ids(birth_years, serials))
    # Distinct mobile numbers: a distinct 7-digit subscriber number per row.
    subscriber = rng.choice(10_000_000, n, replace=False)
    mobile = _cat("+971", _pick(MOBILE_PREFIX, index % MOBILE_PREFIX.size),
                  pc.utf8_lpad(_text(subscriber), 7, "0"))
    email_names = np.char.replace(np.char.lower(first_names), " ", "")
    email_last = np.char.replace(np.char.lower(LAST), " ", "")
    email = _cat(_pick(email_names, first_idx), ".", _pick(email_last, last_idx),
                 _text(index), "@", _pick(DOMAINS, rng.integers(0, DOMAINS.size, n)))
    # Issued 2023-01-01 .. 2025-12-31, valid ten years: not expired until 2033 at the earliest.
    issued = rng.integers(19358, 20453, n).astype("datetime64[D]")
    expiry = issued + np.timedelta64(3652, "D")
    resident = pc.not_equal(nationality, "AE")
    cols: dict[str, pa.Array] = {
        "channel": _const("BULK", n),
        "agent_location_id": _cat("AGT", pc.utf8_lpad(_text(index % 40 + 1), 3, "0")),
        "salutation": _pick(np.array(["Mr", "Ms"]), female.astype(np.int32)),
        "first_name": first,
        "middle_name": empty,
        "last_name": last,
        "preferred_name": empty,
        "mothers_maiden_name": empty,
        "nationality": nationality,
        "second_nationality": empty,
        "date_of_birth": _text(dob),
        "country_of_birth": nationality,
        "place_of_birth": empty,
        "resident_type_id": pc.if_else(resident, "1", "3"),
        "country_of_residence": _const("AE", n),
        "gender": _pick(np.array(["M", "F"]), female.astype(np.int32)),
        "primary_mobile_number": mobile,
        "secondary_mobile_number": empty,
        "email_id": email,
        "occupation_id": _text(rng.integers(1, 11, n)),
        "political_exposed_person": _const("N", n),
        "id_type": _const("4", n),
        "id_number": ids,
        "id_issued_country": _const("AE", n),
        "id_issued_on": _text(issued),
        "id_date_of_expiry": _text(expiry),
        "id_name_as_per_id": _cat(first, " ", last),
        "id_issued_by": _const("ICP", n),
        "id_visa_number": empty,
        "id_visa_expiry_date": empty,
        "id_front_file": empty,
        "id_back_file": empty,
        "address_type_id": _const("1", n),
        "address_building_name": _cat("Building ", _text(index % 900 + 1)),
        "address_street_name": _pick(STREET, rng.integers(0, STREET.size, n)),
        "address_landmark": empty,
        "address_city": _pick(CITY, rng.integers(0, CITY.size, n)),
        "address_district": empty,
        "address_state": empty,
        "address_country": _const("AE", n),
        "address_zip": empty,
        "address_po_box": _text(rng.integers(1000, 99999, n)),
        "customer_type_id": _const("1", n),
        "income_type": _const("Salary", n),
        "annual_income_range_id": _text(rng.integers(1, 6, n)),
        "annual_income_currency_code": _const("AED", n),
        "employer_name": _pick(EMPLOYER, rng.integers(0, EMPLOYER.size, n)),
        "profession_category": empty,
        "risk_rating_id": _const("1", n),
        "tax_registration_number": empty,
        "ecrn": empty,
    }
    _break_rows(cols, rng, invalid_rate)
    return cols


def _break_rows(cols: dict[str, pa.Array], rng: np.random.Generator, rate: float) -> None:
    """Break a fraction ``rate`` of the rows in place, each in one of the ``BREAKS`` ways."""
    n = len(cols["id_number"])
    broken = np.flatnonzero(rng.random(n) < rate)
    # Row 0 is never broken so that a duplicate always has a first occurrence to name.
    broken = broken[broken > 0]
    kinds = rng.integers(0, len(BREAKS), broken.size)

    def put(column: str, rows: np.ndarray, value: str | pa.Array) -> None:
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        cols[column] = pc.if_else(pa.array(mask), value, cols[column])

    for k, kind in enumerate(BREAKS):
        rows = broken[kinds == k]
        if rows.size == 0:
            continue
        if kind == "missing_first_name":
            put("first_name", rows, "")
        elif kind == "bad_date":
            put("date_of_birth", rows, "1990-02-31")
        elif kind == "underage":
            put("date_of_birth", rows, "2020-05-17")
        elif kind == "bad_check_digit":
            ids = np.array(cols["id_number"].cast(pa.int64()))
            check = ids % 10
            put("id_number", rows, _text(ids - check + (check + 1) % 10))
        elif kind == "unknown_nationality":
            put("nationality", rows, "XX")
        elif kind == "bad_email":
            put("email_id", rows, "not-an-email")
        elif kind == "bad_phone":
            put("primary_mobile_number", rows, "12345")
        elif kind == "expired_document":
            put("id_issued_on", rows, "2010-01-01")
            put("id_date_of_expiry", rows, "2015-01-01")
        elif kind == "unknown_gender":
            put("gender", rows, "Q")
        elif kind == "duplicate_id":
            # Copy the ID of the nearest earlier row that is not broken, so the copy is a
            # real duplicate of a valid first occurrence (row 0 is never broken).
            intact = np.setdiff1d(np.arange(n), broken, assume_unique=True)
            source = np.zeros(n, dtype=np.int64)
            source[rows] = intact[np.searchsorted(intact, rows) - 1]
            put("id_number", rows, cols["id_number"].take(pa.array(source)))
        elif kind == "too_long_name":
            put("last_name", rows, "X" * 300)
        elif kind == "missing_id_number":
            put("id_number", rows, "")


def write_csv(cols: dict[str, pa.Array], out: Path) -> None:
    """Write the columns to ``out`` as UTF-8 CSV with a plain header line."""
    table = pa.table({name: cols[name] for name in COLUMNS})
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as handle:
        handle.write((",".join(COLUMNS) + "\n").encode())
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        pacsv.write_csv(table, handle, write_options=options)


def main(argv: list[str] | None = None) -> int:
    """Command line: generate ``--rows`` rows into ``--out``; prints rows and seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--invalid-rate", type=float, default=0.05)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if not 0 <= args.invalid_rate <= 1 or not 1 <= args.rows < MAX_SERIAL:
        parser.error(f"--rows must be 1 to {MAX_SERIAL - 1:,}; --invalid-rate 0 to 1")
    started = time.perf_counter()
    write_csv(generate(args.rows, args.invalid_rate, args.seed), args.out)
    elapsed = time.perf_counter() - started
    print(f"wrote {args.rows:,} rows to {args.out} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
