"""The sandbox's customers, in memory, indexed by ID (type and number) and by ecrn.

Each customer keeps only the lookup's ``data`` object, pre-rendered as JSON bytes, so a
million customers fit in memory and a lookup answer is a byte concatenation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.responses import dumps

FIRST_ECRN = 2_000_000_000_000_001


@dataclass(slots=True)
class Customer:
    """One stored customer."""

    ecrn: str
    id_key: str
    customer_status: str
    aml_scan_status: str
    pep: bool
    data_json: bytes
    # How many creates named this ID; above 1 means a duplicate customer was made.
    creates: int = 1


def id_key(id_type: str, id_number: str) -> str:
    """The index key of an ID."""
    return f"{id_type}:{id_number}"


def _expiry(value: object) -> str:
    # The lookup reports the ID's expiry as ISO 8601 with an offset (UAE time).
    return f"{value}T00:00:00+04:00" if isinstance(value, str) and value else ""


def render_data(ecrn: str, body: Mapping[str, Any], customer_status: str, aml: str) -> bytes:
    """The lookup ``data`` object for a customer described by an onboarding body."""
    id_details = body.get("id_details") or [{}]
    first_id = id_details[0] if isinstance(id_details[0], dict) else {}
    return dumps(
        {
            "ecrn": ecrn,
            "first_name": body.get("first_name", ""),
            "middle_name": body.get("middle_name", ""),
            "last_name": body.get("last_name", ""),
            "agent_location_id": body.get("agent_location_id", ""),
            "primary_mobile_number": body.get("primary_mobile_number", ""),
            "email_id": body.get("email_id", ""),
            "customer_status": customer_status,
            "aml_scan_status": aml,
            "id_status": "Active",
            "id_date_of_expiry": _expiry(first_id.get("date_of_expiry")),
        }
    )


class CustomerStore:
    """Customers created (or pre-loaded) in this run."""

    def __init__(self) -> None:
        self._by_id: dict[str, Customer] = {}
        self._by_ecrn: dict[str, Customer] = {}
        self._next_ecrn = FIRST_ECRN

    def __len__(self) -> int:
        return len(self._by_ecrn)

    def clear(self) -> None:
        """Forget every customer; ecrns start again."""
        self._by_id.clear()
        self._by_ecrn.clear()
        self._next_ecrn = FIRST_ECRN

    def by_id(self, key: str) -> Customer | None:
        """The customer with this ID key, if any (the first one created)."""
        return self._by_id.get(key)

    def by_ecrn(self, ecrn: str) -> Customer | None:
        """The customer with this ecrn, if any."""
        return self._by_ecrn.get(ecrn)

    def create(
        self,
        key: str,
        body: Mapping[str, Any],
        customer_status: str = "ACTIVE",
        aml: str = "Accepted",
        ecrn: str | None = None,
    ) -> Customer:
        """Create a customer with a fresh 16-digit ecrn (or the given one)."""
        if ecrn is None:
            ecrn = str(self._next_ecrn)
            self._next_ecrn += 1
        pep = body.get("political_exposed_person") is True
        customer = Customer(
            ecrn, key, customer_status, aml, pep, render_data(ecrn, body, customer_status, aml)
        )
        first = self._by_id.get(key)
        if first is None:
            self._by_id[key] = customer
        else:
            # The real platform would now hold two records; lookup keeps finding the first.
            first.creates += 1
            customer.creates = first.creates
        self._by_ecrn[ecrn] = customer
        return customer

    def update(self, customer: Customer, body: Mapping[str, Any]) -> None:
        """Apply an update body to an existing customer (statuses unchanged)."""
        customer.pep = body.get("political_exposed_person") is True
        customer.data_json = render_data(
            customer.ecrn, body, customer.customer_status, customer.aml_scan_status
        )
