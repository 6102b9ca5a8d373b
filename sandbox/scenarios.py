"""The scenario table: which ID number triggers which partner response (``scenarios.toml``).

The file format is documented at the top of ``sample_data/scenarios.toml``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pipeline.core.errors import UserError


class Case(StrEnum):
    """Every scenario case the sandbox knows."""

    EXISTING = "existing"
    NOT_SUBSCRIBED = "not_subscribed"
    LOOKUP_COMPLIANCE = "lookup_compliance"
    LOOKUP_BLOCKED = "lookup_blocked"
    LOOKUP_BAD_REQUEST = "lookup_bad_request"
    LOOKUP_INTERNAL_ERROR = "lookup_internal_error"
    LOOKUP_INTERNAL_ERROR_ONCE = "lookup_internal_error_once"
    BLOCKED = "blocked"
    COMPLIANCE = "compliance"
    INVALID_MASTER_DATA = "invalid_master_data"
    MANDATORY_MISSING = "mandatory_missing"
    CREATE_502 = "create_502"
    CREATE_502_ONCE = "create_502_once"
    CREATE_502_AFTER_COMMIT = "create_502_after_commit"
    SLOW = "slow"
    UPDATE_FAILURE = "update_failure"
    KYC_PENDING = "kyc_pending"
    AML_UNDER_INVESTIGATION = "aml_under_investigation"


class ScenarioError(UserError):
    """The scenario file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """One row of the scenario table."""

    id_number: str
    case: Case
    ecrn: str | None = None
    message: str | None = None
    details: dict[str, str] = field(default_factory=dict)


def parse_scenarios(text: str, origin: str) -> dict[str, Scenario]:
    """Parse the TOML text of a scenario file into ``{id_number: Scenario}``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{origin}: not valid TOML ({exc})") from exc
    table: dict[str, Scenario] = {}
    for id_number, entry in raw.items():
        where = f"{origin}, entry [{id_number!r}]"
        if not isinstance(entry, dict):
            raise ScenarioError(f"{where}: must be a table")
        unknown = set(entry) - {"case", "ecrn", "message", "details"}
        if unknown:
            raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        try:
            case = Case(str(entry.get("case")))
        except ValueError:
            raise ScenarioError(f"{where}: unknown case {entry.get('case')!r}") from None
        ecrn = entry.get("ecrn")
        if ecrn is not None and not (isinstance(ecrn, str) and len(ecrn) == 16 and ecrn.isdigit()):
            raise ScenarioError(f"{where}: ecrn must be a 16-digit string")
        message = entry.get("message")
        if message is not None and not isinstance(message, str):
            raise ScenarioError(f"{where}: message must be a string")
        details = entry.get("details", {})
        if not isinstance(details, dict) or not all(isinstance(v, str) for v in details.values()):
            raise ScenarioError(f"{where}: details must be a table of strings")
        table[id_number] = Scenario(id_number, case, ecrn, message, dict(details))
    return table


def load_scenarios(path: Path) -> dict[str, Scenario]:
    """Read and parse a scenario file; raise ScenarioError naming it when it is unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    return parse_scenarios(text, str(path))
