"""The local rules as a table: one valid base row, each case mutates it and names the codes."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from support import BASE_ROW, make_validator

from pipeline.core.settings import ValidationSettings
from pipeline.rules.checks import age_cutoff, emirates_id_problems, parse_dates

CASES: list[tuple[str, dict[str, str], list[tuple[str, str]]]] = [
    ("valid base row", {}, []),
    ("mandatory empty", {"first_name": ""}, [("required", "first_name")]),
    ("mandatory id column empty", {"id_date_of_expiry": ""}, [("required", "id_date_of_expiry")]),
    ("name too long", {"last_name": "x" * 256}, [("too_long", "last_name")]),
    ("name at the limit", {"last_name": "x" * 255}, []),
    ("channel too long", {"channel": "C" * 21}, [("too_long", "channel")]),
    (
        "email too long",
        {"email_id": "a" * 60 + "@" + "b" * 60 + ".com"},
        [("too_long", "email_id")],
    ),
    ("impossible date", {"date_of_birth": "1980-02-30"}, [("bad_date", "date_of_birth")]),
    ("not a date", {"id_issued_on": "yesterday"}, [("bad_date", "id_issued_on")]),
    ("day-first without setting", {"date_of_birth": "01/05/1980"}, [("bad_date", "date_of_birth")]),
    ("birth in the future", {"date_of_birth": "2027-01-01"}, [("future_date", "date_of_birth")]),
    ("under 18", {"date_of_birth": "2010-01-01"}, [("too_young", "date_of_birth")]),
    ("18 tomorrow", {"date_of_birth": "2008-06-16"}, [("too_young", "date_of_birth")]),
    ("18 today", {"date_of_birth": "2008-06-15"}, []),
    ("issued in the future", {"id_issued_on": "2026-07-01"}, [("future_date", "id_issued_on")]),
    (
        "expiry before issue",
        {"id_issued_on": "2020-01-01", "id_date_of_expiry": "2019-12-31"},
        [("expiry_before_issue", "id_date_of_expiry")],
    ),
    ("expired", {"id_date_of_expiry": "2026-06-14"}, [("expired", "id_date_of_expiry")]),
    ("expires today is still valid", {"id_date_of_expiry": "2026-06-15"}, []),
    ("bad email", {"email_id": "amal@@example.com"}, [("bad_email", "email_id")]),
    ("email without dot domain", {"email_id": "amal@localhost"}, [("bad_email", "email_id")]),
    ("email special-use domain", {"email_id": "amal@example.local"}, [("bad_email", "email_id")]),
    ("email internationalised is fine", {"email_id": "amal@exämple.com"}, []),
    (
        "phone too short",
        {"primary_mobile_number": "+97150123"},
        [("bad_phone", "primary_mobile_number")],
    ),
    (
        "phone letters",
        {"primary_mobile_number": "call me"},
        [("bad_phone", "primary_mobile_number")],
    ),
    ("phone national form", {"primary_mobile_number": "050 123 4567"}, []),
    ("phone foreign", {"secondary_mobile_number": "+44 7911 123456"}, []),
    (
        "phone invalid prefix",
        {"secondary_mobile_number": "+971511234567"},
        [("bad_phone", "secondary_mobile_number")],
    ),
    ("boolean yes", {"political_exposed_person": "yes"}, []),
    ("boolean 1", {"political_exposed_person": "1"}, []),
    (
        "bad boolean",
        {"political_exposed_person": "maybe"},
        [("bad_boolean", "political_exposed_person")],
    ),
    ("unknown id type", {"id_type": "9"}, [("unknown_code", "id_type")]),
    ("unknown country", {"nationality": "XX"}, [("unknown_code", "nationality")]),
    ("country lower case", {"nationality": "ae"}, []),
    ("country by name", {"country_of_birth": "United Arab Emirates"}, []),
    ("NA is Namibia", {"nationality": "NA"}, []),
    (
        "unknown second nationality",
        {"second_nationality": "ZZ"},
        [("unknown_code", "second_nationality")],
    ),
    ("unknown resident type", {"resident_type_id": "7"}, [("unknown_code", "resident_type_id")]),
    ("unknown occupation", {"occupation_id": "999"}, [("unknown_code", "occupation_id")]),
    ("gender word", {"gender": "Female"}, []),
    ("unknown gender", {"gender": "X"}, [("unknown_code", "gender")]),
    ("unknown address type", {"address_type_id": "5"}, [("unknown_code", "address_type_id")]),
    (
        "unknown income range",
        {"annual_income_range_id": "77"},
        [("unknown_code", "annual_income_range_id")],
    ),
    (
        "unknown currency",
        {"annual_income_currency_code": "XYZ"},
        [("unknown_code", "annual_income_currency_code")],
    ),
    ("unknown customer type", {"customer_type_id": "0"}, [("unknown_code", "customer_type_id")]),
    ("EID with dashes", {"id_number": "784-1980-9000000-5"}, []),
    ("EID too short", {"id_number": "78419809000000"}, [("bad_id", "id_number")]),
    ("EID wrong prefix", {"id_number": "785198090000004"}, [("bad_id", "id_number")]),
    ("EID implausible year", {"id_number": "784180090000005"}, [("bad_id", "id_number")]),
    ("EID future year", {"id_number": "784203090000003"}, [("bad_id", "id_number")]),
    ("EID check digit", {"id_number": "784198090000006"}, [("bad_id", "id_number")]),
    ("passport ok", {"id_type": "1", "id_number": "n1234567"}, []),
    ("passport too short", {"id_type": "1", "id_number": "AB123"}, [("bad_id", "id_number")]),
    ("passport punctuation", {"id_type": "1", "id_number": "AB-12345"}, [("bad_id", "id_number")]),
    ("other ID type has no format rule", {"id_type": "3", "id_number": "DL 12/34"}, []),
]


@pytest.mark.parametrize(
    ("mutation", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule_table(mutation: dict[str, str], expected: list[tuple[str, str]]) -> None:
    """Each mutated row yields exactly the expected (code, column) errors, in column order."""
    errors = make_validator().validate_row({**BASE_ROW, **mutation})
    assert [(e.code, e.field) for e in errors] == expected
    assert all(e.message for e in errors)


def test_all_errors_of_a_row_in_column_order() -> None:
    """A row with many problems reports every one, ordered as the canonical columns are."""
    row = {
        **BASE_ROW,
        "first_name": "",
        "gender": "Q",
        "date_of_birth": "2099-01-01",
        "primary_mobile_number": "12",
        "email_id": "nope",
        "id_number": "784198090000006",
        "address_city": "",
    }
    errors = make_validator().validate_row(row)
    assert [(e.code, e.field) for e in errors] == [
        ("required", "first_name"),
        ("future_date", "date_of_birth"),
        ("unknown_code", "gender"),
        ("bad_phone", "primary_mobile_number"),
        ("bad_email", "email_id"),
        ("bad_id", "id_number"),
        ("required", "address_city"),
    ]


def test_day_first_dates_when_the_setting_says_so() -> None:
    """With day_first_dates a DD/MM/YYYY date is read, and still checked for reality."""
    validator = make_validator(day_first_dates=True)
    assert validator.validate_row({**BASE_ROW, "date_of_birth": "01/05/1980"}) == []
    errors = validator.validate_row({**BASE_ROW, "date_of_birth": "31/02/1980"})
    assert [(e.code, e.field) for e in errors] == [("bad_date", "date_of_birth")]


def test_mandatory_list_comes_from_settings() -> None:
    """The mandatory list is configurable: an extra column becomes required."""
    columns = (*ValidationSettings().mandatory_columns, "email_id")
    validator = make_validator(mandatory_columns=columns)
    errors = validator.validate_row({**BASE_ROW, "email_id": ""})
    assert [(e.code, e.field) for e in errors] == [("required", "email_id")]


def test_min_age_setting() -> None:
    """The minimum age follows the setting."""
    validator = make_validator(min_age_years=50)
    errors = validator.validate_row(BASE_ROW)
    assert [(e.code, e.message) for e in errors] == [
        ("too_young", "customer must be at least 50 years old")
    ]


def test_messages_name_the_precise_id_problem_and_hide_personal_values() -> None:
    """ID messages say which rule failed; phone and date messages never echo the value."""
    validator = make_validator()
    year = validator.validate_row({**BASE_ROW, "id_number": "784180090000005"})[0].message
    assert "birth year between 1900 and 2026" in year
    check = validator.validate_row({**BASE_ROW, "id_number": "784198090000006"})[0].message
    assert "check digit" in check
    bad = validator.validate_row(
        {**BASE_ROW, "primary_mobile_number": "+9715099", "date_of_birth": "1980-13-01"}
    )
    assert all("9715099" not in e.message and "1980" not in e.message for e in bad)
    code = validator.validate_row({**BASE_ROW, "nationality": "XX"})[0].message
    assert code == "nationality 'XX' is not in the countries list"


def test_emirates_id_checks_vectorised() -> None:
    """Every scenario ID of the architecture is a valid Emirates ID; one wrong digit is not."""
    ids = ["784198090000005", "784199190000119", "784199790000170", "784199790000171"]
    normal, problems = emirates_id_problems(pd.Series(ids, dtype="str"), 2026)
    failing = np.zeros(len(ids), dtype=bool)
    for mask, _ in problems:
        failing |= mask
    assert failing.tolist() == [False, False, False, True]
    assert normal.tolist() == ids


def test_parse_dates_gives_iso_text() -> None:
    """Dates come back as datetime64 and ISO text; bad ones are NaT and left as typed."""
    values = pd.Series(["2020-1-5", "1999-12-31", "", "31/12/1999", "2021-02-29"], dtype="str")
    days, text = parse_dates(values, day_first=True)
    assert np.isnat(days).tolist() == [False, False, True, False, True]
    assert text.tolist() == ["2020-01-05", "1999-12-31", "", "1999-12-31", "2021-02-29"]


def test_age_cutoff_on_29_february() -> None:
    """Someone born on 29 February is of age on 28 February of a common year."""
    assert age_cutoff(date(2027, 2, 28), 18) == np.datetime64("2009-02-28")
    assert age_cutoff(date(2028, 2, 29), 18) == np.datetime64("2010-02-28")
