"""The partner's own checks of request bodies: lookup format, onboarding mandatory fields,
formats and lengths (error 40002) and master-data codes (error 45053).

The mandatory list and the lengths are the contract's assumptions (docs/partner-api.md §4), kept
here in one place. The list says the same as ``pipeline.core.settings.MANDATORY_COLUMNS`` (the
default of our local rule, in flat column names) on purpose but is not derived from it: the
sandbox stands in for the partner, so it must not bend to a bank's
``ONBOARD_VALIDATION__MANDATORY_COLUMNS`` nor copy a mistake of ours; a unit test
(``tests/unit/test_sandbox_checks.py``) keeps the two in agreement.

Problems come back as ``{field: problem}`` with nested fields spelled
``address_list[0].city``, the shape of the partner's ``details``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipeline.core.masterdata import MasterData

MANDATORY_TOP = (
    "channel",
    "agent_location_id",
    "first_name",
    "last_name",
    "nationality",
    "date_of_birth",
    "country_of_birth",
    "country_of_residence",
    "gender",
    "primary_mobile_number",
    "occupation_id",
)
MANDATORY_ADDRESS = ("address_type_id", "city", "country")
MANDATORY_ID = ("id_type", "id_number", "issued_country", "date_of_expiry")

MAX_LENGTH = {
    "first_name": 255,
    "middle_name": 255,
    "last_name": 255,
    "preferred_name": 255,
    "mothers_maiden_name": 255,
    "primary_mobile_number": 20,
    "secondary_mobile_number": 20,
    "phone_number": 20,
    "email_id": 120,
    "channel": 20,
}
COUNTRY_FIELDS = ("nationality", "second_nationality", "country_of_birth", "country_of_residence")
DATE_FIELDS = ("date_of_birth",)
ID_DATE_FIELDS = ("date_of_expiry", "issued_on", "visa_expiry_date")

# Which code list each coded field is checked against.
TOP_CODES = {
    "nationality": "countries",
    "second_nationality": "countries",
    "country_of_birth": "countries",
    "country_of_residence": "countries",
    "gender": "genders",
    "occupation_id": "occupations",
    "resident_type_id": "resident_types",
}
ADDRESS_CODES = {"address_type_id": "address_types", "country": "countries"}
ID_CODES = {"id_type": "id_types", "issued_country": "countries"}
CLASSIFICATION_CODES = {
    "customer_type_id": "customer_types",
    "annual_income_range_id": "income_ranges",
    "annual_income_currency_code": "currencies",
}

MISSING = "mandatory field is missing"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_LOOKUP_ID = re.compile(r"[A-Za-z0-9]{1,40}")


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _text(value: object) -> str | None:
    """The value as text when it is a scalar the partner accepts (string or integer)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _check_fields(
    part: Mapping[str, Any], prefix: str, mandatory: tuple[str, ...], problems: dict[str, str]
) -> None:
    for name in mandatory:
        value = part.get(name)
        if not _present(value):
            problems[prefix + name] = MISSING
        elif _text(value) is None:
            problems[prefix + name] = "must be a string"


def _first_entry(body: Mapping[str, Any], name: str, problems: dict[str, str]) -> Any:
    entries = body.get(name)
    if not isinstance(entries, list) or not entries:
        problems[name] = "at least one entry is mandatory"
        return None
    if not isinstance(entries[0], dict):
        problems[f"{name}[0]"] = "must be an object"
        return None
    return entries[0]


def _check_formats(body: Mapping[str, Any], problems: dict[str, str]) -> None:
    for name, limit in MAX_LENGTH.items():
        value = body.get(name)
        if isinstance(value, str) and len(value) > limit and name not in problems:
            problems[name] = f"must be at most {limit} characters"
    for name in COUNTRY_FIELDS:
        value = body.get(name)
        if isinstance(value, str) and _present(value) and len(value.strip()) != 2:
            problems.setdefault(name, "must be a 2-letter country code")
    for name in DATE_FIELDS:
        value = body.get(name)
        if isinstance(value, str) and _present(value) and not _DATE.fullmatch(value):
            problems.setdefault(name, "must be a date YYYY-MM-DD")
    for index, entry in enumerate(_entries(body, "id_details")):
        for name in ID_DATE_FIELDS:
            value = entry.get(name)
            key = f"id_details[{index}].{name}"
            if isinstance(value, str) and _present(value) and not _DATE.fullmatch(value):
                problems.setdefault(key, "must be a date YYYY-MM-DD")
    if "political_exposed_person" in body and not isinstance(
        body["political_exposed_person"], bool | None
    ):
        problems["political_exposed_person"] = "must be true or false"


def _entries(body: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    entries = body.get(name)
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, dict)]


def check_mandatory(body: Mapping[str, Any]) -> dict[str, str]:
    """Mandatory fields, types, formats and lengths of an onboarding body (error 40002)."""
    problems: dict[str, str] = {}
    _check_fields(body, "", MANDATORY_TOP, problems)
    address = _first_entry(body, "address_list", problems)
    if address is not None:
        _check_fields(address, "address_list[0].", MANDATORY_ADDRESS, problems)
    id_detail = _first_entry(body, "id_details", problems)
    if id_detail is not None:
        _check_fields(id_detail, "id_details[0].", MANDATORY_ID, problems)
    _check_formats(body, problems)
    return problems


def _check_codes(
    part: Mapping[str, Any],
    prefix: str,
    fields: Mapping[str, str],
    master: MasterData,
    problems: dict[str, str],
) -> None:
    for name, list_name in fields.items():
        value = _text(part.get(name))
        if value and value not in master[list_name].codes:
            problems[prefix + name] = f"unknown {list_name} code {value!r}"


def check_master_data(body: Mapping[str, Any], master: MasterData) -> dict[str, str]:
    """Master-data codes of an onboarding body (error 45053); absent optional codes pass."""
    problems: dict[str, str] = {}
    _check_codes(body, "", TOP_CODES, master, problems)
    for index, address in enumerate(_entries(body, "address_list")):
        _check_codes(address, f"address_list[{index}].", ADDRESS_CODES, master, problems)
    for index, id_detail in enumerate(_entries(body, "id_details")):
        _check_codes(id_detail, f"id_details[{index}].", ID_CODES, master, problems)
    classification = body.get("customer_classification")
    if isinstance(classification, dict):
        _check_codes(
            classification, "customer_classification.", CLASSIFICATION_CODES, master, problems
        )
    return problems


def lookup_key(body: object) -> tuple[str, str] | None:
    """``(idType, idNumber)`` of a plausible lookup body, else None (error 40001).

    Plausible: idType a string of 1–3 characters, idNumber 1–40 ASCII letters or digits.
    """
    if not isinstance(body, dict):
        return None
    id_type = body.get("idType")
    id_number = body.get("idNumber")
    if not isinstance(id_type, str) or not 1 <= len(id_type) <= 3:
        return None
    if not isinstance(id_number, str) or not _LOOKUP_ID.fullmatch(id_number):
        return None
    return id_type, id_number


def onboard_key(body: Mapping[str, Any]) -> tuple[str, str]:
    """``(id_type, id_number)`` of an onboarding body that passed ``check_mandatory``."""
    first = body["id_details"][0]
    return str(_text(first["id_type"])), str(_text(first["id_number"]))
