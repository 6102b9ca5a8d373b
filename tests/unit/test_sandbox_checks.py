"""The sandbox's body checks: lookup plausibility, onboarding mandatory/format rules (40002)
and master-data codes (45053)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.core.masterdata import MasterData, load_master_data
from sandbox.checks import MISSING, check_mandatory, check_master_data, lookup_key, onboard_key
from sandbox.config import SAMPLE_DATA


@pytest.fixture(scope="module")
def master() -> MasterData:
    """The shipped sample master data."""
    return load_master_data(SAMPLE_DATA / "master_data")


def body(**overrides: Any) -> dict[str, Any]:
    valid: dict[str, Any] = {
        "channel": "BRANCH",
        "agent_location_id": "AG01",
        "first_name": "Test",
        "last_name": "Person",
        "nationality": "AE",
        "date_of_birth": "1990-01-01",
        "country_of_birth": "IN",
        "country_of_residence": "AE",
        "gender": "F",
        "primary_mobile_number": "+971500000001",
        "occupation_id": "2",
        "address_list": [{"address_type_id": "1", "city": "Dubai", "country": "AE"}],
        "id_details": [
            {"id_type": "4", "id_number": "784199012345678", "issued_country": "AE",
             "date_of_expiry": "2031-01-01"},
        ],
    }  # fmt: skip
    valid.update(overrides)
    return valid


def test_valid_body_passes_both_checks(master: MasterData) -> None:
    """A complete body with known codes has no problems and yields its ID key."""
    assert check_mandatory(body()) == {}
    assert check_master_data(body(), master) == {}
    assert onboard_key(body()) == ("4", "784199012345678")


@pytest.mark.parametrize("value", [None, "", "   "])
def test_absent_null_or_blank_mandatory_field_is_missing(value: object) -> None:
    """A mandatory field that is absent, null or blank is reported as missing."""
    assert check_mandatory(body(last_name=value)) == {"last_name": MISSING}
    without = body()
    del without["last_name"]
    assert check_mandatory(without) == {"last_name": MISSING}


def test_nested_mandatory_fields_are_named_with_their_path() -> None:
    """Missing fields of the first address and ID entries are named like address_list[0].city."""
    problems = check_mandatory(
        body(
            address_list=[{"address_type_id": "1", "country": "AE"}],
            id_details=[{"id_type": "4", "id_number": "1", "date_of_expiry": "2031-01-01"}],
        )
    )
    assert problems == {
        "address_list[0].city": MISSING,
        "id_details[0].issued_country": MISSING,
    }


@pytest.mark.parametrize("entries", [None, [], "not a list"])
def test_missing_entry_lists_are_reported(entries: object) -> None:
    """address_list and id_details need at least one entry."""
    problems = check_mandatory(body(address_list=entries))
    assert problems == {"address_list": "at least one entry is mandatory"}


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"first_name": "x" * 256}, "first_name", "must be at most 255 characters"),
        ({"channel": "c" * 21}, "channel", "must be at most 20 characters"),
        ({"email_id": "e" * 121}, "email_id", "must be at most 120 characters"),
        ({"primary_mobile_number": "+9" * 11}, "primary_mobile_number", "at most 20"),
        ({"nationality": "ARE"}, "nationality", "2-letter country code"),
        ({"date_of_birth": "01/02/1990"}, "date_of_birth", "YYYY-MM-DD"),
        ({"political_exposed_person": "no"}, "political_exposed_person", "true or false"),
        ({"gender": ["F"]}, "gender", "must be a string"),
    ],
)
def test_format_and_length_problems_are_40002(
    overrides: dict[str, Any], field: str, problem: str
) -> None:
    """Over-long values, malformed country codes and dates, and wrong types are reported."""
    problems = check_mandatory(body(**overrides))
    assert list(problems) == [field]
    assert problem in problems[field]


def test_integer_ids_are_accepted() -> None:
    """An integer where a code is expected (occupation_id 2) is accepted as its text."""
    assert check_mandatory(body(occupation_id=2)) == {}


def test_unknown_codes_are_named_per_field(master: MasterData) -> None:
    """Unknown codes in top-level, address, ID and classification fields are each reported;
    labels are not codes."""
    problems = check_master_data(
        body(
            nationality="ZZ",
            gender="Female",
            resident_type_id="9",
            address_list=[{"address_type_id": "7", "city": "Dubai", "country": "AE"},
                          {"address_type_id": "1", "city": "X", "country": "QQ"}],
            id_details=[{"id_type": "44", "id_number": "1", "issued_country": "AE",
                         "date_of_expiry": "2031-01-01"}],
            customer_classification={"annual_income_currency_code": "QQQ"},
        ),
        master,
    )  # fmt: skip
    assert set(problems) == {
        "nationality",
        "gender",
        "resident_type_id",
        "address_list[0].address_type_id",
        "address_list[1].country",
        "id_details[0].id_type",
        "customer_classification.annual_income_currency_code",
    }
    assert problems["nationality"] == "unknown countries code 'ZZ'"


def test_absent_optional_codes_pass(master: MasterData) -> None:
    """Optional coded fields that are absent or empty are not master-data problems."""
    assert check_master_data(body(second_nationality="", resident_type_id=None), master) == {}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"idType": "4", "idNumber": "784199012345678"}, ("4", "784199012345678")),
        ({"idType": "1", "idNumber": "P1234567"}, ("1", "P1234567")),
        ({"idType": "4", "idNumber": "A" * 40}, ("4", "A" * 40)),
        ({"idType": "4", "idNumber": "A" * 41}, None),
        ({"idType": "4", "idNumber": ""}, None),
        ({"idType": "4", "idNumber": "784 1990"}, None),
        ({"idType": "4", "idNumber": "٧٨٤١٩٩٠"}, None),
        ({"idType": "", "idNumber": "1"}, None),
        ({"idType": "1234", "idNumber": "1"}, None),
        ({"idType": "4", "idNumber": 784}, None),
        ({"idNumber": "1"}, None),
        ("not an object", None),
    ],
)
def test_lookup_key_plausibility(payload: object, expected: tuple[str, str] | None) -> None:
    """Only a short idType and a 1–40 character ASCII-alphanumeric idNumber are plausible."""
    assert lookup_key(payload) == expected


def test_sandbox_requires_exactly_the_pipelines_default_mandatory_columns() -> None:
    """The sandbox's nested mandatory list and the pipeline's flat default say the same thing:
    a body built by the pipeline from a row with only the default mandatory columns passes the
    sandbox's mandatory check, and leaving out any one of them makes the sandbox name it."""
    from pipeline.core.settings import MANDATORY_COLUMNS
    from pipeline.ingest.schema import to_partner_body

    full = {column: "2030-01-01" if "date" in column else "X1" for column in MANDATORY_COLUMNS}
    problems = check_mandatory(to_partner_body(full))
    assert MISSING not in problems.values(), problems
    for column in MANDATORY_COLUMNS:
        row = {k: v for k, v in full.items() if k != column}
        missing = [f for f, p in check_mandatory(to_partner_body(row)).items() if p == MISSING]
        assert len(missing) == 1, (column, missing)
        assert missing[0].endswith(column.removeprefix("id_").removeprefix("address_")), (
            column, missing,
        )
