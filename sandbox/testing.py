"""Synthetic inputs the tests and benchmarks send to a sandbox: the default credentials as
settings or environment, valid Emirates IDs, a valid onboarding body. The server launcher
itself is :mod:`sandbox.launcher`; its names are re-exported here for the tests.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from pipeline.core.settings import PartnerSettings
from sandbox.app import LOOKUP_PATH, ONBOARD_PATH, STATUS_PATH, TOKEN_PATH
from sandbox.launcher import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    PATHS,
    USERNAME,
    SandboxError,
    SandboxHandle,
    password_form,
    run_sandbox,
)

__all__ = [
    "CLIENT_ID", "CLIENT_SECRET", "LOOKUP_PATH", "ONBOARD_PATH", "PASSWORD", "PATHS",
    "STATUS_PATH", "TOKEN_PATH", "USERNAME", "SandboxError", "SandboxHandle", "emirates_id",
    "onboarding_body", "partner_env", "password_form", "run_sandbox", "sandbox_partner",
]


def sandbox_partner(base_url: str, *, scope: str = "sandbox", **changes: Any) -> PartnerSettings:
    """Partner settings for a sandbox at ``base_url`` with its default credentials."""
    return PartnerSettings(
        base_url=base_url, client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET),
        username=USERNAME, password=SecretStr(PASSWORD), scope=scope, **changes,
    )


def partner_env(base_url: str, *, scope: str = "sandbox") -> dict[str, str]:
    """The ``ONBOARD_PARTNER__*`` variables of :func:`sandbox_partner`, for a subprocess."""
    return {
        "ONBOARD_PARTNER__BASE_URL": base_url,
        "ONBOARD_PARTNER__CLIENT_ID": CLIENT_ID,
        "ONBOARD_PARTNER__CLIENT_SECRET": CLIENT_SECRET,
        "ONBOARD_PARTNER__USERNAME": USERNAME,
        "ONBOARD_PARTNER__PASSWORD": PASSWORD,
        "ONBOARD_PARTNER__SCOPE": scope,
    }


def emirates_id(serial: int, birth_year: int = 1986) -> str:
    """A valid synthetic Emirates ID (784, ``birth_year``, serial, Luhn check digit)."""
    stem = f"784{birth_year:04d}{serial:07d}"
    total = 0
    for i, ch in enumerate(reversed(stem)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return stem + str((10 - total % 10) % 10)


def onboarding_body(id_number: str, **changes: Any) -> dict[str, Any]:
    """A valid onboarding body for ``id_number`` (synthetic data), with ``changes`` on top."""
    data: dict[str, Any] = {
        "channel": "BATCH", "agent_location_id": "AL001", "first_name": "Test",
        "last_name": "Person", "nationality": "AE", "date_of_birth": "1980-01-01",
        "country_of_birth": "AE", "country_of_residence": "AE", "gender": "M",
        "primary_mobile_number": "+971500000001", "occupation_id": "1",
        "political_exposed_person": False,
        "address_list": [{"address_type_id": "1", "city": "Dubai", "country": "AE"}],
        "id_details": [{"id_type": "4", "id_number": id_number, "issued_country": "AE",
                        "date_of_expiry": "2030-01-01"}],
    }  # fmt: skip
    data.update(changes)
    return data
