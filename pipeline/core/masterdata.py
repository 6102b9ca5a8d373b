"""Master-data code lists (ID types, countries, occupations, ...) loaded from CSV files.

Each list is ``<name>.csv`` with columns ``code,label`` and an optional ``aliases`` column
(``|``-separated). A list's version is the sha256 of its bytes, so a report can name exactly
which master data it was validated against.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UserError

LIST_NAMES = (
    "id_types",
    "countries",
    "resident_types",
    "occupations",
    "genders",
    "address_types",
    "income_ranges",
    "currencies",
    "customer_types",
)


class MasterDataError(UserError):
    """A master-data directory or file cannot be used; the message names the file."""


@dataclass(frozen=True, slots=True)
class CodeList:
    """One code list: the codes, a lookup from every accepted spelling to its code, a version."""

    name: str
    codes: frozenset[str]
    labels: dict[str, str]
    spellings: dict[str, str]
    version: str

    def resolve(self, raw: str) -> str | None:
        """Return the canonical code for a user's spelling (code, label or alias), else None."""
        if raw in self.codes:
            return raw
        return self.spellings.get(raw.strip().casefold())


@dataclass(frozen=True, slots=True)
class MasterData:
    """All code lists of one directory, with a combined version."""

    lists: dict[str, CodeList]
    version: str
    source: str

    def __getitem__(self, name: str) -> CodeList:
        return self.lists[name]


def parse_list(name: str, data: bytes, origin: str) -> CodeList:
    """Parse one code-list file's bytes; raise MasterDataError naming the file and line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MasterDataError(f"{origin}: not UTF-8 text ({exc.reason})") from exc
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "code" not in header or "label" not in header:
        raise MasterDataError(f"{origin}: header must have 'code' and 'label' columns")
    reader.fieldnames = header
    codes: set[str] = set()
    labels: dict[str, str] = {}
    spellings: dict[str, str] = {}
    for line, record in enumerate(reader, start=2):
        code = (record.get("code") or "").strip()
        if not code:
            raise MasterDataError(f"{origin}, line {line}: empty code")
        label = (record.get("label") or "").strip()
        codes.add(code)
        labels[code] = label
        aliases = (record.get("aliases") or "").split("|")
        for spelling in (code, label, *aliases):
            key = spelling.strip().casefold()
            # The first list entry wins: a later label must not steal another code's alias.
            if key and key not in spellings:
                spellings[key] = code
    return CodeList(
        name=name,
        codes=frozenset(codes),
        labels=labels,
        spellings=spellings,
        version=hashlib.sha256(data).hexdigest()[:12],
    )


def load_master_data(directory: Path) -> MasterData:
    """Load every known list from ``directory``; every list must be present."""
    if not directory.is_dir():
        raise MasterDataError(f"{directory}: master-data directory not found")
    lists: dict[str, CodeList] = {}
    combined = hashlib.sha256()
    for name in LIST_NAMES:
        path = directory / f"{name}.csv"
        if not path.is_file():
            raise MasterDataError(f"{path}: master-data list '{name}' is missing")
        data = path.read_bytes()
        lists[name] = parse_list(name, data, str(path))
        combined.update(name.encode() + b"\0" + data)
    return MasterData(lists=lists, version=combined.hexdigest()[:12], source=str(directory))
