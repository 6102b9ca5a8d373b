"""The local rules as tables and vectorised checks over whole columns.

Every function here takes pandas columns of trimmed strings ("" when empty) and returns numpy
masks or normalised columns, so a 50,000-row chunk costs a handful of vectorised passes, never
a Python call per cell. :mod:`pipeline.rules.validation` turns the masks into per-row errors.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.masterdata import CodeList
from pipeline.core.settings import MANDATORY_COLUMNS
from pipeline.rules import columns

__all__ = [
    "BOOLEAN_VALUES",
    "CODE_COLUMNS",
    "EMIRATES_ID",
    "LABELS",
    "MANDATORY_COLUMNS",
    "MAX_LENGTHS",
    "PASSPORT",
    "Code",
    "age_cutoff",
    "boolean_values",
    "emirates_id_problems",
    "label",
    "parse_dates",
    "passport_problems",
    "resolve_codes",
]


class Code(StrEnum):
    """Stable error codes of the local rules (reports and summaries count them)."""

    REQUIRED = "required"
    TOO_LONG = "too_long"
    BAD_DATE = "bad_date"
    FUTURE_DATE = "future_date"
    TOO_YOUNG = "too_young"
    EXPIRY_BEFORE_ISSUE = "expiry_before_issue"
    EXPIRED = "expired"
    BAD_EMAIL = "bad_email"
    BAD_PHONE = "bad_phone"
    BAD_BOOLEAN = "bad_boolean"
    UNKNOWN_CODE = "unknown_code"
    BAD_ID = "bad_id"
    DUPLICATE_IN_FILE = "duplicate_in_file"
    FILE_MISSING = "file_missing"
    BAD_FILE_TYPE = "bad_file_type"
    FILE_TOO_LARGE = "file_too_large"
    BAD_PATH = "bad_path"


# Longest value the partner takes (assumed, docs/partner-api.md), checked on the value sent.
_NAME_LIMIT = 255
MAX_LENGTHS: dict[str, int] = {
    "channel": 20,
    "salutation": _NAME_LIMIT,
    "first_name": _NAME_LIMIT,
    "middle_name": _NAME_LIMIT,
    "last_name": _NAME_LIMIT,
    "preferred_name": _NAME_LIMIT,
    "mothers_maiden_name": _NAME_LIMIT,
    "id_name_as_per_id": _NAME_LIMIT,
    "employer_name": _NAME_LIMIT,
    "nationality": 2,
    "second_nationality": 2,
    "country_of_birth": 2,
    "country_of_residence": 2,
    "address_country": 2,
    "id_issued_country": 2,
    "primary_mobile_number": 20,
    "secondary_mobile_number": 20,
    "email_id": 120,
}

# How a column is named in messages, where its snake_case name would puzzle a clerk.
LABELS: dict[str, str] = {
    "agent_location_id": "agent location",
    "email_id": "e-mail address",
    "occupation_id": "occupation",
    "political_exposed_person": "politically exposed person",
    "resident_type_id": "resident type",
    "id_type": "ID type",
    "id_number": "ID number",
    "id_issued_country": "ID issuing country",
    "id_issued_on": "ID issue date",
    "id_date_of_expiry": "ID expiry date",
    "id_name_as_per_id": "name as on the ID",
    "id_visa_number": "visa number",
    "id_visa_expiry_date": "visa expiry date",
    "id_front_file": "ID front image",
    "id_back_file": "ID back image",
    "address_type_id": "address type",
    "customer_type_id": "customer type",
    "annual_income_range_id": "income range",
    "annual_income_currency_code": "income currency",
}


def label(column: str) -> str:
    """The clerk-facing name of a column ("first_name" -> "first name")."""
    return LABELS.get(column) or column.replace("_", " ")


# Column -> master-data list it must come from.
CODE_COLUMNS: dict[str, str] = {
    "nationality": "countries",
    "second_nationality": "countries",
    "country_of_birth": "countries",
    "resident_type_id": "resident_types",
    "country_of_residence": "countries",
    "gender": "genders",
    "occupation_id": "occupations",
    "id_type": "id_types",
    "id_issued_country": "countries",
    "address_type_id": "address_types",
    "address_country": "countries",
    "customer_type_id": "customer_types",
    "annual_income_range_id": "income_ranges",
    "annual_income_currency_code": "currencies",
}

# Master-data codes of the ID types with a number format of their own.
EMIRATES_ID = "4"
PASSPORT = "1"

BOOLEAN_VALUES: dict[str, str] = {
    "y": "true",
    "yes": "true",
    "true": "true",
    "1": "true",
    "n": "false",
    "no": "false",
    "false": "false",
    "0": "false",
}

_TRUE = frozenset(k for k, v in BOOLEAN_VALUES.items() if v == "true")
_FALSE = frozenset(k for k, v in BOOLEAN_VALUES.items() if v == "false")
_ISO_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_EID_DASHED = r"784-[0-9]{4}-[0-9]{7}-[0-9]"
_EID_DIGITS = 15


def parse_dates(values: pd.Series, *, day_first: bool) -> tuple[np.ndarray, pd.Series]:
    """Parse a date column: ``datetime64[D]`` (NaT where empty or bad) and the ISO text.

    ``YYYY-MM-DD`` always; ``DD/MM/YYYY`` too when ``day_first``. The ISO text is the input
    where it was already ISO, the reformatted date where it was not, and the input unchanged
    where it is not a date.
    """
    parsed = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[D]")
    strict = values.str.fullmatch(_ISO_DATE).to_numpy(dtype=bool, na_value=False)
    iso = np.flatnonzero(strict)
    if len(iso):
        parsed[iso] = _iso_days(values if len(iso) == len(values) else values.iloc[iso])
    # Other spellings (no zero padding, day first) are rare: pandas parses them one by one.
    other = np.flatnonzero(~strict & columns.nonempty(values))
    if len(other) == 0:
        return parsed, values
    subset = values.iloc[other]
    days = _strptime(subset, "%Y-%m-%d")
    if day_first:
        missing = np.flatnonzero(np.isnat(days))
        if len(missing):
            days[missing] = _strptime(subset.iloc[missing], "%d/%m/%Y")
    parsed[other] = days
    good = ~np.isnat(days)
    text = pd.Series(np.datetime_as_string(days[good], unit="D"), dtype="str")
    return parsed, columns.scatter(values, [(other[good], text)])


def _strptime(values: pd.Series, fmt: str) -> np.ndarray:
    """Dates in one format as ``datetime64[D]``, NaT where they do not parse."""
    stamps = pd.to_datetime(values, format=fmt, errors="coerce")
    return np.asarray(stamps.to_numpy().astype("datetime64[D]"))


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _iso_days(values: pd.Series) -> np.ndarray:
    """``datetime64[D]`` of strictly ``NNNN-NN-NN`` values, NaT where the date does not exist."""
    raw = columns.fixed_width(values, 10).astype(np.int64) - ord("0")
    year = raw[:, 0] * 1000 + raw[:, 1] * 100 + raw[:, 2] * 10 + raw[:, 3]
    month = raw[:, 5] * 10 + raw[:, 6]
    day = raw[:, 8] * 10 + raw[:, 9]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    ok = (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)
    month = np.where(ok, month, 1)
    ok &= day <= _DAYS_IN_MONTH[month] + (leap & (month == 2))
    # Days since 1970-01-01 by the proleptic Gregorian calendar (H. Hinnant's days_from_civil).
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days: np.ndarray = (era * 146097 + doe - 719468).astype("datetime64[D]")
    days[~ok] = np.datetime64("NaT")
    return days


def age_cutoff(today: date, years: int) -> np.datetime64:
    """The latest date of birth of someone at least ``years`` old on ``today``."""
    try:
        cutoff = today.replace(year=today.year - years)
    except ValueError:
        # Born on 29 February: the birthday counts as 28 February in other years.
        cutoff = today.replace(year=today.year - years, day=28)
    return np.datetime64(cutoff, "D")


def resolve_codes(values: pd.Series, codes: CodeList) -> tuple[pd.Series, np.ndarray]:
    """Canonical codes for a master-data column and a mask of unknown values.

    Exact codes are matched in one vectorised pass; the few other spellings (labels, aliases,
    other case) are resolved once per distinct value and written back with one Arrow kernel.
    """
    present = columns.nonempty(values)
    exact = pc.is_in(columns.chunks(values), value_set=_code_set(codes))
    rest = np.flatnonzero(present & ~np.asarray(exact.to_numpy(), dtype=bool))
    unknown = np.zeros(len(values), dtype=bool)
    if len(rest) == 0:
        return values, unknown
    subset = columns.arrow(values.iloc[rest])
    distinct = pc.unique(subset)
    resolved = pa.array(
        [codes.resolve(raw) for raw in distinct.to_pylist()], type=pa.large_string()
    )
    mapped = resolved.take(pc.index_in(subset, value_set=distinct))
    missing = mapped.is_null().to_numpy(zero_copy_only=False)
    unknown[rest[missing]] = True
    found = pc.drop_null(mapped)
    normal = columns.scatter(
        values, [(rest[~missing], columns.series(found, pd.RangeIndex(len(found))))]
    )
    return normal, unknown


_CODE_SETS: dict[tuple[str, str], pa.Array] = {}


def _code_set(codes: CodeList) -> pa.Array:
    """A list's codes as an Arrow array, built once per list version."""
    key = (codes.name, codes.version)
    found = _CODE_SETS.get(key)
    if found is None:
        found = _CODE_SETS[key] = pa.array(sorted(codes.codes), type=pa.large_string())
    return found


def boolean_values(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``"true"``/``"false"`` for yes/no cells, and a mask of cells that are neither."""
    lower = values.str.lower()
    yes = lower.isin(_TRUE).to_numpy(dtype=bool, na_value=False)
    no = lower.isin(_FALSE).to_numpy(dtype=bool, na_value=False)
    bad = (values != "").to_numpy() & ~yes & ~no
    out = values.where(~yes, "true").where(~no, "false")
    return out, bad


def emirates_id_problems(
    numbers: pd.Series, current_year: int
) -> tuple[pd.Series, list[tuple[np.ndarray, str]]]:
    """Check Emirates ID numbers: the digits-only form and, per rule, a mask and message.

    ``784-YYYY-NNNNNNN-C`` is accepted and normalised to its 15 digits. A number gets only its
    first failing rule, the most precise thing to tell the clerk.

    The year digits are deliberately not compared with ``date_of_birth``: the partner does
    not require it, a mismatch cannot say which of the two cells is wrong, and rejecting
    locally what the partner would accept costs the customer a night run.
    """
    dashed = np.flatnonzero(numbers.str.fullmatch(_EID_DASHED).to_numpy(dtype=bool, na_value=False))
    if len(dashed):
        plain = numbers.iloc[dashed].str.replace("-", "", regex=False)
        numbers = columns.scatter(numbers, [(dashed, plain)])
    digits15 = numbers.str.fullmatch("[0-9]{15}").to_numpy(dtype=bool, na_value=False)
    wrong_shape = ~digits15
    starts = numbers.str.startswith("784").to_numpy(dtype=bool, na_value=False)
    wrong_prefix = digits15 & ~starts
    good = np.flatnonzero(digits15 & starts)
    wrong_year = np.zeros(len(numbers), dtype=bool)
    wrong_check = np.zeros(len(numbers), dtype=bool)
    if len(good):
        subset = numbers if len(good) == len(numbers) else numbers.iloc[good]
        digits = columns.fixed_width(subset, _EID_DIGITS) - ord("0")
        year = digits[:, 3:7].astype(np.int64) @ np.array([1000, 100, 10, 1])
        bad_year = (year < 1900) | (year > current_year)
        wrong_year[good[bad_year]] = True
        # Luhn: from the right, every second digit before the check digit is doubled.
        doubled = digits[:, 1:14:2].astype(np.int64) * 2
        total = digits[:, 0:15:2].sum(axis=1) + (doubled // 10 + doubled % 10).sum(axis=1)
        wrong_check[good[~bad_year & (total % 10 != 0)]] = True
    problems = [
        (wrong_shape, "Emirates ID must be 15 digits (784-YYYY-NNNNNNN-C)"),
        (wrong_prefix, "Emirates ID must start with 784"),
        (
            wrong_year,
            f"Emirates ID digits 4-7 must be a birth year between 1900 and {current_year}",
        ),
        (wrong_check, "Emirates ID check digit is wrong (a digit is mistyped)"),
    ]
    return numbers, problems


def passport_problems(numbers: pd.Series) -> tuple[pd.Series, list[tuple[np.ndarray, str]]]:
    """Check passport numbers (6 to 9 letters or digits); normalise them to upper case."""
    ok = numbers.str.fullmatch("[A-Za-z0-9]{6,9}").to_numpy(dtype=bool, na_value=False)
    return numbers.str.upper(), [(~ok, "passport number must be 6 to 9 letters or digits")]
