"""Which customer states are not final yet, and the report columns that show the latest one.

Pure: the onboarding flow asks :func:`needs_follow_up` to decide whether a row's answer must
be kept for ``onboard follow-up``; the follow-up asks it again with the status GET's answer.
The partner's value sets are only partly published (docs/partner-api.md §5), so the comparison is
case- and space-insensitive and the non-final sets are plain constants in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

FOLLOW_UP_COLUMNS = ("customer_status", "aml_scan_status")
"""The two columns a followed-up batch's report adds after the outcome columns."""

NON_FINAL_CUSTOMER_STATUSES = frozenset({"kyc pending"})
"""``customer_status`` values the partner may still change (docs/partner-api.md §5)."""

NON_FINAL_AML_STATUSES = frozenset({"under investigation"})
"""``aml_scan_status`` values the partner may still change."""


def _norm(value: str | None) -> str:
    return " ".join((value or "").split()).lower()


def needs_follow_up(customer_status: str | None, aml_scan_status: str | None) -> bool:
    """True when either status says the partner has not finished with the customer."""
    return (
        _norm(customer_status) in NON_FINAL_CUSTOMER_STATUSES
        or _norm(aml_scan_status) in NON_FINAL_AML_STATUSES
    )


@dataclass(frozen=True, slots=True)
class CustomerStatus:
    """A row's latest known partner state: its ecrn and the two status values."""

    ecrn: str
    customer_status: str = ""
    aml_scan_status: str = ""
    checked_at: str = ""

    @property
    def final(self) -> bool:
        """Nothing left to follow up."""
        return not needs_follow_up(self.customer_status, self.aml_scan_status)

    def to_json(self) -> str:
        """Compact JSON, the form kept in the store."""
        data = {
            "ecrn": self.ecrn, "customer_status": self.customer_status,
            "aml_scan_status": self.aml_scan_status,
        }
        if self.checked_at:
            data["checked_at"] = self.checked_at
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> CustomerStatus:
        """Inverse of :meth:`to_json`."""
        data: Mapping[str, str] = json.loads(raw)
        return cls(
            str(data.get("ecrn", "")), str(data.get("customer_status", "")),
            str(data.get("aml_scan_status", "")), str(data.get("checked_at", "")),
        )
