"""Canonical columns, header matching, column maps and the flat → nested partner body."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.settings import MANDATORY_COLUMNS, SAMPLE_DATA
from pipeline.ingest.schema import (
    ADDRESS_COLUMNS,
    CANONICAL_COLUMNS,
    CLASSIFICATION_COLUMNS,
    CUSTOMER_COLUMNS,
    DATE_COLUMNS,
    ID_COLUMNS,
    ColumnMap,
    InputError,
    normalise_header,
    parse_bool,
    resolve_headers,
    to_partner_body,
)

DATA = Path(__file__).resolve().parent.parent / "data"


def test_canonical_columns_are_the_groups_in_order() -> None:
    """The canonical list is customer, ID, address, classification columns, then ecrn."""
    assert (
        *CUSTOMER_COLUMNS,
        *ID_COLUMNS,
        *ADDRESS_COLUMNS,
        *CLASSIFICATION_COLUMNS,
        "ecrn",
    ) == CANONICAL_COLUMNS
    assert len(set(CANONICAL_COLUMNS)) == len(CANONICAL_COLUMNS) == 51
    assert CANONICAL_COLUMNS[0] == "channel"
    assert set(DATE_COLUMNS) <= set(CANONICAL_COLUMNS)
    assert set(MANDATORY_COLUMNS) <= set(CANONICAL_COLUMNS)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("First Name", "first_name"),
        ("  FIRST_NAME  ", "first_name"),
        ("first-name", "first_name"),
        ("First.Name", "first_name"),
        ("first__name", "first_name"),
        ("\ufeffFirst Name", "first_name"),
        ("ID Number", "id_number"),
        ("Date of Birth", "date_of_birth"),
        ("Mother's Maiden Name", "mother_s_maiden_name"),
        ("Prénom", "prénom"),
        ("", ""),
    ],
)
def test_normalise_header(header: str, expected: str) -> None:
    """Headers match case-, space- and punctuation-insensitively."""
    assert normalise_header(header) == expected


def test_column_map_loads_and_matches_loosely() -> None:
    """A TOML map renames bank headers (matched loosely) and carries constants as text."""
    cmap = ColumnMap.load(DATA / "column_map.toml")
    assert cmap.resolve("Emirates ID No") == "id_number"
    assert cmap.resolve("EMIRATES  id no") == "id_number"
    assert cmap.resolve("mobile") == "primary_mobile_number"
    assert cmap.resolve("Last Name") == "last_name"
    assert cmap.resolve("Notes") is None
    assert cmap.constants == {"channel": "BULK", "id_type": "4", "agent_location_id": "1001"}
    assert cmap.source.endswith("column_map.toml")


def test_example_column_map_in_sample_data_loads() -> None:
    """The shipped example map is valid and maps the Emirates ID header."""
    cmap = ColumnMap.load(SAMPLE_DATA / "column_map.example.toml")
    assert cmap.resolve("Emirates ID No") == "id_number"
    assert cmap.constants["channel"] == "BULK"


def test_column_map_booleans_become_text() -> None:
    """A TOML boolean constant becomes the text the rules read."""
    cmap = ColumnMap.from_dict({"constants": {"political_exposed_person": False}})
    assert cmap.constants == {"political_exposed_person": "false"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"columns": {"Emirates ID No": "emirates_id"}}, "'emirates_id', which is not a known"),
        ({"constants": {"branch": "X"}}, r"\[constants\] 'branch' is not a known column"),
        ({"constants": {"channel": 1.5}}, "must be text or a whole number"),
        ({"columns": {"ID": 4}}, "must map to a column name"),
        ({"mapping": {}}, "unknown section"),
        ({"columns": ["a"]}, "must be tables"),
        ({"columns": {"Mobile": "primary_mobile_number", "MOBILE": "secondary_mobile_number"}},
         "mapped twice"),
    ],
)
def test_bad_column_map_content_is_named(data: dict[str, object], message: str) -> None:
    """Every problem in a column map is an InputError naming the map and the entry."""
    with pytest.raises(InputError, match=message) as info:
        ColumnMap.from_dict(data, source="bank.toml")
    assert str(info.value).startswith("bank.toml: ")


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    """Broken TOML syntax names the map file; a missing map file is named too."""
    with pytest.raises(InputError, match=r"bad_column_map\.toml: column map is not valid TOML"):
        ColumnMap.load(DATA / "bad_column_map.toml")
    with pytest.raises(InputError, match=r"nope\.toml: column map not found"):
        ColumnMap.load(tmp_path / "nope.toml")
    (tmp_path / "latin.toml").write_bytes(b'[constants]\nchannel = "\xe9"\n')
    with pytest.raises(InputError, match=r"latin\.toml: column map is not UTF-8"):
        ColumnMap.load(tmp_path / "latin.toml")


def test_resolve_headers_keeps_only_recognised_and_refuses_clashes() -> None:
    """Unknown headers are left out; two headers for one column are an error naming both."""
    cmap = ColumnMap.from_dict({"columns": {"Emirates ID No": "id_number"}})
    assert resolve_headers(["First Name", "Notes", "Emirates ID No"], cmap) == {
        "First Name": "first_name",
        "Emirates ID No": "id_number",
    }
    with pytest.raises(InputError, match="'Emirates ID No' and 'ID Number' both mean 'id_number'"):
        resolve_headers(["Emirates ID No", "ID Number"], cmap)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("YES", True), ("y", True), ("1", True), (" False ", False), ("no", False),
     ("N", False), ("0", False), ("", None), ("maybe", None)],
)
def test_parse_bool(text: str, expected: bool | None) -> None:
    """Yes/no cells read in any common spelling; anything else is None."""
    assert parse_bool(text) is expected


FULL_ROW = {
    "channel": "BULK",
    "agent_location_id": "1001",
    "salutation": "Ms",
    "first_name": "Aisha",
    "middle_name": "",
    "last_name": "Khan",
    "nationality": "AE",
    "date_of_birth": "1990-01-02",
    "country_of_birth": "AE",
    "country_of_residence": "AE",
    "gender": "F",
    "primary_mobile_number": "+971554747002",
    "email_id": "a@example.com",
    "occupation_id": "12",
    "political_exposed_person": "no",
    "id_type": "4",
    "id_number": "784199554586091",
    "id_issued_country": "AE",
    "id_issued_on": "2020-01-01",
    "id_date_of_expiry": "2030-01-01",
    "id_name_as_per_id": "AISHA KHAN",
    "id_front_file": "docs/front.jpg",
    "address_type_id": "1",
    "address_building_name": "Tower A",
    "address_city": "Dubai",
    "address_country": "AE",
    "address_po_box": "1234",
    "customer_type_id": "1",
    "annual_income_range_id": "3",
    "annual_income_currency_code": "AED",
    "ecrn": "",
}


def test_to_partner_body_nests_as_the_partner_expects() -> None:
    """A flat row becomes the body of docs/partner-api.md §4: top level, address_list,
    id_details (active default document), customer_classification; empty fields and file
    paths are not sent."""
    assert to_partner_body(FULL_ROW) == {
        "channel": "BULK",
        "agent_location_id": "1001",
        "salutation": "Ms",
        "first_name": "Aisha",
        "last_name": "Khan",
        "nationality": "AE",
        "date_of_birth": "1990-01-02",
        "country_of_birth": "AE",
        "country_of_residence": "AE",
        "gender": "F",
        "primary_mobile_number": "+971554747002",
        "email_id": "a@example.com",
        "occupation_id": "12",
        "political_exposed_person": False,
        "address_list": [
            {
                "address_type_id": "1",
                "building_name": "Tower A",
                "city": "Dubai",
                "country": "AE",
                "po_box": "1234",
            }
        ],
        "id_details": [
            {
                "id_type": "4",
                "id_number": "784199554586091",
                "name_as_per_id": "AISHA KHAN",
                "issued_country": "AE",
                "issued_on": "2020-01-01",
                "date_of_expiry": "2030-01-01",
                "active_status": True,
                "default_status": True,
            }
        ],
        "customer_classification": {
            "customer_type_id": "1",
            "annual_income_range_id": "3",
            "annual_income_currency_code": "AED",
        },
    }


def test_to_partner_body_update_pep_and_documents() -> None:
    """An ecrn is sent to update; PEP 'Yes' is True; encoded documents join id_details[0]."""
    row = {**FULL_ROW, "ecrn": "1000000000000005", "political_exposed_person": "Yes"}
    front = {"base64_data": "AAAA", "content_type": "image/jpeg"}
    body = to_partner_body(row, documents={"id_front": front})
    assert body["ecrn"] == "1000000000000005"
    assert body["political_exposed_person"] is True
    assert body["id_details"][0]["id_front"] == front
    assert "id_back" not in body["id_details"][0]


def test_to_partner_body_leaves_out_empty_parts() -> None:
    """A row without address, ID or classification values sends none of those parts, and
    whitespace-only cells count as empty."""
    body = to_partner_body({"first_name": "Ann", "last_name": "  ", "address_city": ""})
    assert body == {"first_name": "Ann"}


def test_to_partner_body_refuses_an_unreadable_flag() -> None:
    """A yes/no field that is neither raises, rather than sending a guess."""
    with pytest.raises(ValueError, match="political_exposed_person"):
        to_partner_body({"political_exposed_person": "perhaps"})
