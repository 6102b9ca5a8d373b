"""The flat input layout: canonical columns, header matching, column maps, and the partner body.

One customer is one flat row whose columns carry the canonical snake_case names below. A bank's
own headers reach those names in two ways: :func:`normalise_header` makes matching case-, space-
and punctuation-insensitive ("First Name" is ``first_name``), and a :class:`ColumnMap` loaded from
TOML renames anything else ("Emirates ID No" is ``id_number``) and fixes constants.

:func:`to_partner_body` turns a validated flat row into the nested onboarding JSON of
docs/partner-api.md §4. Pure code: no pandas, no I/O beyond reading a column-map file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import InputError as InputError

CUSTOMER_COLUMNS: tuple[str, ...] = (
    "channel",
    "agent_location_id",
    "salutation",
    "first_name",
    "middle_name",
    "last_name",
    "preferred_name",
    "mothers_maiden_name",
    "nationality",
    "second_nationality",
    "date_of_birth",
    "country_of_birth",
    "place_of_birth",
    "resident_type_id",
    "country_of_residence",
    "gender",
    "primary_mobile_number",
    "secondary_mobile_number",
    "email_id",
    "occupation_id",
    "political_exposed_person",
)

ID_COLUMNS: tuple[str, ...] = (
    "id_type",
    "id_number",
    "id_issued_country",
    "id_issued_on",
    "id_date_of_expiry",
    "id_name_as_per_id",
    "id_issued_by",
    "id_visa_number",
    "id_visa_expiry_date",
    "id_front_file",
    "id_back_file",
)

ADDRESS_COLUMNS: tuple[str, ...] = (
    "address_type_id",
    "address_building_name",
    "address_street_name",
    "address_landmark",
    "address_city",
    "address_district",
    "address_state",
    "address_country",
    "address_zip",
    "address_po_box",
)

CLASSIFICATION_COLUMNS: tuple[str, ...] = (
    "customer_type_id",
    "income_type",
    "annual_income_range_id",
    "annual_income_currency_code",
    "employer_name",
    "profession_category",
    "risk_rating_id",
    "tax_registration_number",
)

ECRN_COLUMN = "ecrn"

CANONICAL_COLUMNS: tuple[str, ...] = (
    *CUSTOMER_COLUMNS,
    *ID_COLUMNS,
    *ADDRESS_COLUMNS,
    *CLASSIFICATION_COLUMNS,
    ECRN_COLUMN,
)

DATE_COLUMNS: tuple[str, ...] = (
    "date_of_birth",
    "id_issued_on",
    "id_date_of_expiry",
    "id_visa_expiry_date",
)

BOOLEAN_COLUMNS: tuple[str, ...] = ("political_exposed_person",)

FILE_COLUMNS: tuple[str, ...] = ("id_front_file", "id_back_file")

_CANONICAL_SET = frozenset(CANONICAL_COLUMNS)
_NON_WORD = re.compile(r"[\W_]+")


def normalise_header(header: str) -> str:
    """Reduce a header to its matching key: case-folded, every run of spaces or punctuation one
    underscore, no leading or trailing underscore ("First Name" and "first-name" → "first_name").
    """
    return _NON_WORD.sub("_", header.casefold()).strip("_")


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """A bank's own headers mapped onto canonical columns, plus constant values.

    ``columns`` is keyed by the *normalised* bank header, so the map matches as loosely as the
    canonical names do. A constant is a default: it fills every empty cell of its column (the
    whole column when the file lacks it), while a non-empty cell in the file keeps its value,
    because a value written on a row is more specific than a file-wide setting.
    """

    columns: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def load(cls, path: Path | str) -> ColumnMap:
        """Read a column-map TOML file; any problem is an :class:`InputError` naming the file.

        Layout: a ``[columns]`` table of ``"Bank header" = "canonical_name"`` and a
        ``[constants]`` table of ``canonical_name = "value"``; both optional, nothing else.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            raise InputError(f"{path}: column map not found") from None
        except IsADirectoryError:
            raise InputError(f"{path}: column map is a directory, not a file") from None
        except PermissionError:
            raise InputError(f"{path}: column map cannot be read (permission denied)") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: column map is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{path}: column map is not valid TOML ({exc})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "column map") -> ColumnMap:
        """Build a map from already-parsed TOML; ``source`` names it in error messages."""
        unknown = sorted(set(data) - {"columns", "constants"})
        if unknown:
            raise InputError(
                f"{source}: unknown section(s) {', '.join(unknown)}; "
                "only [columns] and [constants] are allowed"
            )
        raw_columns = data.get("columns", {})
        raw_constants = data.get("constants", {})
        if not isinstance(raw_columns, dict) or not isinstance(raw_constants, dict):
            raise InputError(f"{source}: [columns] and [constants] must be tables")
        columns: dict[str, str] = {}
        for header, target in raw_columns.items():
            if not isinstance(target, str):
                raise InputError(f"{source}: [columns] '{header}' must map to a column name")
            canonical = _canonical_or_none(target)
            if canonical is None:
                raise InputError(
                    f"{source}: [columns] '{header}' maps to '{target}', "
                    "which is not a known column"
                )
            key = normalise_header(header)
            if not key:
                raise InputError(f"{source}: [columns] has an empty header name")
            if columns.get(key, canonical) != canonical:
                raise InputError(
                    f"{source}: [columns] '{header}' is mapped twice, "
                    f"to '{columns[key]}' and '{canonical}'"
                )
            columns[key] = canonical
        constants: dict[str, str] = {}
        for name, value in raw_constants.items():
            canonical = _canonical_or_none(name)
            if canonical is None:
                raise InputError(f"{source}: [constants] '{name}' is not a known column")
            if isinstance(value, bool):
                constants[canonical] = "true" if value else "false"
            elif isinstance(value, str | int):
                constants[canonical] = str(value).strip()
            else:
                raise InputError(
                    f"{source}: [constants] '{name}' must be text or a whole number"
                )
        return cls(columns=columns, constants=constants, source=source)

    def resolve(self, header: str) -> str | None:
        """The canonical column a file header stands for, or None for an unknown column."""
        key = normalise_header(header)
        mapped = self.columns.get(key)
        if mapped is not None:
            return mapped
        return key if key in _CANONICAL_SET else None


def _canonical_or_none(name: str) -> str | None:
    key = normalise_header(name)
    return key if key in _CANONICAL_SET else None


def resolve_headers(
    headers: Iterable[str], column_map: ColumnMap | None = None
) -> dict[str, str]:
    """Map each recognised header to its canonical column; unknown headers are left out.

    Raises :class:`InputError` (without a file name; the caller adds it) when two headers land
    on the same canonical column.
    """
    cmap = column_map or ColumnMap()
    result: dict[str, str] = {}
    owner: dict[str, str] = {}
    for header in headers:
        canonical = cmap.resolve(header)
        if canonical is None:
            continue
        if canonical in owner:
            raise InputError(
                f"columns '{owner[canonical]}' and '{header}' both mean '{canonical}'"
            )
        owner[canonical] = header
        result[header] = canonical
    return result


_TRUE = frozenset({"true", "yes", "y", "1", "t"})
_FALSE = frozenset({"false", "no", "n", "0", "f"})


def parse_bool(value: str) -> bool | None:
    """Read a yes/no cell (true/false, yes/no, y/n, 1/0, any case); None when empty or unclear."""
    key = value.strip().casefold()
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    return None


# Flat column → key inside the nested part, in the order docs/partner-api.md lists them.
_ID_KEYS = {
    "id_type": "id_type",
    "id_number": "id_number",
    "id_visa_number": "visa_number",
    "id_visa_expiry_date": "visa_expiry_date",
    "id_name_as_per_id": "name_as_per_id",
    "id_issued_country": "issued_country",
    "id_issued_by": "issued_by",
    "id_issued_on": "issued_on",
    "id_date_of_expiry": "date_of_expiry",
}
# address_type_id keeps its name inside address_list; the other address_ columns lose the prefix.
_ADDRESS_KEYS = {
    column: column if column == "address_type_id" else column.removeprefix("address_")
    for column in ADDRESS_COLUMNS
}
_CLASSIFICATION_KEYS = {column: column for column in CLASSIFICATION_COLUMNS}
_TOP_LEVEL = tuple(c for c in CUSTOMER_COLUMNS if c not in BOOLEAN_COLUMNS)


def to_partner_body(
    row: Mapping[str, str],
    *,
    documents: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """Turn one normalised flat row into the nested onboarding body (docs/partner-api.md §4).

    Empty optional fields are left out; ``political_exposed_person`` becomes a boolean; the one
    ``id_details`` entry is the active default document; ``ecrn`` is sent only to update.
    ``documents`` optionally carries the already-encoded ``id_front`` / ``id_back`` objects
    (``{"base64_data": ..., "content_type": ...}``), since this pure function reads no files.
    Raises ValueError for a yes/no field it cannot read (validation rejects those earlier).
    """

    def value(column: str) -> str:
        return (row.get(column) or "").strip()

    body: dict[str, Any] = {}
    for column in _TOP_LEVEL:
        if text := value(column):
            body[column] = text
    for column in BOOLEAN_COLUMNS:
        if text := value(column):
            flag = parse_bool(text)
            if flag is None:
                raise ValueError(f"{column}: expected yes or no")
            body[column] = flag
    if ecrn := value(ECRN_COLUMN):
        body[ECRN_COLUMN] = ecrn

    address = {key: value(col) for col, key in _ADDRESS_KEYS.items() if value(col)}
    if address:
        body["address_list"] = [address]

    id_entry: dict[str, Any] = {key: value(col) for col, key in _ID_KEYS.items() if value(col)}
    if id_entry:
        id_entry["active_status"] = True
        id_entry["default_status"] = True
        for side in ("id_front", "id_back"):
            if documents and side in documents:
                id_entry[side] = dict(documents[side])
        body["id_details"] = [id_entry]

    classification = {
        key: value(col) for col, key in _CLASSIFICATION_KEYS.items() if value(col)
    }
    if classification:
        body["customer_classification"] = classification
    return body
